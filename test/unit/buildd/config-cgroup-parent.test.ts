import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { resolveConfig } from '../../../buildd/run-daemon';

describe('daemon config: cgroupParent', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-config-cgparent-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('is unset by default and read from the file', async () => {
    expect((await resolveConfig([])).cgroupParent).toBeUndefined();
    const f = path.join(dir, 'c.json');
    await fsp.writeFile(f, JSON.stringify({ cgroupParent: '/buildd-alice' }));
    expect((await resolveConfig(['--config', f])).cgroupParent).toBe('/buildd-alice');
  });

  it('names a relative path and one with ..', async () => {
    const f = path.join(dir, 'c.json');
    await fsp.writeFile(f, JSON.stringify({ cgroupParent: 'buildd' }));
    await expect(resolveConfig(['--config', f])).rejects.toThrow(`Cannot load config ${f}: cgroupParent: expected an absolute cgroup path such as /buildd`);
    await fsp.writeFile(f, JSON.stringify({ cgroupParent: '/buildd/../system.slice' }));
    await expect(resolveConfig(['--config', f])).rejects.toThrow(`Cannot load config ${f}: cgroupParent: expected a path without ".." segments`);
  });
});
