import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runBuildd, startDaemon, type TestDaemon } from '../helpers/daemon';
import { healthClient, type HealthClient } from '../helpers/health-client';
import { freePort } from '../helpers/registry';
import { waitFor } from '../helpers/wait-for';

jest.setTimeout(120_000);

/**
 * A real buildd process started with `--config buildd.toml`: it serves, with what the file
 * says (a health-only address only the file names); a file with a typo stops the start with the
 * key's path and a suggestion; `buildd config convert` prints TOML that the daemon takes.
 */
let tmp: string;
let daemon: TestDaemon | undefined;
const clients: HealthClient[] = [];

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-config-toml-'));
});

afterAll(async () => {
  for (const c of clients) c.close();
  await daemon?.stop();
  await fsp.rm(tmp, { recursive: true, force: true });
});

test('a daemon started with a .toml --config serves, configured by the file', async () => {
  const healthAddr = `127.0.0.1:${await freePort()}`;
  const config = path.join(tmp, 'buildd.toml');
  await fsp.writeFile(
    config,
    ['shutdownGrace = "5s"', '[log]', 'level = "debug"', '[grpc]', `healthAddress = "tcp://${healthAddr}"`, '[worker.oci]', 'max-parallelism = 2', ''].join('\n'),
  );
  daemon = await startDaemon({ builder: 'stub', extraArgs: ['--config', config] });
  const mtls = healthClient(daemon.addr, path.join(daemon.certsDir as string, 'client'));
  const probe = healthClient(healthAddr);
  clients.push(mtls, probe);
  expect(await waitFor('the mTLS listener', async () => ((await mtls.check()) === 'SERVING' ? true : undefined))).toBe(true);
  expect(await waitFor('the health address from buildd.toml', async () => ((await probe.check()) === 'SERVING' ? true : undefined))).toBe(true);
  expect(daemon.stderr()).toMatch(/health service listening on tcp:\/\/127\.0\.0\.1:\d+/);
});

test('a typo in buildd.toml stops the start, naming the key and the closest one', async () => {
  const config = path.join(tmp, 'typo.toml');
  await fsp.writeFile(config, '[worker.oci]\nmax-paralelism = 2\n');
  const res = await runBuildd(['--config', config, '--addr', `unix://${path.join(tmp, 'typo.sock')}`, '--root', path.join(tmp, 'typo-root')]);
  expect(res.code).toBe(1);
  expect(res.stderr).toBe(`buildd: Cannot load config ${config}: unknown key worker.oci.max-paralelism, did you mean "max-parallelism"?\n`);
});

test('buildd config convert prints the TOML of a JSON config', async () => {
  const json = path.join(tmp, 'buildd.json');
  await fsp.writeFile(json, JSON.stringify({ maxParallelism: 2, registry: { 'docker.io': { mirrors: ['mirror.local:5000'] } }, gc: { enabled: false } }));
  const res = await runBuildd(['config', 'convert', json]);
  expect(res.stderr).toBe('');
  expect(res.code).toBe(0);
  expect(res.stdout).toContain('[worker.oci]\nmax-parallelism = 2\ngc = false\n');
  expect(res.stdout).toContain('[registry."docker.io"]\nmirrors = [ "mirror.local:5000" ]\n');
  const bad = await runBuildd(['config', 'convert', path.join(tmp, 'absent.json')]);
  expect(bad.code).toBe(1);
  expect(bad.stderr).toMatch(/^buildd: Cannot convert config .*absent\.json: ENOENT/);
});
