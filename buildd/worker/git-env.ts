/**
 * How git's ssh is run for a git source: with no credentials of the daemon's user.
 *
 * ssh does not find its files through `$HOME`: it reads `~/.ssh/id_*`, `~/.ssh/config` and
 * `~/.ssh/known_hosts` under the home directory of the passwd entry of the uid it runs as, so
 * the closed environment of `gitEnv` alone would still let a build log in with the daemon's
 * own key. Every such file is switched off on the command line:
 * - `-F /dev/null`: no user or system ssh_config (no Host blocks, ProxyCommand, IdentityFile);
 * - `IdentityFile=none` + `IdentitiesOnly=yes`: no default identity files (IdentitiesOnly
 *   alone still loads ~/.ssh/id_*; `none` is how OpenSSH says "no identity file");
 * - `IdentityAgent=none` (and no SSH_AUTH_SOCK in the environment): no agent. buildd does not
 *   forward a client's agent to git sources yet; when it does, that socket is the only one;
 * - no password, keyboard-interactive, host-based or GSSAPI authentication (GSSAPI would use
 *   the daemon's Kerberos ticket), and BatchMode so nothing ever prompts;
 * - host keys: the client gives no known_hosts for a git source, so, as BuildKit's git source
 *   does without one (`StrictHostKeyChecking=no`), any host key is accepted. The daemon's
 *   known_hosts files are neither read nor written (both set to /dev/null): they describe the
 *   daemon's hosts, not the client's. Accepting any host key offers nothing to a spoofed
 *   server since no daemon credential is ever sent; what it could do is serve other content,
 *   as it could over git:// or http://.
 * `LogLevel=ERROR` keeps ssh's "Permanently added ... to the list of known hosts" out of the
 * error messages, so a failure reads as git's own error.
 */
export const GIT_SSH_COMMAND = [
  'ssh',
  '-F /dev/null',
  '-o IdentityFile=none',
  '-o IdentitiesOnly=yes',
  '-o IdentityAgent=none',
  '-o PasswordAuthentication=no',
  '-o KbdInteractiveAuthentication=no',
  '-o HostbasedAuthentication=no',
  '-o GSSAPIAuthentication=no',
  '-o BatchMode=yes',
  '-o StrictHostKeyChecking=no',
  '-o UserKnownHostsFile=/dev/null',
  '-o GlobalKnownHostsFile=/dev/null',
  '-o LogLevel=ERROR',
].join(' ');

/**
 * The whole environment git runs in: nothing is inherited from the daemon's but PATH. git
 * reads its global config through `$HOME`/XDG (not passwd), so HOME=/nonexistent with
 * GIT_CONFIG_GLOBAL=/dev/null and GIT_CONFIG_NOSYSTEM=1 keeps the daemon user's ~/.gitconfig
 * (url.insteadOf, credential helpers, core.sshCommand) and /etc/gitconfig out; credential
 * helpers are also emptied on the command line by the caller.
 */
export function gitEnv(): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: '/nonexistent',
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_ASKPASS: '/bin/false',
    SSH_ASKPASS: '/bin/false',
    SSH_ASKPASS_REQUIRE: 'never',
    GIT_SSH_COMMAND,
    GIT_SSH_VARIANT: 'ssh',
    LC_ALL: 'C',
  };
}
