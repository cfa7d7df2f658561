import { ClientSession } from '../../../buildd/session/client-session';
import { SshChannel } from '../../../buildd/session/ssh-channel';
import type { ServerMessage } from '../../../buildd/api/server-messages';
import { BuildError } from '../../../solver/build-error';

describe('ClientSession', () => {
  const sent: ServerMessage[] = [];
  const send = async (m: ServerMessage): Promise<void> => void sent.push(m);
  beforeEach(() => sent.splice(0));

  it('asks once for concurrent requests of one id, gives each asker its own copy, and asks again later (no cache)', async () => {
    const s = new ClientSession(send, new Set());
    const signal = new AbortController().signal;
    const a = s.secret('token', signal);
    const b = s.secret('token', signal);
    expect(sent).toEqual([{ msg: 'secret_request', secret_request: { id: 'token' } }]);
    await s.handle({ msg: 'secret_value', secret_value: { id: 'token', data: Buffer.from('v1'), not_found: false } });
    const [va, vb] = await Promise.all([a, b]);
    va?.fill(0);
    expect(vb?.toString()).toBe('v1');
    const c = s.secret('token', signal);
    expect(sent).toHaveLength(2);
    await s.handle({ msg: 'secret_value', secret_value: { id: 'token', data: Buffer.alloc(0), not_found: true } });
    await expect(c).resolves.toBeUndefined();
  });

  it('refuses a value the daemon did not ask for, and rejects what is pending when the build ends', async () => {
    const s = new ClientSession(send, new Set());
    await expect(s.handle({ msg: 'secret_value', secret_value: { id: 'x', data: Buffer.from('v'), not_found: false } })).rejects.toMatchObject({
      code: 'invalid-argument',
      message: 'Cannot accept secret x: the daemon did not ask for it',
    });
    const pending = s.secret('y', new AbortController().signal);
    s.clientDone();
    await expect(pending).rejects.toMatchObject({ code: 'failed-precondition', message: 'Cannot ask the client: it closed its session (an older buildctl?)' });
    await expect(s.secret('z', new AbortController().signal)).rejects.toBeInstanceOf(BuildError);
  });

  it('a step that is cancelled stops waiting for its secret', async () => {
    const s = new ClientSession(send, new Set());
    const ac = new AbortController();
    const p = s.secret('slow', ac.signal);
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'cancelled', message: 'Cannot get secret slow: the step was cancelled' });
  });

  it('opens channels only to forwarded agents, numbered, and destroys them when the build ends', () => {
    const s = new ClientSession(send, new Set(['default']));
    expect(() => s.connectSshAgent('other')).toThrow('Cannot connect to ssh agent other: the client forwards no --ssh other');
    const a = s.connectSshAgent('default');
    const b = s.connectSshAgent('default');
    expect(sent).toEqual([
      { msg: 'ssh_open', ssh_open: { channel: 1, id: 'default' } },
      { msg: 'ssh_open', ssh_open: { channel: 2, id: 'default' } },
    ]);
    s.close();
    expect(a.destroyed && b.destroyed).toBe(true);
  });
});

describe('SshChannel', () => {
  it('holds the session back while its reader does not read (backpressure), and sends at most 64 KiB per message', async () => {
    const sent: ServerMessage[] = [];
    const ch = new SshChannel(7, async (m) => void sent.push(m), () => undefined);
    // fill the readable buffer past its high-water mark without reading
    let held: Promise<void> | undefined;
    let released = false;
    for (let i = 0; i < 64 && held === undefined; i++) {
      let done = false;
      const p = ch.fromClient(Buffer.alloc(4096, i)).then(() => void (done = true));
      // after every pending promise job has run: `done` tells whether the chunk was taken
      await new Promise((resolve) => setImmediate(resolve));
      if (!done) held = p.then(() => void (released = true));
    }
    // held once the readable buffer reached its high-water mark
    expect(ch.readableLength).toBeGreaterThanOrEqual(ch.readableHighWaterMark);
    expect(held).toBeDefined();
    expect(released).toBe(false);
    ch.read();
    await held;
    expect(released).toBe(true);

    await new Promise<void>((resolve, reject) => ch.write(Buffer.alloc(150 * 1024, 1), (err) => (err ? reject(err) : resolve())));
    const sizes = sent.filter((m) => m.msg === 'ssh_data').map((m) => (m.msg === 'ssh_data' ? m.ssh_data.data.length : 0));
    expect(sizes).toEqual([65536, 65536, 22528]);
    await new Promise<void>((resolve) => ch.end(resolve));
    expect(sent.at(-1)).toEqual({ msg: 'ssh_close', ssh_close: { channel: 7, error: '' } });
  });
});

describe('ClientSession registry credentials', () => {
  const sent: ServerMessage[] = [];
  const send = async (m: ServerMessage): Promise<void> => void sent.push(m);
  beforeEach(() => sent.splice(0));

  const value = (id: string, v: Partial<{ username: string; secret: string; not_found: boolean; error: string }>) =>
    ({ msg: 'credentials_value' as const, credentials_value: { id, username: '', secret: '', not_found: false, error: '', ...v } });

  it('asks nothing of a client that forwards no credentials', async () => {
    const s = new ClientSession(send, new Set());
    await expect(s.registryCredentials('reg.example:5000')).resolves.toBeUndefined();
    expect(sent).toEqual([]);
  });

  it('asks once per host for the whole build, whatever the number of askers', async () => {
    const s = new ClientSession(send, new Set(), true);
    const a = s.registryCredentials('reg.example:5000');
    const b = s.registryCredentials('reg.example:5000');
    const hub = s.registryCredentials('docker.io');
    expect(sent).toEqual([
      { msg: 'credentials_request', credentials_request: { id: '1', host: 'reg.example:5000' } },
      { msg: 'credentials_request', credentials_request: { id: '2', host: 'docker.io' } },
    ]);
    await s.handle(value('1', { username: 'ci', secret: 's3cret' }));
    await s.handle(value('2', { not_found: true }));
    await expect(Promise.all([a, b, hub])).resolves.toEqual([{ username: 'ci', password: 's3cret' }, { username: 'ci', password: 's3cret' }, undefined]);
    await expect(s.registryCredentials('reg.example:5000')).resolves.toEqual({ username: 'ci', password: 's3cret' });
    expect(sent).toHaveLength(2);
  });

  it("says why the client's lookup failed, refuses answers it did not ask for, and forgets everything when the build ends", async () => {
    const s = new ClientSession(send, new Set(), true);
    const broken = s.registryCredentials('broken.example');
    await s.handle(value('1', { error: 'docker-credential-pass: not found on PATH' }));
    await expect(broken).rejects.toMatchObject({ code: 'failed-precondition', message: "Cannot get the client's credentials for broken.example: docker-credential-pass: not found on PATH" });
    await expect(s.handle(value('9', { username: 'u', secret: 'p' }))).rejects.toMatchObject({ message: 'Cannot accept credentials 9: the daemon did not ask for them' });
    const pending = s.registryCredentials('late.example');
    s.close();
    await expect(pending).rejects.toMatchObject({ code: 'cancelled' });
    await expect(s.registryCredentials('broken.example')).rejects.toMatchObject({ code: 'cancelled' });
  });

  it('stops asking after 64 registries in one build', async () => {
    const s = new ClientSession(send, new Set(), true);
    for (let i = 0; i < 64; i++) void s.registryCredentials(`r${i}.example`);
    await expect(s.registryCredentials('one-more.example')).rejects.toThrow('this build already asked about 64 registries');
    s.close();
  });
});
