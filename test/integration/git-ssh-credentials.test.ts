import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { ensureBuilt } from '../helpers/daemon';
import { startSshd, type TestSshd } from '../helpers/sshd';
import { createSystemUser, type SystemUser } from '../helpers/system-user';

const run = promisify(execFile);
const DIST = path.resolve(__dirname, '..', '..', 'dist');

/**
 * The node program the test runs as the daemon would be run by a user: it loads buildd's git
 * source from dist/ as root (the worktree may not be readable by the user), then drops to the
 * user's uid, gid and groups, and resolves each remote. ssh finds keys through the passwd
 * entry of its uid, so this is what a daemon running as that user does.
 */
const RUN_AS_DAEMON = `
const [dist, user, uid, gid, ...remotes] = process.argv.slice(2);
const { GitSource } = require(dist + '/buildd/worker/git-source.js');
process.initgroups(user, Number(gid));
process.setgid(Number(gid));
process.setuid(Number(uid));
(async () => {
  const out = [];
  for (const remote of remotes) {
    try {
      const commit = await new GitSource(undefined, '/nonexistent').resolve(GitSource.request('git://test', { remote }), new AbortController().signal);
      out.push({ commit });
    } catch (e) {
      out.push({ code: e.code, message: e.message });
    }
  }
  process.stdout.write(JSON.stringify(out));
})();
`;

type Resolved = { commit: string } | { code: string; message: string };

/**
 * ADD of a git repository over ssh, against a real sshd: the daemon user's own key (in the
 * ~/.ssh of its passwd home) opens the repository to anyone who can plain ssh, yet buildd's
 * git source must never log in with it.
 */
describe('a git source over ssh uses no credential of the daemon user', () => {
  let tmp: string;
  let user: SystemUser;
  let sshd: TestSshd;
  let key: string;
  let commit: string;
  let url: string;

  beforeAll(async () => {
    ensureBuilt();
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-git-ssh-'));
    await fsp.chmod(tmp, 0o755);
    user = await createSystemUser(path.join(tmp, 'home'));

    // One key pair: authorized for the user on the server, and the user's default identity.
    const dotSsh = path.join(user.home, '.ssh');
    await fsp.mkdir(dotSsh, { mode: 0o700 });
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'daemon-user-key', '-f', path.join(dotSsh, 'id_ed25519')]);
    await fsp.copyFile(path.join(dotSsh, 'id_ed25519.pub'), path.join(dotSsh, 'authorized_keys'));
    // The same key for the test's own (root) control login, outside the user's home.
    key = path.join(tmp, 'control_key');
    await fsp.copyFile(path.join(dotSsh, 'id_ed25519'), key);
    await fsp.chmod(key, 0o600);

    // The repository the server serves, and a ~/.gitconfig that would rewrite a bogus file://
    // remote to it, if git read the daemon user's config.
    const src = path.join(tmp, 'src');
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, 'a.txt'), 'over ssh\n');
    const git = (...args: string[]) => run('git', ['-C', src, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', ...args]);
    await git('init', '-q', '-b', 'main');
    await git('add', '.');
    await git('commit', '-qm', 'one');
    commit = (await git('rev-parse', 'HEAD')).stdout.trim();
    const bare = path.join(user.home, 'repo.git');
    await run('git', ['clone', '-q', '--bare', src, bare]);
    await fsp.writeFile(path.join(user.home, '.gitconfig'), `[url "file://${bare}"]\n\tinsteadOf = file:///nonexistent-alias/repo.git\n`);
    await run('chown', ['-R', `${user.uid}:${user.gid}`, user.home]);

    sshd = await startSshd(path.join(tmp, 'sshd'), [user.name]);
    url = `ssh://${user.name}@127.0.0.1:${sshd.port}${bare}`;
    // The user has logged in there before: the server is in its known_hosts.
    await fsp.writeFile(path.join(dotSsh, 'known_hosts'), sshd.knownHostsLine);
    await fsp.chown(path.join(dotSsh, 'known_hosts'), user.uid, user.gid);
  }, 120_000);

  afterAll(async () => {
    await sshd?.stop();
    await user?.remove();
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  });

  /** `git ls-remote` with the given ssh command, as root or as the user, with HOME at the user's home. */
  async function lsRemote(remote: string, sshCommand: string, asUser: boolean): Promise<string> {
    const setpriv = ['setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups'];
    const argv = [...(asUser ? setpriv : []), 'git', 'ls-remote', remote, 'HEAD'];
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: asUser ? user.home : tmp, GIT_SSH_COMMAND: sshCommand };
    return (await run(argv[0]!, argv.slice(1), { env, cwd: tmp })).stdout;
  }

  /** buildd's git source resolving each remote in a process running as the user. */
  async function resolveAsDaemon(...remotes: string[]): Promise<Resolved[]> {
    const script = path.join(tmp, 'run-as-daemon.js');
    await fsp.writeFile(script, RUN_AS_DAEMON);
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: user.home };
    const { stdout } = await run(process.execPath, [script, DIST, user.name, String(user.uid), String(user.gid), ...remotes], { env, cwd: tmp });
    return JSON.parse(stdout) as Resolved[];
  }

  test('the server serves the repository to the key, and a plain ssh of the user finds the key in its home', async () => {
    const quiet = '-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR';
    // The test gives the key explicitly, outside buildd: the server works.
    expect(await lsRemote(url, `ssh -F /dev/null -o IdentitiesOnly=yes -i ${key} ${quiet}`, false)).toBe(`${commit}\tHEAD\n`);
    // ssh run as the user, with no key named, logs in with ~/.ssh/id_ed25519 of its passwd
    // home, and knows the server from its ~/.ssh/known_hosts.
    expect(await lsRemote(url, 'ssh -o BatchMode=yes', true)).toBe(`${commit}\tHEAD\n`);
    // git run as the user reads its ~/.gitconfig: the bogus remote is rewritten to the repository.
    expect(await lsRemote('file:///nonexistent-alias/repo.git', 'false', true)).toBe(`${commit}\tHEAD\n`);
  }, 60_000);

  test("buildd's git source, run as that user, does not log in with its key nor read its git config", async () => {
    const [overSsh, aliased] = await resolveAsDaemon(url, 'file:///nonexistent-alias/repo.git');
    expect(overSsh).toEqual({ code: 'unauthenticated', message: expect.stringContaining(`Cannot fetch git repository ${url}: `) });
    expect((overSsh as { message: string }).message).toContain(`${user.name}@127.0.0.1: Permission denied (publickey).`);
    expect(aliased).toEqual({ code: 'failed-precondition', message: expect.stringContaining("Cannot fetch git repository file:///nonexistent-alias/repo.git: fatal: '/nonexistent-alias/repo.git' does not appear to be a git repository") });
    // The refusal is the server's, after a connection with no key offered.
    expect(await sshd.log()).toMatch(new RegExp(`Connection closed by authenticating user ${user.name} 127\\.0\\.0\\.1 port \\d+ \\[preauth\\]`));
  }, 60_000);
});
