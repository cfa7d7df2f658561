import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { BuildError } from '../../solver/build-error';
import type { CopyAction } from '../../solver/op';
import { copyAction } from '../../store/fs-copy';
import { abortAtCheck } from '../helpers/abort-at-check';

const run = promisify(execFile);
const FILES = 40;

const gone = (): BuildError => new BuildError('cancelled', 'Cannot continue: the client went away');

/** Regular files under `dir`, relative. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await fsp.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort();
}

describe('copyAction aborted midway', () => {
  let tmp: string;
  let ctx: string;

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-copy-abort-'));
    ctx = path.join(tmp, 'ctx');
    await fsp.mkdir(path.join(ctx, 'many'), { recursive: true });
    for (let i = 0; i < FILES; i++) await fsp.writeFile(path.join(ctx, 'many', `f${String(i).padStart(3, '0')}`), `file ${i}\n`);
    await run('tar', ['-C', path.join(ctx, 'many'), '-cf', path.join(ctx, 'many.tar'), '.']);
  });

  afterAll(async () => {
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  });

  async function freshDir(name: string): Promise<string> {
    const dir = path.join(tmp, name);
    await fsp.mkdir(dir);
    return dir;
  }

  const copy = (over: Partial<CopyAction>): CopyAction => ({ type: 'copy', src: 0, srcPaths: ['many'], dest: '/out/', ...over });

  test('a COPY of a directory stops between files with the signal\'s reason, having copied only part of it', async () => {
    const dest = await freshDir('dest-dir');
    await expect(copyAction(copy({}), ctx, dest, { signal: abortAtCheck(10, gone()) })).rejects.toMatchObject({
      code: 'cancelled',
      message: 'Cannot continue: the client went away',
    });
    const copied = await filesUnder(path.join(dest, 'out'));
    expect(copied.length).toBeGreaterThan(0);
    expect(copied.length).toBeLessThan(FILES);
  });

  test('COPY --link stops too, leaves the destination as it was and removes its scratch layer', async () => {
    const dest = await freshDir('dest-link');
    const scratchParent = await freshDir('tmp-link');
    await expect(copyAction(copy({ link: true }), ctx, dest, { tmpDir: scratchParent, signal: abortAtCheck(10, gone()) })).rejects.toMatchObject({
      code: 'cancelled',
      message: 'Cannot continue: the client went away',
    });
    expect(await fsp.readdir(dest)).toEqual([]);
    expect(await fsp.readdir(scratchParent)).toEqual([]);
  });

  test('an ADD that unpacks an archive stops between its entries', async () => {
    const dest = await freshDir('dest-tar');
    await expect(copyAction(copy({ srcPaths: ['many.tar'], extract: true }), ctx, dest, { signal: abortAtCheck(10, gone()) })).rejects.toMatchObject({
      code: 'cancelled',
      message: 'Cannot continue: the client went away',
    });
    const copied = await filesUnder(path.join(dest, 'out'));
    expect(copied.length).toBeGreaterThan(0);
    expect(copied.length).toBeLessThan(FILES);
  });

  test('a signal that never aborts copies everything', async () => {
    const dest = await freshDir('dest-all');
    await copyAction(copy({}), ctx, dest, { signal: new AbortController().signal });
    expect(await filesUnder(path.join(dest, 'out'))).toHaveLength(FILES);
  });
});
