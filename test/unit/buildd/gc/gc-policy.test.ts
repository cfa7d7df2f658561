import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { gcConfigSchema, gcDelayMs, gcRules } from '../../../../buildd/gc/gc-policy';

describe('gc policy', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'gc-policy-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("is BuildKit's default policy bounded by keepStorage, or off", async () => {
    const rules = await gcRules({ keepStorage: '10GB' }, root);
    expect(rules.map((r) => [r.filters?.map((f) => `${f.key}${f.op}${f.value}`), r.keepDurationMs, r.keepBytes])).toEqual([
      [['type==source.local'], 48 * 3_600_000, 512e6],
      [['type==exec.cachemount'], 48 * 3_600_000, 512e6],
      [[], 60 * 24 * 3_600_000, 10e9],
      [[], undefined, 10e9],
    ]);
    expect(await gcRules({ enabled: false }, root)).toEqual([]);
    // without keepStorage: a tenth of the root's file system
    expect((await gcRules(undefined, root))[3]?.keepBytes).toBeGreaterThan(0);
  });

  it('takes the configured rules with sizes, durations and filters checked', async () => {
    const config = gcConfigSchema.parse({ policy: [{ keepBytes: 1024, keepDuration: '1h30m', filters: ['type==regular'], all: true }, { keepDuration: 60 }], interval: '5s' });
    const rules = await gcRules(config, root);
    expect(rules[0]).toMatchObject({ keepBytes: 1024, keepDurationMs: 5_400_000, all: true });
    expect(rules[1]).toMatchObject({ keepDurationMs: 60_000 });
    expect(gcDelayMs(config)).toBe(5000);
    expect(gcDelayMs(undefined)).toBe(60_000);
    await expect(gcRules({ policy: [{ filters: ['colour==red'] }] }, root)).rejects.toThrow(/unknown key colour/);
    await expect(gcRules({ keepStorage: 'lots' }, root)).rejects.toThrow(/Cannot use size "lots"/);
    expect(gcConfigSchema.safeParse({ keepStorge: 1 }).success).toBe(false);
  });
});
