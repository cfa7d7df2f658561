import { DockerIgnore } from '../../../buildctl/dockerignore';
import { segmentRegExp } from '../../../store/path-glob';
import { PathPatterns } from '../../../store/path-pattern';

/** [patterns, paths that must match, paths that must not] */
const table: Array<[string[], string[], string[]]> = [
  [['**'], ['a', 'a/b/c'], []],
  [['**/*.go'], ['a.go', 'x/a.go', 'x/y/a.go'], ['a.gox', 'a/go']],
  [['a/**/b'], ['a/b', 'a/x/b', 'a/x/y/b', 'a/x/b/c'], ['b', 'x/a/b']],
  [['docs/**'], ['docs/a', 'docs/a/b'], ['docs', 'docsx']],
  [['*.md', '!README.md'], ['a.md', 'x.md'], ['README.md', 'a.txt']],
  [['build', '!build/keep', 'build/keep/tmp'], ['build', 'build/x', 'build/keep/tmp/y'], ['build/keep', 'build/keep/z']],
  [['/top'], ['top', 'top/x'], ['sub/top']],
  [['/a/../b/./c/'], ['b/c', 'b/c/d'], ['a/b/c']],
  [['?.txt'], ['a.txt'], ['ab.txt', '.txt', 'x/a.txt']],
  [['[a-z].log'], ['a.log', 'z.log'], ['A.log', '1.log']],
  [['[!a]b', '[^c]d'], ['!b', 'ab', 'xd'], ['xb', 'cd']],
  [['\\*star', 'q\\?', 'br\\[x'], ['*star', 'q?', 'br[x'], ['xstar', 'qq', 'brx']],
  [['a+b.(c)|{d}$'], ['a+b.(c)|{d}$'], ['aab.(c)|{d}$', 'a+bx(c)|{d}$']],
];

describe('one matcher for COPY --exclude and .dockerignore', () => {
  test.each(table)('%j', (patterns, yes, no) => {
    const exclude = new PathPatterns(patterns);
    const ignore = DockerIgnore.parse(patterns.join('\n'));
    for (const p of yes) expect([p, exclude.matches(p), ignore.ignores(p)]).toEqual([p, true, true]);
    for (const p of no) expect([p, exclude.matches(p), ignore.ignores(p)]).toEqual([p, false, false]);
    expect(ignore.hasExceptions).toBe(exclude.hasExclusions);
  });

  test('an unclosed [ or a trailing backslash is an error in both, as in patternmatcher.New', () => {
    for (const bad of ['a[b', 'a\\']) {
      expect(() => new PathPatterns([bad])).toThrow(/Cannot use pattern/);
      expect(() => DockerIgnore.parse(bad)).toThrow(/Cannot use pattern/);
    }
    expect(() => segmentRegExp('a[b')).toThrow(/unterminated \[/);
  });

  test('a bare ! is an error in both', () => {
    expect(() => new PathPatterns(['!'])).toThrow(/an exclusion needs a path/);
    expect(() => DockerIgnore.parse('a\n!\n')).toThrow(/an exclusion needs a path/);
  });
});

describe('.dockerignore file syntax', () => {
  test('a # starts a comment only in the first column, and a BOM is dropped', () => {
    const di = DockerIgnore.parse('\uFEFF# c\n  #x\n');
    expect(['# c', '#x', 'c'].map((p) => di.ignores(p))).toEqual([false, true, false]);
  });

  test('a pattern naming the context itself matches nothing, unlike an empty COPY --parents include', () => {
    expect(DockerIgnore.parse('.\n/\n').ignores('a')).toBe(false);
    expect(new PathPatterns(['']).matches('a')).toBe(false);
    expect(new PathPatterns(['.']).matches('a/b')).toBe(true);
  });
});

describe('mayReincludeBelow', () => {
  test('is true only where a ! pattern\'s leading segments agree with the directory', () => {
    const p = new PathPatterns(['**', '!docker/Dockerfile.prod', '!*/keep/*.js']);
    expect(p.mayReincludeBelow('docker')).toBe(true);
    expect(p.mayReincludeBelow('src')).toBe(true); // */keep/*.js may match src/keep/x.js
    expect(p.mayReincludeBelow('src/keep')).toBe(true);
    expect(p.mayReincludeBelow('src/lib')).toBe(false);
    expect(p.mayReincludeBelow('docker/sub')).toBe(false);
    // a ! pattern with ** re-includes anywhere below its prefix
    expect(new PathPatterns(['*', '!a/**/b']).mayReincludeBelow('a/x/y')).toBe(true);
    expect(new PathPatterns(['*', '!a/**/b']).mayReincludeBelow('c')).toBe(false);
    expect(new PathPatterns(['*', '!**/b']).mayReincludeBelow('c/d')).toBe(true);
    // without ! patterns nothing comes back
    expect(new PathPatterns(['*']).mayReincludeBelow('a')).toBe(false);
    // a pattern with an escape or a class may hold a / that is no separator: taken as reaching anywhere
    expect(new PathPatterns(['**', '!a[^x]b/c']).mayReincludeBelow('a')).toBe(true);
    expect(() => new PathPatterns(['a\\/b', '!a[/]b'])).not.toThrow();
  });

  test('a Dockerfile-only walk enters only the directories on the way to it', () => {
    const ignore = DockerIgnore.parse('**\n!docker/Dockerfile\n!docker/Dockerfile.dockerignore\n');
    expect(ignore.mayReincludeBelow('docker')).toBe(true);
    expect(ignore.mayReincludeBelow('node_modules')).toBe(false);
    expect(DockerIgnore.parse('*.log\n').mayReincludeBelow('logs')).toBe(false);
  });
});

describe('segmentRegExp', () => {
  test('keeps * and ? inside one segment and reads classes and escapes like path patterns', () => {
    expect(segmentRegExp('*.txt').test('a.txt')).toBe(true);
    // only ^ negates in Go's filepath.Match: [!a] is the class of ! and a (conformance case c94)
    expect(segmentRegExp('[!a]?').test('bc')).toBe(false);
    expect(segmentRegExp('[!a]?').test('ac')).toBe(true);
    expect(segmentRegExp('[!a]?').test('!c')).toBe(true);
    expect(segmentRegExp('[^a]?').test('bc')).toBe(true);
    expect(segmentRegExp('\\*').test('*')).toBe(true);
    expect(segmentRegExp('**').test('ab')).toBe(true);
  });
});
