import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { statusToBuildError } from '../buildd/api/grpc-status';
import { decodeProgress } from '../buildd/api/progress-codec';
import { serverMessageSchema } from '../buildd/api/server-messages';
import { describeZodError } from '../solver/describe-zod-error';
import type { ExporterResponse } from '../buildd/builder';
import { BuildError, toBuildError } from '../solver/build-error';
import type { OutputSpec } from './build-flags';
import type { ProgressRenderer } from './progress-renderer';
import type { CredentialSource } from '../store/docker-credentials';
import { SecretStore } from './secret-store';
import type { SecretSpec, SshSpec } from './session-flags';
import { SessionClient } from './session-client';
import { SshAgents } from './ssh-agents';
import { FileRequestQueue } from './file-request-queue';
import type { CacheFlag } from './cache-flag';
import { daemonCacheFlags, LocalCacheDirs, presentBlobs } from './local-cache-dirs';
import { uploadLocals, type StartMessage, type UploadStats } from './upload-locals';
import type { PrefetchedWalk } from './walk-prefetch';

export interface RunBuildOptions {
  frontend: string;
  frontendAttrs: Record<string, string>;
  locals: Record<string, string>;
  outputs: OutputSpec[];
  noCache: boolean;
  /** buildctl build --allow; none when absent */
  entitlements?: string[];
  /** --export-cache and --import-cache; none when absent */
  cacheExports?: CacheFlag[];
  cacheImports?: CacheFlag[];
  progress: ProgressRenderer;
  /** where the oci/docker tar goes: a file path or '-' */
  openDest?: (dest: string) => Writable;
  signal?: AbortSignal;
  /** --secret: values read when the daemon asks for them */
  secrets?: SecretSpec[];
  /** --ssh: agents the daemon may open channels to */
  ssh?: SshSpec[];
  /** registry credentials lent to the daemon when it asks (the user's docker login); none: the daemon uses its own */
  registryAuth?: CredentialSource;
  /** locals sent incrementally, name → key of the daemon's kept copy (see local-keys.ts); none: all in full */
  localKeys?: Record<string, string>;
  /** told what content the upload sent, once it is done */
  onUploaded?: (stats: UploadStats) => void;
  /** walks of the locals started ahead (see PrefetchedWalk), by name; the others are walked when sent */
  prefetched?: Readonly<Record<string, PrefetchedWalk>>;
}

type BuildCall = grpc.ClientDuplexStream<object, unknown>;

/**
 * One build over Control.Build: uploads the locals while reading the daemon's stream, renders
 * progress, writes the export tar to the output's dest (pausing the call while the file
 * catches up), and resolves with the exporter response or rejects with the daemon's
 * BuildError (vertex and exit code included).
 */
