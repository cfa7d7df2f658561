import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { resolveConfig } from '../../../buildd/run-daemon';

describe('daemon config: CNI keys', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-config-cni-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('leaves both unset by default (buildd makes its own bridge network from /usr/lib/cni)', async () => {
    const c = await resolveConfig([]);
    expect(c.cniConfigPath).toBeUndefined();
    expect(c.cniBinaryDir).toBeUndefined();
  });

  it('reads cniConfigPath and cniBinaryDir from the file; --cni-config-path and --cni-binary-dir override them', async () => {
    const f = path.join(dir, 'c.json');
    await fsp.writeFile(f, JSON.stringify({ cniConfigPath: '/etc/buildd/cni.conflist', cniBinaryDir: '/opt/cni/bin' }));
    expect(await resolveConfig(['--config', f])).toMatchObject({ cniConfigPath: '/etc/buildd/cni.conflist', cniBinaryDir: '/opt/cni/bin' });
    expect(await resolveConfig(['--config', f, '--cni-config-path', '/x.conflist', '--cni-binary-dir', '/y'])).toMatchObject({
      cniConfigPath: '/x.conflist',
      cniBinaryDir: '/y',
    });
  });

  it('names a bad CNI key of the file', async () => {
    const f = path.join(dir, 'c.json');
    await fsp.writeFile(f, JSON.stringify({ cniBinaryDir: '' }));
    await expect(resolveConfig(['--config', f])).rejects.toThrow(`Cannot load config ${f}: cniBinaryDir: String must contain at least 1 character(s)`);
  });
});

describe('daemon config: --cni-pool-size', () => {
  it('takes the pool size from the file or the flag, the flag winning', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-config-pool-'));
    try {
      const f = path.join(dir, 'c.json');
      await fsp.writeFile(f, JSON.stringify({ cniPoolSize: 4 }));
      expect((await resolveConfig(['--config', f])).cniPoolSize).toBe(4);
      expect((await resolveConfig(['--config', f, '--cni-pool-size', '0'])).cniPoolSize).toBe(0);
      expect((await resolveConfig([])).cniPoolSize).toBeUndefined();
      await fsp.writeFile(f, JSON.stringify({ cniPoolSize: 1000 }));
      await expect(resolveConfig(['--config', f])).rejects.toThrow(`Cannot load config ${f}: cniPoolSize: Number must be less than or equal to 128`);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a pool size that is not a small integer', async () => {
    await expect(resolveConfig(['--cni-pool-size', 'many'])).rejects.toMatchObject({
      code: 'commander.invalidArgument',
      message: "error: option '--cni-pool-size <n>' argument 'many' is invalid. an integer from 0 to 128",
    });
  });
});
