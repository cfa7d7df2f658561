import { execFile, spawn } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { resolveConfig } from '../../buildd/run-daemon';
import { makeCerts } from '../helpers/certs';
import { ensureBuilt, runBuildctl } from '../helpers/daemon';
import { healthClient } from '../helpers/health-client';
import { freePort } from '../helpers/registry';
import { waitFor } from '../helpers/wait-for';

jest.setTimeout(120_000);

const run = promisify(execFile);
const REPO = path.resolve(__dirname, '..', '..');
const UNITS = path.join(REPO, 'deploy', 'systemd');

/**
 * The systemd units: systemd-analyze verifies both (with the binary path pointed at this
 * checkout), and the system unit's ExecStart line runs here as systemd would run it, with its
 * paths moved under a temporary directory: it serves over mutual TLS and the unix socket,
 * answers its health address, and stops cleanly on the unit's KillSignal.
 */
function unitValue(text: string, key: string): string {
  const line = text.split('\n').find((l) => l.startsWith(`${key}=`));
  if (line === undefined) throw new Error(`no ${key}= in the unit`);
  return line.slice(key.length + 1);
}

let tmp: string;
beforeAll(async () => {
  ensureBuilt();
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-systemd-'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

test('systemd-analyze verifies the system and the user unit', async () => {
  const bin = path.join(REPO, 'bin', 'buildd.js');
  for (const [unit, user] of [
    [path.join(UNITS, 'buildd.service'), false],
    [path.join(UNITS, 'user', 'buildd.service'), true],
  ] as const) {
    const dir = path.join(tmp, user ? 'user' : 'system');
    await fsp.mkdir(dir, { recursive: true });
    const copy = path.join(dir, 'buildd.service');
    await fsp.writeFile(copy, readFileSync(unit, 'utf8').replaceAll('/usr/local/bin/buildd', bin));
    const res = await run('systemd-analyze', ['verify', ...(user ? ['--user'] : []), copy], { env: { ...process.env, SYSTEMD_LOG_LEVEL: 'warning' } }).catch((err: { stderr: string; code: number }) => err);
    // messages about other units of this machine are not ours; ours must have none
    const ours = ('stderr' in res ? res.stderr : '').split('\n').filter((l) => l.includes('buildd.service'));
    expect(ours).toEqual([]);
  }
});

test("the user unit's ExecStart line is flags buildd takes", async () => {
  const exec = unitValue(readFileSync(path.join(UNITS, 'user', 'buildd.service'), 'utf8'), 'ExecStart').replaceAll('%t', '/run/user/1000');
  const [binary, ...args] = exec.split(/\s+/);
  expect(binary).toBe('/usr/local/bin/buildd');
  const config = await resolveConfig(args);
  expect(config).toMatchObject({ rootless: true, addr: ['unix:///run/user/1000/buildd/buildd.sock'], healthAddr: 'unix:///run/user/1000/buildd/health.sock', shutdownGraceMs: 300_000 });
});

test("the system unit's ExecStart line starts buildd, which serves, reports health and stops on SIGTERM", async () => {
  const unit = readFileSync(path.join(UNITS, 'buildd.service'), 'utf8');
  expect(unitValue(unit, 'KillSignal')).toBe('SIGTERM');
  const stopSeconds = Number(/^(\d+)min$/.exec(unitValue(unit, 'TimeoutStopSec'))?.[1]) * 60;
  const [grpcPort, healthPort, debugPort] = [await freePort(), await freePort(), await freePort()];
  // what StateDirectory=, RuntimeDirectory= and ConfigurationDirectory= would be
  const moved = (s: string): string =>
    s
      .replaceAll('/var/lib/buildd', path.join(tmp, 'var-lib-buildd'))
      .replaceAll('/run/buildd', path.join(tmp, 'run-buildd'))
      .replaceAll('/etc/buildd', path.join(tmp, 'etc-buildd'))
      .replace('0.0.0.0:1234', `127.0.0.1:${grpcPort}`)
      .replace('127.0.0.1:8081', `127.0.0.1:${healthPort}`)
      .replace('127.0.0.1:6060', `127.0.0.1:${debugPort}`);
  const [binary, ...args] = moved(unitValue(unit, 'ExecStart')).split(/\s+/);
  expect(binary).toBe('/usr/local/bin/buildd');
  const certs = await makeCerts(path.join(tmp, 'etc-buildd', 'certs'));
  const config = await resolveConfig(args);
  expect(shutdownFits(config.shutdownGraceMs, stopSeconds)).toBe(true);

  const child = spawn(process.execPath, [path.join(REPO, 'dist', 'buildd', 'main.js'), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const health = healthClient(`127.0.0.1:${healthPort}`);
  try {
    await waitFor('the health address to say SERVING', async () => ((await health.check()) === 'SERVING' ? true : undefined), 60_000);
    const viaTls = await runBuildctl(['--addr', `tcp://127.0.0.1:${grpcPort}`, '--tlsdir', certs.clientDir(), 'debug', 'workers']);
    expect(viaTls.stdout).toMatch(/^ID\s+PLATFORMS/);
    const viaSocket = await runBuildctl(['--addr', `unix://${path.join(tmp, 'run-buildd', 'buildd.sock')}`, 'debug', 'info']);
    expect(viaSocket.stdout).toMatch(/buildd/);
    expect((await fetch(`http://127.0.0.1:${debugPort}/metrics`)).status).toBe(200);
    expect(existsSync(path.join(tmp, 'var-lib-buildd', 'meta.db'))).toBe(true);
  } finally {
    health.close();
    child.kill('SIGTERM');
  }
  expect(await exited).toBe(0);
  expect(stderr).toMatch(/buildd stopped/);
  expect(existsSync(path.join(tmp, 'run-buildd', 'buildd.sock'))).toBe(false);
});

/** systemd's stop timeout leaves room for the drain and the cleanup after it. */
function shutdownFits(graceMs: number, stopSeconds: number): boolean {
  return stopSeconds * 1000 >= graceMs + 30_000;
}
