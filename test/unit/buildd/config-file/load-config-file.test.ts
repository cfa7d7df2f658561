import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { configFormat } from '../../../../buildd/config-file/load-config-file';
import { resolveConfig } from '../../../../buildd/run-daemon';

describe('--config with buildd.toml or JSON', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-config-file-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });
  const write = async (name: string, text: string): Promise<string> => {
    const f = path.join(dir, name);
    await fsp.writeFile(f, text);
    return f;
  };

  it('chooses the format by the name, else by whether the text starts with {', () => {
    expect(configFormat('/etc/buildd/buildd.toml', '{')).toBe('toml');
    expect(configFormat('/etc/buildd/buildd.json', 'root = "/x"')).toBe('json');
    expect(configFormat('/etc/buildd/buildd.TOML', '')).toBe('toml');
    expect(configFormat('/etc/buildd/config', '\n  {"root": "/x"}')).toBe('json');
    expect(configFormat('/etc/buildd/config', 'root = "/x"')).toBe('toml');
    expect(configFormat('/etc/buildd/config', '')).toBe('toml');
  });

  it('reads a .toml file, and flags override it as they override the JSON config', async () => {
    const f = await write(
      'buildd.toml',
      'root = "/from-toml"\n[grpc]\naddress = ["tcp://0.0.0.0:1234"]\ndebugAddress = "127.0.0.1:6060"\n[worker.oci]\nmax-parallelism = 3\nsnapshotter = "native"\n',
    );
    expect(await resolveConfig(['--config', f])).toMatchObject({ root: '/from-toml', addr: ['tcp://0.0.0.0:1234'], debugAddr: '127.0.0.1:6060', maxParallelism: 3, snapshotter: 'native' });
    const flags = await resolveConfig(['--config', f, '--root', '/from-flag', '--addr', 'unix:///x.sock', '--oci-worker-snapshotter', 'overlayfs']);
    expect(flags).toMatchObject({ root: '/from-flag', addr: ['unix:///x.sock'], snapshotter: 'overlayfs', maxParallelism: 3 });
  });

  it('resolves a TOML config and its JSON twin to the same configuration', async () => {
    const toml = await write('a.toml', '[grpc]\naddress = ["tcp://0.0.0.0:1"]\ninsecureTcp = true\n[registry."r:5000"]\nhttp = true\n[worker.oci]\ngc = false\n');
    const json = await write('a.json', JSON.stringify({ addr: ['tcp://0.0.0.0:1'], insecureTcp: true, registry: { 'r:5000': { http: true } }, gc: { enabled: false } }));
    expect(await resolveConfig(['--config', toml])).toEqual(await resolveConfig(['--config', json]));
  });

  it('keeps reading JSON: a .json file, and a JSON file of another name', async () => {
    const json = await write('c.json', JSON.stringify({ root: '/from-json' }));
    expect((await resolveConfig(['--config', json])).root).toBe('/from-json');
    const conf = await write('buildd.conf', JSON.stringify({ root: '/from-conf' }));
    expect((await resolveConfig(['--config', conf])).root).toBe('/from-conf');
    const broken = await write('broken.conf', '{ "root": "/x", }');
    await expect(resolveConfig(['--config', broken])).rejects.toThrow(/^Cannot load config .*broken\.conf: .*JSON/);
    const unknown = await write('u.json', JSON.stringify({ rot: '/x' }));
    await expect(resolveConfig(['--config', unknown])).rejects.toThrow(/Cannot load config .*u\.json: Unrecognized key\(s\) in object: 'rot'/);
  });

  it('reads TOML from a file of another name', async () => {
    const f = await write('buildd.conf', '# buildd\nroot = "/from-toml"\n');
    expect((await resolveConfig(['--config', f])).root).toBe('/from-toml');
  });

  it('checks the CA files a TOML config names, as it does for JSON', async () => {
    const f = await write('ca.toml', `[registry."r.example:5000"]\nca = ["${path.join(dir, 'missing.pem')}"]\n`);
    await expect(resolveConfig(['--config', f])).rejects.toThrow(/^Cannot load config .*ca\.toml: registry\."r\.example:5000"\.ca: .*missing\.pem/);
  });

  it('refuses a --config file that is not there', async () => {
    await expect(resolveConfig(['--config', path.join(dir, 'nope.toml')])).rejects.toThrow(/^Cannot load config .*nope\.toml: ENOENT/);
  });

  describe('without --config', () => {
    it('reads the default file when it exists', async () => {
      const f = await write('buildd.toml', 'root = "/from-default"\n[log]\nlevel = "debug"\n');
      expect(await resolveConfig([], { defaultConfigFile: f })).toMatchObject({ root: '/from-default', logLevel: 'debug' });
      expect((await resolveConfig(['--root', '/flag'], { defaultConfigFile: f })).root).toBe('/flag');
    });

    it('runs with the defaults when the default file is not there', async () => {
      const absent = await resolveConfig([], { defaultConfigFile: path.join(dir, 'buildd.toml') });
      expect(absent).toEqual(await resolveConfig([], { defaultConfigFile: path.join(dir, 'not-a-dir', 'x', 'buildd.toml') }));
      expect(absent).toMatchObject({ root: '/var/lib/buildd', addr: ['unix:///run/buildd/buildd.sock'] });
    });

    it('refuses a default file that is there and wrong, rather than starting without it', async () => {
      const f = await write('buildd.toml', '[worker.oci]\nmax-paralelism = 4\n');
      await expect(resolveConfig([], { defaultConfigFile: f })).rejects.toThrow(/unknown key worker\.oci\.max-paralelism, did you mean "max-parallelism"\?/);
    });

    it('does not read the default file when --config names another', async () => {
      const wrong = await write('buildd.toml', 'not toml at all');
      const chosen = await write('chosen.toml', 'root = "/chosen"');
      expect((await resolveConfig(['--config', chosen], { defaultConfigFile: wrong })).root).toBe('/chosen');
    });
  });
});
