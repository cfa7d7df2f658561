import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { SecretsDir } from '../../../../buildd/worker/mounts/secrets-dir';

// /dev/shm is a tmpfs writable by every user: the place whose predictable names these guard
describe('SecretsDir in a directory every user can write to', () => {
  let shm: string;
  let elsewhere: string;
  beforeEach(async () => {
    shm = await fsp.mkdtemp('/dev/shm/buildd-unit-');
    await fsp.chmod(shm, 0o1777);
    elsewhere = await fsp.mkdtemp('/dev/shm/buildd-unit-target-');
  });
  afterEach(async () => {
    await fsp.rm(shm, { recursive: true, force: true });
    await fsp.rm(elsewhere, { recursive: true, force: true });
  });

  it('replaces a symlink put at its base name before a step, and never writes through it', async () => {
    const dir = SecretsDir.forDaemon('/var/lib/buildd/tmp', shm);
    await dir.prepare();
    await fsp.symlink(elsewhere, dir.base);
    const step = await dir.stepDir();
    const base = await fsp.lstat(dir.base);
    expect([base.isDirectory(), base.isSymbolicLink(), base.mode & 0o777]).toEqual([true, false, 0o700]);
    expect(path.dirname(step.path)).toBe(dir.base);
    expect(await fsp.readdir(elsewhere)).toEqual([]);
    await step.release();
  });

  it('replaces a directory others can enter put at its base name, with what it held', async () => {
    const dir = SecretsDir.forDaemon('/var/lib/buildd/tmp', shm);
    await dir.prepare();
    await fsp.mkdir(dir.base, { mode: 0o777 });
    await fsp.chmod(dir.base, 0o777);
    await fsp.writeFile(path.join(dir.base, 'planted'), 'x');
    const step = await dir.stepDir();
    expect((await fsp.lstat(dir.base)).mode & 0o777).toBe(0o700);
    expect(await fsp.readdir(dir.base)).toEqual([path.basename(step.path)]);
    await step.release();
  });
});
