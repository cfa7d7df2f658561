import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { resolveConfig } from '../../../buildd/run-daemon';

describe('--oci-worker-no-process-sandbox (BuildKit\'s flag and [worker.oci] noProcessSandbox)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-config-nps-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });
  const nothing = (): string => path.join(dir, 'absent.toml');

  it('is off by default and on with the flag, rootless', async () => {
    expect((await resolveConfig(['--rootless', '--root', '/r'], { defaultConfigFile: nothing() })).noProcessSandbox).toBe(false);
    expect((await resolveConfig(['--rootless', '--root', '/r', '--oci-worker-no-process-sandbox'], { defaultConfigFile: nothing() })).noProcessSandbox).toBe(true);
  });

  it('is read from buildd.toml and from the JSON config under the same name', async () => {
    const toml = path.join(dir, 'buildd.toml');
    await fsp.writeFile(toml, '[worker.oci]\nrootless = true\nnoProcessSandbox = true\n');
    expect(await resolveConfig(['--config', toml, '--root', '/r'])).toMatchObject({ rootless: true, noProcessSandbox: true });
    const json = path.join(dir, 'buildd.json');
    await fsp.writeFile(json, JSON.stringify({ rootless: true, noProcessSandbox: true }));
    expect(await resolveConfig(['--config', json, '--root', '/r'])).toMatchObject({ rootless: true, noProcessSandbox: true });
  });

  it('is refused without --rootless, as buildkitd refuses it ("can\'t enable NoProcessSandbox without Rootless")', async () => {
    await expect(resolveConfig(['--oci-worker-no-process-sandbox'], { defaultConfigFile: nothing() })).rejects.toMatchObject({
      code: 'invalid-argument',
      message: expect.stringMatching(/^Cannot configure the worker: --oci-worker-no-process-sandbox needs --rootless/),
    });
    const toml = path.join(dir, 'root.toml');
    await fsp.writeFile(toml, '[worker.oci]\nnoProcessSandbox = true\n');
    await expect(resolveConfig(['--config', toml])).rejects.toMatchObject({ code: 'invalid-argument' });
  });
});
