import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { resolveConfig } from '../../../buildd/run-daemon';

describe('daemon config: stepLimits', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-config-limits-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('sets no step limits by default, as BuildKit', async () => {
    expect((await resolveConfig([])).stepLimits).toBeUndefined();
  });

  it('reads memory (with a unit), pids and cpus from the file', async () => {
    const f = path.join(dir, 'c.json');
    await fsp.writeFile(f, JSON.stringify({ stepLimits: { memory: '2g', pids: 4096, cpus: 1.5 } }));
    expect((await resolveConfig(['--config', f])).stepLimits).toEqual({ memoryBytes: 2 * 1024 ** 3, pids: 4096, cpus: 1.5 });
  });

  it('names a bad limit and an unknown key', async () => {
    const f = path.join(dir, 'c.json');
    await fsp.writeFile(f, JSON.stringify({ stepLimits: { memory: '2q' } }));
    await expect(resolveConfig(['--config', f])).rejects.toMatchObject({
      code: 'invalid-argument',
      message: `Cannot load config ${f}: stepLimits.memory: expected a size of at least 6m (bytes, or with a unit b, k, m, g, t), got "2q"`,
    });
    await fsp.writeFile(f, JSON.stringify({ stepLimits: { pids: 100, memmory: '1g' } }));
    await expect(resolveConfig(['--config', f])).rejects.toThrow(`Cannot load config ${f}: stepLimits: Unrecognized key(s) in object: 'memmory'`);
  });
});
