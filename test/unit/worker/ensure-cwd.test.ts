import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ensureCwd } from '../../../buildd/worker/ensure-cwd';

describe('ensureCwd refuses working directories through magic links (runc CVE-2024-21626)', () => {
  let rootfs: string;
  const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  beforeEach(async () => {
    rootfs = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-cwd-'));
    await fsp.mkdir(path.join(rootfs, 'proc'));
    await fsp.mkdir(path.join(rootfs, 'dev'));
  });
  afterEach(async () => {
    await fsp.rm(rootfs, { recursive: true, force: true });
  });

  it.each(['/proc/self/fd/7', '/proc/1/cwd', '/proc/self/root/etc', '/proc', '/dev/fd/3', '/dev/stdin', '/proc/../proc/self/cwd'])(
    'refuses %s, creating nothing',
    async (cwd) => {
      await expect(ensureCwd(rootfs, cwd, me)).rejects.toMatchObject({
        code: 'invalid-argument',
        message: expect.stringMatching(new RegExp(`^Cannot use working directory ${cwd.replace(/[.]/g, '\\.')}: it is inside /(proc|dev/fd|dev/stdin), whose entries can lead outside the container$`)),
      });
      expect(await fsp.readdir(path.join(rootfs, 'proc'))).toEqual([]);
      expect(await fsp.readdir(path.join(rootfs, 'dev'))).toEqual([]);
    },
  );

  it('refuses a symlink of the image that leads into /proc, naming where it leads', async () => {
    await fsp.symlink('/proc/self/fd/7', path.join(rootfs, 'w'));
    await fsp.mkdir(path.join(rootfs, 'a'));
    await fsp.symlink('../dev/fd', path.join(rootfs, 'a', 'fds'));
    await expect(ensureCwd(rootfs, '/w', me)).rejects.toMatchObject({
      code: 'invalid-argument',
      message: 'Cannot use working directory /w: it is inside /proc (it resolves to /proc/self/fd/7), whose entries can lead outside the container',
    });
    await expect(ensureCwd(rootfs, '/a/fds/4/sub', me)).rejects.toMatchObject({ message: expect.stringContaining('it is inside /dev/fd (it resolves to /dev/fd/4/sub)') });
  });

  it('still creates ordinary directories, also ones merely named like /proc', async () => {
    for (const cwd of ['/procfs/x', '/devices', '/dev/shm/work', '/src/proc/self']) {
      await ensureCwd(rootfs, cwd, me);
      expect((await fsp.stat(path.join(rootfs, cwd))).isDirectory()).toBe(true);
    }
  });
});
