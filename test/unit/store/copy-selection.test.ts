import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { BuildError } from '../../../solver/build-error';
import { selectSources, walkSelected } from '../../../store/copy-selection';
import { resolveChownOwner } from '../../../store/passwd';

describe('selectSources and walkSelected', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'select-'));
    mkdirSync(path.join(root, 'src/deep/empty'), { recursive: true });
    writeFileSync(path.join(root, 'src/a.go'), 'a\n');
    writeFileSync(path.join(root, 'src/b.txt'), 'b\n');
    writeFileSync(path.join(root, 'src/deep/d.txt'), 'd\n');
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const notFound = (p: string): BuildError => new BuildError('not-found', `missing ${p}`);

  test('yields a pass-through directory only before something selected below it', async () => {
    const [source] = await selectSources(root, { srcPaths: ['src'], exclude: ['**/*.txt', 'deep', '!deep/d.txt'] }, notFound);
    const seen: string[] = [];
    for await (const e of walkSelected(source.hostPath, source.filter)) seen.push(`${e.rel}${e.passThrough ? ' (pass)' : ''}`);
    expect(seen).toEqual(['a.go', 'deep (pass)', 'deep/d.txt']);
  });

  test('--parents splits at /./ and keeps the include pattern', async () => {
    const sources = await selectSources(root, { srcPaths: ['src/./deep/*.txt'], parents: true }, notFound);
    expect(sources.map((s) => [s.path, s.parentsInclude])).toEqual([['/src', 'deep/*.txt']]);
    const seen: string[] = [];
    for await (const e of walkSelected(sources[0].hostPath, sources[0].filter)) seen.push(e.rel);
    expect(seen).toEqual(['deep', 'deep/d.txt']);
  });

  test('a missing plain path is the caller\'s not-found error', async () => {
    await expect(selectSources(root, { srcPaths: ['nope'] }, notFound)).rejects.toThrow('missing nope');
    expect(await selectSources(root, { srcPaths: ['*.none'] }, notFound)).toEqual([]);
  });
});

describe('resolveChownOwner', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'chown-'));
    mkdirSync(path.join(root, 'etc'));
    writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\napp:x:1000:2000::/home/app:/bin/sh\n');
    writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\nstaff:x:50:\n');
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  test('follows BuildKit: a numeric user alone takes gid = uid, a name takes its passwd group', async () => {
    expect(await resolveChownOwner(root, undefined)).toEqual({ uid: 0, gid: 0 });
    expect(await resolveChownOwner(root, { user: '1000' })).toEqual({ uid: 1000, gid: 1000 });
    expect(await resolveChownOwner(root, { user: 'app' })).toEqual({ uid: 1000, gid: 2000 });
    expect(await resolveChownOwner(root, { user: 'app', group: 'staff' })).toEqual({ uid: 1000, gid: 50 });
    await expect(resolveChownOwner(root, { user: 'nobody' })).rejects.toThrow(/no such user/);
  });
});
