import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { sweepStepCgroups } from '../../../../buildd/worker/cgroups/step-cgroup-sweep';

describe('sweepStepCgroups', () => {
  let tmp: string;
  beforeEach(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-cg-sweep-'));
  });
  afterEach(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it("removes the steps' and probes' cgroups in each hierarchy, nothing else, and reports one it cannot remove", async () => {
    const step = 'buildd-0123456789abcdef01234567';
    const mem = path.join(tmp, 'memory', 'buildd-1001');
    const pids = path.join(tmp, 'pids', 'buildd-1001');
    for (const d of [
      path.join(mem, step),
      path.join(mem, 'buildd-probe-a1b2c3'),
      path.join(mem, 'buildd-daemon'),
      path.join(mem, 'buildd-short'),
      path.join(mem, 'other'),
      path.join(pids, step),
    ]) {
      await fsp.mkdir(d, { recursive: true });
    }
    // stands for a cgroup that still holds a process (rmdir fails)
    const busy = path.join(pids, 'buildd-fedcba9876543210fedcba98');
    await fsp.mkdir(path.join(busy, 'child'), { recursive: true });
    const res = await sweepStepCgroups([mem, pids, path.join(tmp, 'missing')]);
    expect(res.removed.sort()).toEqual([path.join(mem, step), path.join(mem, 'buildd-probe-a1b2c3'), path.join(pids, step)].sort());
    expect(res.left).toEqual([{ dir: busy, reason: 'ENOTEMPTY' }]);
    expect((await fsp.readdir(mem)).sort()).toEqual(['buildd-daemon', 'buildd-short', 'other']);
  });
});
