import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { loadControlApi } from '../../../buildd/api/load-proto';
import { clientMessageSchema } from '../../../buildd/api/messages';
import { BuildService } from '../../../buildd/build-service';
import type { Builder, BuildRequest, BuildSession, ExporterResponse } from '../../../buildd/builder';
import { PlainRenderer } from '../../../buildctl/progress-plain';
import { runBuild, type RunBuildOptions } from '../../../buildctl/run-build';
import { BuildError } from '../../../solver/build-error';
import type { SessionAttachables } from '../../../solver/worker';

class SessionBuilder implements Builder {
  behave: (s: SessionAttachables, signal: AbortSignal) => Promise<ExporterResponse> = async () => ({});
  async build(_req: BuildRequest, s: BuildSession): Promise<ExporterResponse> {
    if (!s.attachables) throw new BuildError('internal', 'no session');
    return this.behave(s.attachables, s.signal);
  }
  async close(): Promise<void> {}
}

/** Reads everything a duplex sends until it ends. */
function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.once('end', () => resolve(Buffer.concat(parts)));
    s.once('error', reject);
  });
}

describe('the build session: secrets asked on demand and ssh agents relayed over the Build call', () => {
  let tmp: string;
  let server: grpc.Server;
  let client: grpc.Client;
  let service: BuildService;
  const builder = new SessionBuilder();

  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-session-'));
    service = new BuildService({ builder, root: path.join(tmp, 'root'), logger: pino({ level: 'silent' }) });
    server = new grpc.Server();
    server.addService(loadControlApi().service, service.handlers());
    const sock = path.join(tmp, 'b.sock');
    await new Promise<void>((res, rej) => server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
    client = new (loadControlApi().Client)(`unix://${sock}`, grpc.credentials.createInsecure());
    await fsp.mkdir(path.join(tmp, 'ctx'));
  });
  afterAll(async () => {
    client.close();
    await service.shutdown();
    await new Promise<void>((res) => server.tryShutdown(() => res()));
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  const build = (extra: Partial<RunBuildOptions>): Promise<ExporterResponse> =>
    runBuild(client, {
      frontend: 'dockerfile.v0',
      frontendAttrs: {},
      locals: { context: path.join(tmp, 'ctx') },
      outputs: [],
      noCache: false,
      progress: new PlainRenderer({ write: () => undefined, now: () => 0 }),
      ...extra,
    });

  it('answers secret requests from a file and an env var, each time anew; an unknown id is not found', async () => {
    const file = path.join(tmp, 'secret.txt');
    await fsp.writeFile(file, 'from-file');
    process.env['BUILDD_TEST_SECRET'] = 'from-env';
    const seen: Array<string | undefined> = [];
    builder.behave = async (s, signal) => {
      const [a, b, c] = await Promise.all([s.secret('f', signal), s.secret('e', signal), s.secret('nope', signal)]);
      seen.push(a?.toString(), b?.toString(), c?.toString());
      await fsp.writeFile(file, 'changed');
      seen.push((await s.secret('f', signal))?.toString());
      return {};
    };
    try {
      await build({ secrets: [{ id: 'f', file }, { id: 'e', env: 'BUILDD_TEST_SECRET' }] });
    } finally {
      delete process.env['BUILDD_TEST_SECRET'];
    }
    // never cached: the second request reads the file again
    expect(seen).toEqual(['from-file', 'from-env', undefined, 'changed']);
  });

  it('refuses a secret file larger than 500 KiB before the build starts', async () => {
    const big = path.join(tmp, 'big.txt');
    await fsp.writeFile(big, Buffer.alloc(500 * 1024 + 1, 1));
    await expect(build({ secrets: [{ id: 'big', file: big }] })).rejects.toMatchObject({
      code: 'invalid-argument',
      message: `Cannot use --secret id=big: ${big} is larger than 500 KiB`,
    });
  });

  it('relays an ssh agent connection both ways, 1 MiB each way in chunks, and tells which ids are forwarded', async () => {
    // an "agent" that answers every byte with its complement, and counts its connections
    const agentSock = path.join(tmp, 'agent.sock');
    let connections = 0;
    const agent = net.createServer({ allowHalfOpen: true }, (c) => {
      connections++;
      c.on('data', (d: Buffer) => c.write(Buffer.from(d.map((x) => 255 - x))));
      c.on('end', () => c.end());
    });
    await new Promise<void>((res) => agent.listen(agentSock, res));
    const payload = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) % 256;
    let echoed: Buffer | undefined;
    let known: boolean[] = [];
    builder.behave = async (s) => {
      known = [s.hasSshAgent('default'), s.hasSshAgent('other')];
      const ch = s.connectSshAgent('default');
      const back = readAll(ch);
      ch.end(payload);
      echoed = await back;
      return {};
    };
    try {
      await build({ ssh: [{ id: 'default', paths: [agentSock] }] });
    } finally {
      await new Promise<void>((res) => agent.close(() => res()));
    }
    expect(known).toEqual([true, false]);
    expect(connections).toBe(1);
    expect(echoed?.equals(Buffer.from(payload.map((x) => 255 - x)))).toBe(true);
  });

  it('an agent that cannot be reached ends the channel with an error', async () => {
    const agentSock = path.join(tmp, 'gone.sock');
    const agent = net.createServer();
    await new Promise<void>((res) => agent.listen(agentSock, res));
    let failure: string | undefined;
    builder.behave = async (s) => {
      // the socket exists when buildctl checks it, and is gone when the step connects
      await new Promise<void>((res) => agent.close(() => res()));
      const ch = s.connectSshAgent('default');
      failure = await new Promise<string>((resolve) => {
        ch.once('error', (err) => resolve(err.message));
        ch.resume();
      });
      return {};
    };
    await build({ ssh: [{ id: 'default', paths: [agentSock] }] });
    expect(failure).toMatch(/^Cannot reach ssh agent default: connect ENOENT/);
  });

  it('validates session messages: secret size capped at 500 KiB, ssh chunks at 64 KiB, not_found carries no data', () => {
    const ok = clientMessageSchema.safeParse({ msg: 'secret_value', secret_value: { id: 't', data: Buffer.alloc(500 * 1024), not_found: false } });
    expect(ok.success).toBe(true);
    const big = clientMessageSchema.safeParse({ msg: 'secret_value', secret_value: { id: 't', data: Buffer.alloc(500 * 1024 + 1), not_found: false } });
    expect(big.success).toBe(false);
    expect(JSON.stringify(big.error?.issues)).toContain('Secret is larger than 500 KiB');
    expect(clientMessageSchema.safeParse({ msg: 'secret_value', secret_value: { id: 't', data: Buffer.from('x'), not_found: true } }).success).toBe(false);
    expect(clientMessageSchema.safeParse({ msg: 'ssh_data', ssh_data: { channel: 1, data: Buffer.alloc(64 * 1024) } }).success).toBe(true);
    expect(clientMessageSchema.safeParse({ msg: 'ssh_data', ssh_data: { channel: 1, data: Buffer.alloc(64 * 1024 + 1) } }).success).toBe(false);
    expect(clientMessageSchema.safeParse({ msg: 'ssh_data', ssh_data: { channel: -1, data: Buffer.from('x') } }).success).toBe(false);
  });
});
