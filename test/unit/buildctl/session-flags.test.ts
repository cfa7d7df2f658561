import { parseArgs } from '../../../buildctl/parse-args';
import { parseSecret, parseSecrets, parseSsh } from '../../../buildctl/session-flags';

describe('buildctl --secret and --ssh (BuildKit syntax)', () => {
  it('--secret: src/source is a file, env= a variable, type=env takes src as the variable, neither guesses from the id', () => {
    expect(parseSecret('id=token,src=/tmp/t', {})).toEqual({ id: 'token', file: '/tmp/t' });
    expect(parseSecret('id=token,source=/tmp/t,type=file', {})).toEqual({ id: 'token', file: '/tmp/t' });
    expect(parseSecret('id=token,env=VAR', {})).toEqual({ id: 'token', env: 'VAR' });
    expect(parseSecret('type=env,id=token,src=VAR', {})).toEqual({ id: 'token', env: 'VAR' });
    expect(parseSecret('ID=token,ENV=VAR', {})).toEqual({ id: 'token', env: 'VAR' });
    // no src and no env: the variable named like the id when it is set, else the file named so
    expect(parseSecret('id=GH_TOKEN', { GH_TOKEN: 'x' })).toEqual({ id: 'GH_TOKEN', env: 'GH_TOKEN' });
    expect(parseSecret('id=token', {})).toEqual({ id: 'token', file: 'token' });
    expect(parseSecret('id=t,"src=/a,b"', {})).toEqual({ id: 't', file: '/a,b' });
  });

  it('--secret: refuses a missing id, an unknown key or type, a bare word, an id given twice', () => {
    expect(() => parseSecret('src=/tmp/t', {})).toThrow('Cannot parse --secret src=/tmp/t: id is missing');
    expect(() => parseSecret('id=t,file=/x', {})).toThrow('Cannot parse --secret id=t,file=/x: unexpected key "file" (id, type, src, env)');
    expect(() => parseSecret('id=t,type=ssh', {})).toThrow('Cannot parse --secret id=t,type=ssh: unsupported secret type "ssh" (file or env)');
    expect(() => parseSecret('token', {})).toThrow('Cannot parse --secret token: "token" is not key=value');
    expect(() => parseSecrets(['id=a,src=x', 'id=a,env=Y'], {})).toThrow('Cannot use --secret id=a: given twice');
  });

  it('--ssh: default is $SSH_AUTH_SOCK, ID=PATH names a socket; no agent socket is an error', () => {
    expect(parseSsh('default', { SSH_AUTH_SOCK: '/run/agent' })).toEqual({ id: 'default', paths: ['/run/agent'] });
    expect(parseSsh('deploy=/tmp/a.sock', {})).toEqual({ id: 'deploy', paths: ['/tmp/a.sock'] });
    expect(parseSsh('keys=/k1,/k2', {})).toEqual({ id: 'keys', paths: ['/k1', '/k2'] });
    expect(() => parseSsh('default', {})).toThrow('Cannot use --ssh default: SSH_AUTH_SOCK is not set (start an ssh-agent, or give default=SOCKET)');
    expect(() => parseSsh('bad id=/x', {})).toThrow('Cannot parse --ssh bad id=/x: bad id "bad id"');
  });

  it('parseArgs carries them into the build command, and leaves them out when not given', () => {
    const args = parseArgs(['build', '--frontend', 'dockerfile.v0', '--secret', 'id=a,src=/f', '--secret', 'id=b,env=B', '--ssh', 'default', '--ssh', 'x=/s'], { SSH_AUTH_SOCK: '/agent' });
    expect(args.command).toMatchObject({
      kind: 'build',
      secrets: [{ id: 'a', file: '/f' }, { id: 'b', env: 'B' }],
      ssh: [{ id: 'default', paths: ['/agent'] }, { id: 'x', paths: ['/s'] }],
    });
    const plain = parseArgs(['build', '--frontend', 'dockerfile.v0'], {});
    expect(plain.command).not.toHaveProperty('secrets');
    expect(plain.command).not.toHaveProperty('ssh');
  });
});
