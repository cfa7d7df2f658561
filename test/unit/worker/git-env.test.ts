import { GIT_SSH_COMMAND, gitEnv } from '../../../buildd/worker/git-env';

describe('gitEnv', () => {
  test('ssh gets no identity, agent, config or known_hosts of the daemon user, and never prompts', () => {
    const opts = GIT_SSH_COMMAND.split(' ');
    expect(opts.slice(0, 3)).toEqual(['ssh', '-F', '/dev/null']);
    for (const o of ['IdentityFile=none', 'IdentitiesOnly=yes', 'IdentityAgent=none', 'BatchMode=yes', 'StrictHostKeyChecking=no', 'UserKnownHostsFile=/dev/null', 'GlobalKnownHostsFile=/dev/null']) expect(opts).toContain(o);
    const env = gitEnv();
    expect(env['SSH_AUTH_SOCK']).toBeUndefined();
    expect(env).toMatchObject({ HOME: '/nonexistent', GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0', GIT_SSH_COMMAND });
  });
});
