import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import bcrypt from 'bcryptjs';
import { HtpasswdAuth } from '../../../../buildd/registry/htpasswd-auth';

const basic = (pair: string): string => 'Basic ' + Buffer.from(pair).toString('base64');

describe('htpasswd authentication of the embedded registry', () => {
  let dir: string;
  let auth: HtpasswdAuth;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-htpasswd-'));
    const file = path.join(dir, 'htpasswd');
    await fsp.writeFile(file, `alice:${bcrypt.hashSync('wonder land', 4)}\n\n# comment\nbob:${bcrypt.hashSync('b', 4).replace('$2b$', '$2y$')}\n`);
    auth = await HtpasswdAuth.load(file);
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  test('a right pair names its user, again from memory; $2y$ entries (htpasswd -B) are bcrypt too', async () => {
    expect(await auth.check(basic('alice:wonder land'))).toBe('alice');
    expect(await auth.check(basic('alice:wonder land'))).toBe('alice');
    expect(await auth.check(basic('bob:b'))).toBe('bob');
  });

  test('wrong passwords, unknown users and other schemes prove nothing, also when tried again', async () => {
    for (let i = 0; i < 2; i++) {
      expect(await auth.check(basic('alice:wrong'))).toBeUndefined();
      expect(await auth.check(basic('mallory:wonder land'))).toBeUndefined();
    }
    expect(await auth.check('Bearer abc')).toBeUndefined();
    expect(await auth.check(basic(':'))).toBeUndefined();
    expect(await auth.check(undefined)).toBeUndefined();
    // a failure of one pair does not hold back the right one
    expect(await auth.check(basic('alice:wonder land'))).toBe('alice');
  });

  test('files that are not user:bcrypt lines are refused, naming the line', async () => {
    const bad = path.join(dir, 'bad');
    await fsp.writeFile(bad, 'nocolon\n');
    await expect(HtpasswdAuth.load(bad)).rejects.toThrow(`Cannot load htpasswd ${bad}: line 1 is not user:hash`);
    await fsp.writeFile(bad, 'u:{SHA}abc\n');
    await expect(HtpasswdAuth.load(bad)).rejects.toThrow('only bcrypt entries are accepted');
    await fsp.writeFile(bad, '# only a comment\n');
    await expect(HtpasswdAuth.load(bad)).rejects.toThrow('no users');
    await expect(HtpasswdAuth.load(path.join(dir, 'missing'))).rejects.toThrow('ENOENT');
  });
});
