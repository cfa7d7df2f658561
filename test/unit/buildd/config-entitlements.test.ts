import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { frontendOptWarnings } from '../../../buildd/frontend-opt-warnings';
import { buildStartSchema } from '../../../buildd/api/messages';
import { resolveConfig } from '../../../buildd/run-daemon';

describe('daemon entitlements: --allow-insecure-entitlement and insecureEntitlements', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-ent-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });
  const write = async (json: unknown): Promise<string> => {
    const f = path.join(dir, 'c.json');
    await fsp.writeFile(f, JSON.stringify(json));
    return f;
  };

  it('allows none by default', async () => {
    expect((await resolveConfig([])).insecureEntitlements).toEqual([]);
  });

  it('takes the flag repeatedly', async () => {
    const c = await resolveConfig(['--allow-insecure-entitlement', 'network.host', '--allow-insecure-entitlement', 'security.insecure']);
    expect(c.insecureEntitlements).toEqual(['network.host', 'security.insecure']);
  });

  it('reads the config key, which the flag replaces', async () => {
    const f = await write({ insecureEntitlements: ['security.insecure', 'network.host'] });
    expect((await resolveConfig(['--config', f])).insecureEntitlements).toEqual(['security.insecure', 'network.host']);
    expect((await resolveConfig(['--config', f, '--allow-insecure-entitlement', 'network.host'])).insecureEntitlements).toEqual(['network.host']);
  });

  it('refuses an unknown name in the flag and in the file', async () => {
    await expect(resolveConfig(['--allow-insecure-entitlement', 'network.hots'])).rejects.toMatchObject({
      code: 'commander.invalidArgument',
      message: expect.stringContaining('unknown entitlement network.hots (network.host or security.insecure)'),
    });
    const f = await write({ insecureEntitlements: ['device'] });
    await expect(resolveConfig(['--config', f])).rejects.toThrow(/^Cannot load config .*insecureEntitlements/);
  });
});

describe('BuildStart.entitlements', () => {
  const start = { frontend: 'dockerfile.v0', frontend_attrs: {}, local_names: [], exports: [], no_cache: false };

  it('takes BuildKit entitlement names, and none from a client that sends no field', () => {
    expect(buildStartSchema.parse({ ...start, entitlements: ['network.host'] })).toMatchObject({ entitlements: ['network.host'] });
    expect(buildStartSchema.parse(start)).toMatchObject({ entitlements: [] });
  });

  it('refuses an unknown name', () => {
    expect(buildStartSchema.safeParse({ ...start, entitlements: ['device'] }).success).toBe(false);
  });
});

describe('--opt force-network-mode', () => {
  it('is implemented: no warning', () => {
    expect(frontendOptWarnings({ 'force-network-mode': 'none' })).toEqual([]);
  });
});
