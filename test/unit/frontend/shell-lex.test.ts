import { expandWord, expandWords, ExpandError } from '../../../frontend/shell-lex';

const env: Record<string, string> = { A: 'x', EMPTY: '', HOME: '/opt/app' };
const lookup = (k: string): string | undefined => env[k];

describe('expandWord', () => {
  test.each([
    ['$A', 'x'],
    ['${A}', 'x'],
    ['pre-${A}-post', 'pre-x-post'],
    ['$HOME/bin', '/opt/app/bin'],
    ['$UNSET', ''],
    ['${UNSET:-w}', 'w'],
    ['${EMPTY:-w}', 'w'],
    ['${EMPTY-w}', ''],
    ['${UNSET-w}', 'w'],
    ['${A:-w}', 'x'],
    ['${A:+w}', 'w'],
    ['${EMPTY:+w}', ''],
    ['${EMPTY+w}', 'w'],
    ['${UNSET+w}', ''],
    ['${UNSET:-$A}', 'x'],
    ['\\$A', '$A'],
    ["'$A'", '$A'],
    ['"$A b"', 'x b'],
    ['"a\\"b"', 'a"b'],
    ['a\\ b', 'a b'],
    ['$', '$'],
    ['cost: $5', 'cost: '],
    ['${HOME#/opt}', '/app'],
    ['${HOME#*/}', 'opt/app'],
    ['${HOME##*/}', 'app'],
    ['${HOME%/*}', '/opt'],
    ['${HOME%%p*}', '/o'],
    ['${HOME/p/P}', '/oPt/app'],
    ['${HOME//p/P}', '/oPt/aPP'],
    ['${HOME/#x/y}', '/opt/app'],
    ['${UNSET#x}', ''],
    ['${A/?/[$A]}', '[x]'],
    ['${HOME%[a-p]}', '/opt/ap'],
  ])('%s -> %s', (word, expected) => {
    expect(expandWord(word, lookup)).toBe(expected);
  });

  test('keeps quotes and unset references when asked, as RUN progress names do', () => {
    expect(expandWord('echo "v=$A" ${NOPE:-stable} $NOPE', lookup, { rawQuotes: true, skipUnset: true }))
      .toBe('echo "v=x" ${NOPE:-stable} $NOPE');
  });

  test('honours another escape character', () => {
    expect(expandWord('`$A \\$A', lookup, { escape: '`' })).toBe('$A \\x');
  });

  test('${v:?msg} fails when unset', () => {
    expect(() => expandWord('${UNSET:?needed}', lookup)).toThrow(ExpandError);
  });

  test('unterminated quotes and bad modifiers are errors', () => {
    expect(() => expandWord('"abc', lookup)).toThrow(/double-quote/);
    expect(() => expandWord("'abc", lookup)).toThrow(/single-quote/);
    expect(() => expandWord('${A!x}', lookup)).toThrow(/unsupported modifier/);
    expect(() => expandWord('${A:-x', lookup)).toThrow(/missing '}'/);
  });
});

describe('expandWords', () => {
  test('splits on unquoted whitespace after expansion', () => {
    expect(expandWords('80 "$A y" ${HOME}', lookup)).toEqual(['80', 'x y', '/opt/app']);
  });
});

describe('expansion limits', () => {
  test('a value growing past 1 MiB is an error, not an exhausted heap', () => {
    const big = 'x'.repeat(600 * 1024);
    expect(() => expandWord('${B}${B}', (k) => (k === 'B' ? big : undefined))).toThrow(/longer than 1048576 characters/);
    expect(() => expandWord('"${B}${B}"', (k) => (k === 'B' ? big : undefined))).toThrow(/longer than 1048576 characters/);
    expect(expandWord('${B}', (k) => (k === 'B' ? big : undefined))).toHaveLength(big.length);
  });

  test('nesting beyond 100 levels is an error, not a stack overflow', () => {
    const deep = '${a:-'.repeat(10_000) + 'x' + '}'.repeat(10_000);
    expect(() => expandWord(deep, () => undefined)).toThrow(/nested more than 100 levels/);
    const ok = '${a:-'.repeat(50) + 'x' + '}'.repeat(50);
    expect(expandWord(ok, () => undefined)).toBe('x');
  });
});
