import { DockerIgnore } from '../../../buildctl/dockerignore';

const ignored = (patterns: string, paths: string[]): string[] => {
  const di = DockerIgnore.parse(patterns);
  return paths.filter((p) => di.ignores(p));
};

describe('dockerignore', () => {
  it('skips comments and blank lines and matches plain names at the root only', () => {
    expect(ignored('# comment\n\nnode_modules\n', ['node_modules', 'node_modules/x/y', 'src/node_modules', 'a'])).toEqual([
      'node_modules',
      'node_modules/x/y',
    ]);
  });

  it('keeps * and ? within one component', () => {
    expect(ignored('*.log\nsrc/?.ts', ['a.log', 'dir/a.log', 'src/a.ts', 'src/ab.ts', 'src/x/a.ts'])).toEqual(['a.log', 'src/a.ts']);
  });

  it('lets ** span any number of directories', () => {
    expect(ignored('**/*.tmp', ['a.tmp', 'x/a.tmp', 'x/y/z/a.tmp', 'a.tmpx'])).toEqual(['a.tmp', 'x/a.tmp', 'x/y/z/a.tmp']);
    expect(ignored('docs/**', ['docs', 'docs/a', 'docs/a/b', 'docsx'])).toEqual(['docs/a', 'docs/a/b']);
    expect(ignored('a/**/b', ['a/b', 'a/x/b', 'a/x/y/b', 'a/x/b/c'])).toEqual(['a/b', 'a/x/b', 'a/x/y/b', 'a/x/b/c']);
  });

  it('strips a leading / and cleans the pattern like filepath.Clean', () => {
    expect(ignored('/build/\n./tmp//x', ['build', 'build/out', 'tmp/x', 'sub/build'])).toEqual(['build', 'build/out', 'tmp/x']);
  });

  it('lets the last matching pattern win, with ! exceptions', () => {
    const di = DockerIgnore.parse('*.md\n!README.md\nREADME.md.bak\n');
    expect(di.hasExceptions).toBe(true);
    expect(['a.md', 'README.md', 'README.md.bak'].map((p) => di.ignores(p))).toEqual([true, false, true]);
    expect(ignored('*\n!src\nsrc/*.gen', ['a', 'src', 'src/x.ts', 'src/x.gen'])).toEqual(['a', 'src/x.gen']);
  });

  it('supports character classes (only ^ negates, as in Go) and escapes', () => {
    expect(ignored('file[0-9].txt\n[!a]b\n[^x]y\n\\*star', ['file1.txt', 'filex.txt', 'cb', 'ab', '!b', 'ay', 'xy', '*star', 'xstar'])).toEqual([
      'file1.txt',
      'ab',
      '!b',
      'ay',
      '*star',
    ]);
  });

  it('treats regex metacharacters literally', () => {
    expect(ignored('a+b.(c)', ['a+b.(c)', 'aab.(c)', 'a+bx(c)'])).toEqual(['a+b.(c)']);
  });
});
