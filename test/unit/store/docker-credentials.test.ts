import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BuildError } from '../../../solver/build-error';
import { loadDockerCredentials, normalizeRegistryKey, parseDockerConfig } from '../../../store/docker-credentials';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('docker credentials', () => {
  test('auth (base64 user:pass) and username/password, keyed by host', () => {
    const creds = parseDockerConfig(JSON.stringify({
      auths: {
        'https://index.docker.io/v1/': { auth: b64('hub:pa:ss') },
        'localhost:5000': { username: 'me', password: 'pw' },
        'http://reg.example:8443/v2/': { auth: b64('a:b') },
        'empty.example': {},
      },
      credsStore: 'desktop',
    }));
    expect(creds.lookup('docker.io')).toEqual({ username: 'hub', password: 'pa:ss' });
    expect(creds.lookup('localhost:5000')).toEqual({ username: 'me', password: 'pw' });
    expect(creds.lookup('reg.example:8443')).toEqual({ username: 'a', password: 'b' });
    expect(creds.lookup('empty.example')).toBeUndefined();
    expect(creds.lookup('other.example')).toBeUndefined();
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
  ])('rejects %s', (_what, text) => {
    expect(() => parseDockerConfig(text)).toThrow(BuildError);
  });

  test('reads $DOCKER_CONFIG/config.json; a missing file means none', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-docker-config-'));
    try {
      expect((await loadDockerCredentials({ DOCKER_CONFIG: dir })).lookup('docker.io')).toBeUndefined();
      await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify({ auths: { 'docker.io': { auth: b64('u:p') } } }));
      expect((await loadDockerCredentials({ DOCKER_CONFIG: dir })).lookup('docker.io')).toEqual({ username: 'u', password: 'p' });
      await fsp.mkdir(path.join(dir, 'home', '.docker'), { recursive: true });
      await fsp.writeFile(path.join(dir, 'home', '.docker', 'config.json'), JSON.stringify({ auths: { 'x.example': { auth: b64('h:q') } } }));
      expect((await loadDockerCredentials({ HOME: path.join(dir, 'home') })).lookup('x.example')).toEqual({ username: 'h', password: 'q' });
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
