import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { detectCgroupHost, linuxResources, parseMemorySize, stepLimitsSchema } from '../../../buildd/worker/step-limits';

describe('parseMemorySize', () => {
  it('takes bytes or a binary unit, as Docker does', () => {
    expect(parseMemorySize('2g')).toBe(2 * 1024 ** 3);
    expect(parseMemorySize('512m')).toBe(512 * 1024 ** 2);
    expect(parseMemorySize('512MiB')).toBe(512 * 1024 ** 2);
    expect(parseMemorySize('64KB')).toBe(64 * 1024);
    expect(parseMemorySize('1.5g')).toBe(1.5 * 1024 ** 3);
    expect(parseMemorySize('1000')).toBe(1000);
    expect(parseMemorySize(4096)).toBe(4096);
  });
  it('refuses what is not a size', () => {
    for (const v of ['', 'lots', '2 gigs', '-1g', '2x', '0', 0, -5, 1.5]) expect([v, parseMemorySize(v)]).toEqual([v, undefined]);
  });
});

describe('stepLimitsSchema', () => {
  it('maps the config keys to limits', () => {
    expect(stepLimitsSchema.parse({ memory: '2g', pids: 4096, cpus: 1.5 })).toEqual({ memoryBytes: 2 * 1024 ** 3, pids: 4096, cpus: 1.5 });
    expect(stepLimitsSchema.parse({})).toEqual({ memoryBytes: undefined, pids: undefined, cpus: undefined });
  });
  it('names what is wrong', () => {
    const issues = (v: unknown): string[] => {
      const r = stepLimitsSchema.safeParse(v);
      return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    };
    expect(issues({ memory: '1m' })).toEqual(['memory: expected a size of at least 6m (bytes, or with a unit b, k, m, g, t), got "1m"']);
    expect(issues({ memory: 'lots' })).toEqual(['memory: expected a size of at least 6m (bytes, or with a unit b, k, m, g, t), got "lots"']);
    expect(issues({ pids: 0 })).toEqual(['pids: Number must be greater than or equal to 1']);
    expect(issues({ pids: 2.5 })).toEqual(['pids: Expected integer, received float']);
    expect(issues({ cpus: 0 })).toEqual(['cpus: Number must be greater than or equal to 0.01']);
    expect(issues({ swap: '1g' })).toEqual([": Unrecognized key(s) in object: 'swap'"]);
  });
});

describe('linuxResources', () => {
  const limits = { memoryBytes: 64 * 1024 ** 2, pids: 100, cpus: 1.5 };

  it('is undefined when nothing is limited', () => {
    expect(linuxResources({}, { version: 2, swapAccounting: true })).toBeUndefined();
  });

  it('on cgroup v2: memory with no swap on top, pids, and CPU as quota per 100ms period', () => {
    expect(linuxResources(limits, { version: 2, swapAccounting: true })).toEqual({
      memory: { limit: 67108864, swap: 67108864 },
      pids: { limit: 100 },
      cpu: { quota: 150000, period: 100000 },
    });
  });

  it('on cgroup v1 with swap accounting: the same', () => {
    expect(linuxResources(limits, { version: 1, swapAccounting: true })).toEqual(linuxResources(limits, { version: 2, swapAccounting: true }));
  });

  it('on cgroup v1 without swap accounting: no swap limit, which runc could not set', () => {
    expect(linuxResources(limits, { version: 1, swapAccounting: false })?.memory).toEqual({ limit: 67108864 });
  });

  it('rounds fractions of a CPU to whole microseconds', () => {
    expect(linuxResources({ cpus: 0.333333 }, { version: 2, swapAccounting: true })).toEqual({ cpu: { quota: 33333, period: 100000 } });
  });
});

describe('detectCgroupHost', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-cgroup-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('sees v2 by the unified root cgroup.controllers', async () => {
    await fsp.writeFile(path.join(dir, 'cgroup.controllers'), 'cpu memory pids\n');
    expect(await detectCgroupHost(dir)).toEqual({ version: 2, swapAccounting: true });
  });

  it('sees v1 (also hybrid) otherwise, with swap accounting when memory.memsw exists', async () => {
    await fsp.mkdir(path.join(dir, 'memory'));
    await fsp.mkdir(path.join(dir, 'unified'));
    expect(await detectCgroupHost(dir)).toEqual({ version: 1, swapAccounting: false });
    await fsp.writeFile(path.join(dir, 'memory', 'memory.memsw.limit_in_bytes'), '');
    expect(await detectCgroupHost(dir)).toEqual({ version: 1, swapAccounting: true });
  });
});