export async function runBuild(client: grpc.Client, opts: RunBuildOptions): Promise<ExporterResponse> {
  const localNames = Object.keys(opts.locals).sort();
  const start: StartMessage = {
    frontend: opts.frontend,
    frontend_attrs: opts.frontendAttrs,
    local_names: localNames,
    exports: opts.outputs.map((o) => ({ type: o.type, attrs: o.attrs })),
    no_cache: opts.noCache,
    entitlements: opts.entitlements ?? [],
  };
  // a local cache's directory stays here: the daemon reads and writes it through the session
  const cacheImports = daemonCacheFlags(opts.cacheImports ?? [], 'src');
  const cacheExports = daemonCacheFlags(opts.cacheExports ?? [], 'dest');
  if (cacheExports.sent.length) {
    start.cache_exports = await Promise.all(
      cacheExports.sent.map(async (flag, i) => {
        const dir = cacheExports.dirs.get(i);
        const present = dir === undefined ? [] : await presentBlobs(dir);
        return present.length > 0 ? { ...flag, present } : flag;
      }),
    );
  }
  if (cacheImports.sent.length) start.cache_imports = cacheImports.sent;
  const cacheDirs = new LocalCacheDirs(cacheImports.dirs, cacheExports.dirs);
  const secrets = new SecretStore(opts.secrets ?? []);
  const agents = new SshAgents(opts.ssh ?? []);
  await secrets.check();
  await agents.start();
  if (agents.ids().length > 0) start.ssh_ids = agents.ids();
  if (opts.registryAuth) start.forward_credentials = true;
  const keys = Object.fromEntries(Object.entries(opts.localKeys ?? {}).filter(([name]) => localNames.includes(name)));
  if (Object.keys(keys).length > 0) start.local_keys = keys;
  const requests = new FileRequestQueue();
  const destOutput = opts.outputs.find((o) => o.dest !== undefined);
  const openDest = opts.openDest ?? defaultOpenDest;
  // type=local: the tar the daemon streams lands in a file of ours, unpacked into dest once whole
  const localTar = destOutput?.type === 'local' ? path.join(os.tmpdir(), `buildctl-local-${process.pid}-${randomBytes(6).toString('hex')}.tar`) : undefined;
  const call = (client as unknown as { Build(metadata: grpc.Metadata): BuildCall }).Build(traceMetadata(process.env));
  const onAbort = (): void => call.cancel();
  opts.signal?.addEventListener('abort', onAbort, { once: true });

  let dest: Writable | undefined;
  let localError: BuildError | undefined;
  const fail = (err: BuildError): void => {
    localError ??= err;
    call.cancel();
  };
  void uploadLocals(call, start, opts.locals, requests, opts.prefetched).then(opts.onUploaded, (err: unknown) => {
    // an upload that stops because the daemon already ended the call is not the error to show
    const be = toBuildError(err);
    if (be.code !== 'cancelled') fail(be);
  });

  const session = new SessionClient(call, secrets, agents, call, fail, opts.registryAuth, cacheDirs);
  let succeeded = false;
  try {
    const response = await new Promise<ExporterResponse>((resolve, reject) => {
      let result: ExporterResponse | undefined;
      call.on('data', (raw: unknown) => {
        const parsed = serverMessageSchema.safeParse(raw);
        if (!parsed.success) return fail(new BuildError('internal', `Cannot read the daemon's reply: ${describeZodError(parsed.error)}`));
        const m = parsed.data;
        if (session.handle(m)) return;
        if (m.msg === 'file_request') return requests.push(m.file_request);
        const ev = decodeProgress(m);
        if (ev) return opts.progress.event(ev);
        if (m.msg === 'result') {
          result = m.result.exporter_response;
          return;
        }
        if (m.msg === 'export') {
          if (!destOutput?.dest) return fail(new BuildError('internal', 'Cannot write export data: no output has a dest'));
          if (!dest) {
            try {
              dest = localTar !== undefined ? fs.createWriteStream(localTar, { mode: 0o600, flags: 'wx' }) : openDest(destOutput.dest);
            } catch (err) {
              return fail(toBuildError(err, 'invalid-argument'));
            }
            dest.once('error', (err: Error) => fail(new BuildError('invalid-argument', `Cannot write ${destOutput.dest}: ${err.message}`)));
          }
          if (m.export.data.length > 0 && !dest.write(m.export.data)) {
            call.pause();
            dest.once('drain', () => call.resume());
          }
          if (m.export.eof) dest.end();
        }
      });
      call.on('error', (err: grpc.ServiceError) => reject(localError ?? statusToBuildError(err)));
      call.on('end', () => {
        if (localError) reject(localError);
        else if (result) resolve(result);
        else reject(new BuildError('internal', 'Cannot finish the build: the daemon ended the stream without a result'));
      });
    });
    succeeded = true;
    return response;
  } finally {
    requests.close();
    session.close();
    await agents.close();
    // the daemon has ended the call; the client's side was kept open for the session
    call.end();
    opts.signal?.removeEventListener('abort', onAbort);
    opts.progress.end();
    if (dest && dest !== process.stdout) await finishStream(dest);
    if (localTar !== undefined) {
      try {
        if (succeeded && dest) await unpackLocal(localTar, destOutput?.dest as string);
      } finally {
        await fs.promises.rm(localTar, { force: true });
      }
    } else if (!succeeded && dest && dest !== process.stdout && destOutput?.dest && destOutput.dest !== '-') {
      // Half an image tar left at dest=FILE would pass for an image: remove it.
      await fs.promises.rm(destOutput.dest, { force: true });
    }
  }
}

/**
 * Unpacks the filesystem of a `local` output into `dir` (made when missing), every name kept
 * inside it as ADD's extraction does. As root the files keep the image's owners; otherwise
 * they are the user's own, who could not give them away. Loaded only for this output: the
 * extraction code is not part of every buildctl start.
 */
async function unpackLocal(tar: string, dir: string): Promise<void> {
  const { extractArchive } = await import('../store/archive-extract');
  await fs.promises.mkdir(dir, { recursive: true });
  const owner = process.getuid?.() === 0 ? null : { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  try {
    await extractArchive(tar, dir, owner);
  } catch (err) {
    throw new BuildError('invalid-argument', `Cannot write the local output to ${dir}: ${toBuildError(err).message}`);
  }
}

function defaultOpenDest(dest: string): Writable {
  if (dest === '-') {
    if (process.stdout.isTTY) throw new BuildError('invalid-argument', 'Cannot write the image tar to a terminal: redirect stdout or use dest=FILE');
    return process.stdout;
  }
  return fs.createWriteStream(dest, { mode: 0o644 });
}

function finishStream(s: Writable): Promise<void> {
  return new Promise((resolve) => {
    if (s.writableFinished || s.destroyed) return resolve();
    s.once('finish', () => resolve());
    s.once('error', () => resolve());
    s.once('close', () => resolve());
    if (!s.writableEnded) s.end();
  });
}

/**
 * The caller's W3C trace context ($TRACEPARENT and $TRACESTATE, as CI tools such as Jenkins'
 * OpenTelemetry plugin and otel-cli export it) as gRPC metadata: the daemon's build span
 * becomes its child. Malformed values are not sent.
 */
export function traceMetadata(env: NodeJS.ProcessEnv): grpc.Metadata {
  const md = new grpc.Metadata();
  const parent = env['TRACEPARENT']?.trim();
  if (parent !== undefined && /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/.test(parent)) {
    md.set('traceparent', parent);
    const state = env['TRACESTATE']?.trim();
    if (state !== undefined && state !== '' && state.length <= 512) md.set('tracestate', state);
  }
  return md;
}
