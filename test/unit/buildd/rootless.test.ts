import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkSubids } from '../../../buildd/rootless/rootlesskit-reexec';
import { rootlessStart } from '../../../buildd/rootless/rootless-start';
import { readSubidRanges } from '../../../buildd/rootless/subid-ranges';
import { resolveConfig } from '../../../buildd/run-daemon';

describe('buildd --rootless: config', () => {
  const saved = process.env['XDG_DATA_HOME'];
  afterEach(() => {
    if (saved === undefined) delete process.env['XDG_DATA_HOME'];
    else process.env['XDG_DATA_HOME'] = saved;
  });

  it('is off by default, on with --rootless or the rootless key, and then keeps state under $XDG_DATA_HOME/buildd', async () => {
    process.env['XDG_DATA_HOME'] = '/home/u/.data';
    expect(await resolveConfig([])).toMatchObject({ rootless: false, root: '/var/lib/buildd' });
    expect(await resolveConfig(['--rootless'])).toMatchObject({ rootless: true, root: '/home/u/.data/buildd' });
    expect(await resolveConfig(['--rootless', '--root', '/srv/b'])).toMatchObject({ rootless: true, root: '/srv/b' });
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-config-rootless-'));
    try {
      const f = path.join(dir, 'c.json');
      await fsp.writeFile(f, JSON.stringify({ rootless: true }));
      expect(await resolveConfig(['--config', f])).toMatchObject({ rootless: true, root: '/home/u/.data/buildd' });
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });

  it('defaults the root to ~/.local/share/buildd without XDG_DATA_HOME', async () => {
    delete process.env['XDG_DATA_HOME'];
    expect((await resolveConfig(['--rootless'])).root).toBe(path.join(os.homedir(), '.local', 'share', 'buildd'));
  });
});

describe('buildd --rootless: subordinate ids', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-subid-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('reads the ranges that name the user or its id, skipping other users and malformed lines', async () => {
    const f = path.join(dir, 'subuid');
    await fsp.writeFile(f, 'alice:100000:65536\nbob:165536:65536\n# comment\n1001:300000:10\nalice:1:x\n  alice:400000:5  \n');
    expect(await readSubidRanges(f, { name: 'alice', id: 1001 })).toEqual([
      { start: 100000, count: 65536 },
      { start: 300000, count: 10 },
      { start: 400000, count: 5 },
    ]);
    expect(await readSubidRanges(path.join(dir, 'missing'), { name: 'alice', id: 1001 })).toEqual([]);
  });

  it('refuses a user with fewer than 65536 subordinate uids or gids, saying which file and what to run', async () => {
    const subuid = path.join(dir, 'subuid');
    const subgid = path.join(dir, 'subgid');
    await fsp.writeFile(subuid, 'alice:100000:32768\nalice:200000:32768\n');
    await fsp.writeFile(subgid, 'alice:100000:1000\n');
    await expect(checkSubids({ name: 'alice', uid: 1001, gid: 1001 }, { subuid, subgid })).rejects.toMatchObject({
      code: 'failed-precondition',
      message: `Cannot start buildd --rootless: ${subgid} gives user alice 1000 subordinate ids, it needs at least 65536 (as root: usermod --add-subgids 100000-165535 alice)`,
    });
    await fsp.writeFile(subuid, '');
    await expect(checkSubids({ name: 'alice', uid: 1001, gid: 1001 }, { subuid, subgid })).rejects.toMatchObject({
      message: `Cannot start buildd --rootless: ${subuid} gives user alice 0 subordinate ids, it needs at least 65536 (as root: usermod --add-subuids 100000-165535 alice)`,
    });
    await fsp.writeFile(subuid, 'alice:100000:65536\n');
    await fsp.writeFile(subgid, '1001:100000:65536\n');
    await expect(checkSubids({ name: 'alice', uid: 1001, gid: 1001 }, { subuid, subgid })).resolves.toBeUndefined();
  });

  const asRoot = process.getuid?.() === 0 ? it : it.skip;
  asRoot('refuses to start as root of the initial user namespace', async () => {
    await expect(rootlessStart()).rejects.toMatchObject({
      code: 'failed-precondition',
      message: 'Cannot start buildd --rootless: it was started as root; start it as the unprivileged user whose namespaces it should use, or without --rootless',
    });
  });
});
