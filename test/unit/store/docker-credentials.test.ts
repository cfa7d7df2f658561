import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BuildError } from '../../../solver/build-error';
import { loadDockerCredentials, normalizeRegistryKey, parseDockerConfig } from '../../../store/docker-credentials';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('docker credentials', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-docker-config-'));
  });
  afterEach(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  /**
   * A docker-credential-<name> program speaking the helpers' protocol (server URL on stdin,
   * JSON on stdout; "credentials not found" and exit 1 when it has none): what `docker login`
   * with a credsStore leaves, played by a shell script the test writes.
   */
  async function helper(name: string, answers: Record<string, [string, string]>): Promise<void> {
    const cases = Object.entries(answers)
      .map(([url, [user, secret]]) => `  '${url}') printf '{"ServerURL":"%s","Username":"${user}","Secret":"${secret}"}' "$url" ;;`)
      .join('\n');
    const script = `#!/bin/sh\n[ "$1" = get ] || exit 2\nurl=$(cat)\necho "$url" >> "${dir}/asked-${name}"\ncase "$url" in\n${cases}\n  *) echo "credentials not found in native keychain"; exit 1 ;;\nesac\n`;
    await fsp.writeFile(path.join(dir, `docker-credential-${name}`), script, { mode: 0o755 });
  }
  const env = (): NodeJS.ProcessEnv => ({ DOCKER_CONFIG: dir, PATH: `${dir}:${process.env.PATH ?? ''}` });
  const write = (config: unknown): Promise<void> => fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(config));

  test('auth (base64 user:pass) and username/password, keyed by host', async () => {
    const config = parseDockerConfig(JSON.stringify({
      auths: {
        'https://index.docker.io/v1/': { auth: b64('hub:pa:ss') },
        'localhost:5000': { username: 'me', password: 'pw' },
        'http://reg.example:8443/v2/': { auth: b64('a:b') },
        'empty.example': {},
      },
    }));
    expect(config.auths.get('docker.io')).toEqual({ username: 'hub', password: 'pa:ss' });
    expect(config.auths.get('localhost:5000')).toEqual({ username: 'me', password: 'pw' });
    expect(config.auths.get('reg.example:8443')).toEqual({ username: 'a', password: 'b' });
    expect(config.auths.get('empty.example')).toBeUndefined();
  });

  test.each([
    ['https://index.docker.io/v1/', 'docker.io'],
    ['registry-1.docker.io', 'docker.io'],
    ['HTTP://Reg.Example:5000/', 'reg.example:5000'],
    ['127.0.0.1:5000', '127.0.0.1:5000'],
  ])('normalizes key %s to %s', (key, host) => {
    expect(normalizeRegistryKey(key)).toBe(host);
  });

  test.each([
    ['not json', '{'],
    ['auths not an object', '{"auths": []}'],
    ['auth not a string', '{"auths": {"h": {"auth": 5}}}'],
    ['auth without a colon', JSON.stringify({ auths: { h: { auth: b64('nocolon') } } })],
    ['a helper name with a slash', JSON.stringify({ credsStore: '../../bin/sh' })],
  ])('rejects %s', (_what, text) => {
    expect(() => parseDockerConfig(text)).toThrow(BuildError);
  });

  test('reads $DOCKER_CONFIG/config.json (or ~/.docker); a missing file means none; a change is read without a restart', async () => {
    const creds = await loadDockerCredentials({ DOCKER_CONFIG: dir });
    expect(await creds.lookup('docker.io')).toBeUndefined();
    await write({ auths: { 'docker.io': { auth: b64('u:p') } } });
    expect(await creds.lookup('docker.io')).toEqual({ username: 'u', password: 'p' });
    // a docker login meanwhile: the same source sees it
    await write({ auths: { 'docker.io': { auth: b64('u2:p2-longer') } } });
    expect(await creds.lookup('docker.io')).toEqual({ username: 'u2', password: 'p2-longer' });
    await fsp.mkdir(path.join(dir, 'home', '.docker'), { recursive: true });
    await fsp.writeFile(path.join(dir, 'home', '.docker', 'config.json'), JSON.stringify({ auths: { 'x.example': { auth: b64('h:q') } } }));
    expect(await (await loadDockerCredentials({ HOME: path.join(dir, 'home') })).lookup('x.example')).toEqual({ username: 'h', password: 'q' });
  });

  test('a malformed file stops the load at once, and a lookup once it turns malformed', async () => {
    await write({ auths: [] });
    await expect(loadDockerCredentials({ DOCKER_CONFIG: dir })).rejects.toThrow(/Cannot read docker credentials from .*config\.json/);
    await write({});
    const creds = await loadDockerCredentials({ DOCKER_CONFIG: dir });
    await fsp.writeFile(path.join(dir, 'config.json'), '{ broken');
    await expect(creds.lookup('x')).rejects.toThrow('not JSON');
  });

  test('credHelpers for their registry, then credsStore, then auths; Docker Hub asked by its v1 URL', async () => {
    await helper('store', { 'https://index.docker.io/v1/': ['hubuser', 'hubtoken'], 'reg.example': ['r', 's'] });
    await helper('ecr', { '123.dkr.example': ['AWS', 'ecr-pass'] });
    await write({
      credsStore: 'store',
      credHelpers: { '123.dkr.example': 'ecr' },
      auths: { 'only-file.example': { auth: b64('f:g') }, 'reg.example': {} },
    });
    const creds = await loadDockerCredentials(env());
    expect(await creds.lookup('docker.io')).toEqual({ username: 'hubuser', password: 'hubtoken' });
    expect(await creds.lookup('reg.example')).toEqual({ username: 'r', password: 's' });
    expect(await creds.lookup('123.dkr.example')).toEqual({ username: 'AWS', password: 'ecr-pass' });
    // the store has none for it: the stored auth is used
    expect(await creds.lookup('only-file.example')).toEqual({ username: 'f', password: 'g' });
    expect(await creds.lookup('nowhere.example')).toBeUndefined();
    // answers are kept a while: asking again does not run the helper again
    await creds.lookup('reg.example');
    expect((await fsp.readFile(path.join(dir, 'asked-store'), 'utf8')).split('\n').filter((l) => l === 'reg.example')).toHaveLength(1);
  });

  test('a helper that is missing or fails is an error naming it', async () => {
    await write({ credsStore: 'absent' });
    await expect((await loadDockerCredentials(env())).lookup('reg.example')).rejects.toThrow('Cannot get credentials for reg.example from docker-credential-absent: not found on PATH');
    await fsp.writeFile(path.join(dir, 'docker-credential-broken'), '#!/bin/sh\necho "keychain locked" >&2\nexit 3\n', { mode: 0o755 });
    await write({ credsStore: 'broken' });
    await expect((await loadDockerCredentials(env())).lookup('reg.example')).rejects.toThrow('docker-credential-broken: exit 3: keychain locked');
  });
});
