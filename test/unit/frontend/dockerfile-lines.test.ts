import * as logicalLine from '../../../frontend/logical-line';
import { splitDockerfile } from '../../../frontend/dockerfile-lines';

/**
 * The first pass: dockerfile-ast splits, BuildKit's rules decide where the two disagree.
 * Each "BuildKit differs" case is an input on which dockerfile-ast alone splits otherwise.
 */
const split = (text: string) => splitDockerfile(text, 'Dockerfile');
const shape = (text: string) => split(text).instructions.map((i) => [i.written, i.rest, i.at.startLine, i.at.endLine]);

afterEach(() => jest.restoreAllMocks());

describe('splitDockerfile with dockerfile-ast', () => {
  test('continuations, comments and blank lines inside them, CRLF', () => {
    expect(shape('FROM x\r\nRUN a \\\r\n  # c\r\n\r\n  b\r\nCMD y\r\n')).toEqual([['FROM', 'x', 1, 1], ['RUN', 'a   b', 2, 5], ['CMD', 'y', 6, 6]]);
    expect(split('FROM x\nRUN a \\\n\n  b\n').emptyContinuations.map((r) => [r.startLine, r.endLine])).toEqual([[2, 4]]);
  });

  test('a continuation at the end of the file ends the instruction there', () => {
    expect(shape('FROM x\nRUN a \\')).toEqual([['FROM', 'x', 1, 1], ['RUN', 'a', 2, 2]]);
    expect(shape('FROM x\nRUN a \\\n# c\n\n')).toEqual([['FROM', 'x', 1, 1], ['RUN', 'a', 2, 4]]);
  });

  test('dockerfile-ast reads RUN and COPY heredoc bodies, also <<- and quoted delimiters, ONBUILD included', () => {
    const scan = jest.spyOn(logicalLine, 'heredocBody');
    const lines = split('FROM x\nRUN <<-EOF \\\n  bash\n\techo hi\n\tEOF\nCOPY <<"A" <<B /d/\n$a\nA\nb\nB\nONBUILD RUN <<E\nx\nE\nRUN y\n');
    expect(scan).not.toHaveBeenCalled();
    expect(lines.instructions.map((i) => [i.keyword, i.at.startLine, i.at.endLine, i.heredocs.map((h) => [h.name, h.content, h.expand, h.chomp])])).toEqual([
      ['FROM', 1, 1, []],
      ['RUN', 2, 5, [['EOF', '\techo hi\n', true, true]]],
      ['COPY', 6, 10, [['A', '$a\n', false, false], ['B', 'b\n', true, false]]],
      ['ONBUILD', 11, 13, [['E', 'x\n', true, false]]],
      ['RUN', 14, 14, []],
    ]);
  });

  test('directives: syntax, escape, check', () => {
    const lines = split('# syntax=docker/dockerfile:1\n# escape=`\n# check=skip=all\nFROM x\nRUN a `\n  b\n');
    expect([...lines.directives].map(([k, v]) => [k, v.value, v.at.startLine])).toEqual([['syntax', 'docker/dockerfile:1', 1], ['escape', '`', 2], ['check', 'skip=all', 3]]);
    expect(lines.escape).toBe('`');
    expect(shape('# escape=`\nFROM x\nRUN a `\n  b\n')[1]).toEqual(['RUN', 'a   b', 3, 4]);
  });
});

describe('where BuildKit differs from dockerfile-ast, BuildKit wins', () => {
  test('an escaped escape character at the end of a line is no continuation', () => {
    expect(shape('FROM x\nRUN a \\\\\nRUN b\n')).toEqual([['FROM', 'x', 1, 1], ['RUN', 'a \\\\', 2, 2], ['RUN', 'b', 3, 3]]);
  });

  test('a line of only the escape character continues into the next', () => {
    expect(shape('FROM x\n  \\\n  RUN a\nRUN b\n')).toEqual([['FROM', 'x', 1, 1], ['RUN', 'a', 2, 3], ['RUN', 'b', 4, 4]]);
  });

  test('a lone \\r is inside a line, not a line break', () => {
    expect(shape('FROM x\nRUN a\rb\nRUN c\n')).toEqual([['FROM', 'x', 1, 1], ['RUN', 'a\rb', 2, 2], ['RUN', 'c', 3, 3]]);
  });

  test('an escape directive after an unknown directive is a comment', () => {
    const lines = split('# foo=bar\n# escape=`\nFROM x\nRUN a `\nRUN b\n');
    expect(lines.escape).toBe('\\');
    expect(lines.directives.size).toBe(0);
    expect(lines.instructions.map((i) => [i.rest, i.at.startLine])).toEqual([['x', 3], ['a `', 4], ['b', 5]]);
  });

  test('a directive value is the rest of the line; a two-word name is a comment', () => {
    expect(split('# syntax=a b\nFROM x\n').directives.get('syntax')?.value).toBe('a b');
    expect(split('# syntax x=y\nFROM x\n').directives.size).toBe(0);
  });

  test('a partly quoted heredoc word ends at the unquoted name', () => {
    const lines = split('FROM x\nRUN <<E"O"F\nbody\nEOF\nRUN y\n');
    expect(lines.instructions.map((i) => [i.at.startLine, i.at.endLine, i.heredocs.map((h) => [h.name, h.expand])])).toEqual([[1, 1, []], [2, 4, [['EOF', false]]], [5, 5, []]]);
  });

  test('a heredoc with a file descriptor, 3<<EOF', () => {
    expect(split('FROM x\nRUN cat 3<<EOF\nbody\nEOF\nRUN y\n').instructions.map((i) => [i.at.startLine, i.at.endLine, i.heredocs.length])).toEqual([[1, 1, 0], [2, 4, 1], [5, 5, 0]]);
  });

  test('<< and <<- on one line: tabs are stripped only before the <<- delimiter', () => {
    const ins = split('FROM x\nRUN cat <<A <<-B\n\tA\n\tB\nA\n\tB\nRUN y\n').instructions;
    expect(ins.map((i) => [i.at.startLine, i.at.endLine])).toEqual([[1, 1], [2, 6], [7, 7]]);
    expect(ins[1].heredocs.map((h) => h.content)).toEqual(['\tA\n\tB\n', '']);
  });

  test('ADD heredocs, which dockerfile-ast does not expose', () => {
    const ins = split('FROM x\nADD <<EOF /a\nbody\nEOF\n').instructions;
    expect(ins[1]).toMatchObject({ at: { startLine: 2, endLine: 4 }, heredocs: [{ name: 'EOF', content: 'body\n' }] });
  });

  test('an unterminated heredoc is an error naming its first line', () => {
    expect(() => split('FROM x\nRUN <<EOF\nbody\n')).toThrow('Dockerfile:2:1: unterminated heredoc: no line "EOF" ends it');
  });

  test('a window re-read after a disagreement keeps line numbers', () => {
    const many = Array.from({ length: 300 }, (_, i) => `RUN a${i} \\\\`).join('\n');
    const ins = split(`FROM x\n${many}\nRUN <<EOF\nz\nEOF\n`).instructions;
    expect(ins).toHaveLength(302);
    expect(ins[300]).toMatchObject({ rest: 'a299 \\\\', at: { startLine: 301, endLine: 301 } });
    expect(ins[301]).toMatchObject({ at: { startLine: 302, endLine: 304 }, heredocs: [{ content: 'z\n' }] });
  });
});
