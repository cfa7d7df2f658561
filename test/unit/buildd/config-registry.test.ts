import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { resolveConfig } from '../../../buildd/run-daemon';
import { makeCerts } from '../../helpers/certs';

describe('daemon config: registry.<host>', () => {
  let dir: string;
  let ca: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-config-registry-'));
    ca = (await makeCerts(path.join(dir, 'certs'))).daemon.ca;
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });
  const write = async (json: unknown): Promise<string> => {
    const f = path.join(dir, 'c.json');
    await fsp.writeFile(f, JSON.stringify(json));
    return f;
  };

  it('takes http, insecure and ca (PEM files) per host, as buildkitd.toml', async () => {
    const registry = { 'reg.lan:5000': { ca: [ca] }, 'plain.lan': { http: true }, 'skip.lan': { insecure: true, http: false } };
    const c = await resolveConfig(['--config', await write({ registry })]);
    expect(c.registry).toEqual(registry);
  });

  it('refuses a CA file that is missing or holds no certificate, at start, naming host and file', async () => {
    const missing = path.join(dir, 'nope.pem');
    const f = await write({ registry: { 'reg.lan': { ca: [ca, missing] } } });
    await expect(resolveConfig(['--config', f])).rejects.toThrow(
      `Cannot load config ${f}: registry."reg.lan".ca: Cannot read CA file ${missing}: ENOENT: no such file or directory, stat '${missing}'`);
    const empty = path.join(dir, 'empty.pem');
    await fsp.writeFile(empty, '');
    const g = await write({ registry: { 'reg.lan': { ca: [empty] } } });
    await expect(resolveConfig(['--config', g])).rejects.toThrow(`Cannot load config ${g}: registry."reg.lan".ca: Cannot read CA file ${empty}: no PEM certificate in it`);
  });

  it('refuses settings of the wrong type or unknown', async () => {
    const f = await write({ registry: { r: { ca: 'one.pem' } } });
    await expect(resolveConfig(['--config', f])).rejects.toThrow(`Cannot load config ${f}: registry.r.ca: Expected array, received string`);
    const g = await write({ registry: { r: { http: 'yes' } } });
    await expect(resolveConfig(['--config', g])).rejects.toThrow(`Cannot load config ${g}: registry.r.http: Expected boolean, received string`);
    const h = await write({ registry: { r: { mirror: ['x'] } } });
    await expect(resolveConfig(['--config', h])).rejects.toThrow(/Unrecognized key\(s\) in object: 'mirror'/);
  });
});
