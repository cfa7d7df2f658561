import { promises as fsp } from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import { statusToBuildError } from '../buildd/api/grpc-status';
import { infoResponseSchema, type InfoResponse } from '../buildd/api/server-messages';
import { BuildError, toBuildError } from '../solver/build-error';
import { connect } from './connect';
import { DockerAuthProvider } from './docker-auth';
import { failureSummary } from './failure-summary';
import type { BuildCommand, ParsedArgs } from './parse-args';
import type { PrefetchedWalk } from './walk-prefetch';
import { PlainRenderer } from './progress-plain';
import { RawJsonRenderer } from './progress-rawjson';
import type { ProgressRenderer, RenderTarget } from './progress-renderer';
import { TtyRenderer } from './progress-tty';
import { localKeys } from './local-keys';
import { runBuild } from './run-build';

/**
 * Runs a parsed buildctl command against the daemon (main.ts parses the flags and starts the
 * context walks first): exit 0 on success, 1 on failure, with the failure printed.
 */
export async function runCommand(
  args: ParsedArgs,
  prefetched: Readonly<Record<string, PrefetchedWalk>> = {},
  /** the locals' keys when main worked them out already (localKeys) */
  keys?: Record<string, string>,
): Promise<number> {
  let client: grpc.Client | undefined;
  let renderer: ProgressRenderer | undefined;
  try {
    client = connect(args.connect);
    if (args.command.kind === 'info') {
      const info = await callInfo(client);
      process.stdout.write(`BuildKit: buildd ${info.version} (${info.api})\n`);
      return 0;
    }
    if (args.command.kind === 'du' || args.command.kind === 'prune') {
      // loaded only for these commands: a build does not pay for them
      const { runDu, runPrune } = await import('./cache-commands');
      const out = (s: string): void => void process.stdout.write(s);
      if (args.command.kind === 'du') await runDu(client, args.command, out);
      else await runPrune(client, args.command, out);
      return 0;
    }
    if (args.command.kind === 'histories' || args.command.kind === 'logs' || args.command.kind === 'workers') {
      const { runHistories, runLogs, runWorkers } = await import('./debug-commands');
      const out = (s: string): void => void process.stdout.write(s);
      if (args.command.kind === 'histories') await runHistories(client, args.command, out);
      else if (args.command.kind === 'workers') await runWorkers(client, args.command, out);
      else {
        const mode = args.command.progress;
        await runLogs(client, args.command, (now) => makeRenderer(mode, now));
      }
      return 0;
    }
    const cmd = args.command;
    renderer = makeRenderer(cmd.progress);
    const abort = new AbortController();
    process.once('SIGINT', () => abort.abort());
    process.once('SIGTERM', () => abort.abort());
    if (cmd.outputs.some((o) => o.dest === '-') && process.stdout.isTTY) {
      throw new BuildError('invalid-argument', 'Cannot write the image tar to a terminal: redirect stdout or use dest=FILE');
    }
    const response = await runBuild(client, { ...cmd, localKeys: keys ?? (await localKeys(cmd.locals)), progress: renderer, signal: abort.signal, registryAuth: new DockerAuthProvider(), prefetched });
    if (cmd.metadataFile) await writeMetadata(cmd, response);
    return 0;
  } catch (err) {
    const be = toBuildError(err);
    if (args.command.kind === 'build') process.stderr.write(failureSummary(be, renderer?.state));
    else process.stderr.write(`ERROR: ${be.message}\n`);
    if (args.debug) process.stderr.write(`(code ${be.code}${be.vertex ? `, vertex ${be.vertex}` : ''})\n`);
    return 1;
  } finally {
    client?.close();
  }
}

/** `now`: the clock the renderer reads (a replay's is the recorded time of each event). */
function makeRenderer(mode: BuildCommand['progress'], now: () => number = Date.now): ProgressRenderer {
  const target: RenderTarget = {
    write: (s) => process.stderr.write(s),
    now,
    columns: process.stderr.columns,
  };
  const resolved = mode === 'auto' ? (process.stderr.isTTY ? 'tty' : 'plain') : mode;
  if (resolved === 'tty') return new TtyRenderer(target);
  if (resolved === 'rawjson') return new RawJsonRenderer(target);
  return new PlainRenderer(target);
}

function callInfo(client: grpc.Client): Promise<InfoResponse> {
  const deadline = new Date(Date.now() + 30_000);
  const c = client as unknown as {
    Info(req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: unknown) => void): void;
  };
  return new Promise((resolve, reject) => {
    c.Info({}, { deadline }, (err, res) => {
      if (err) return reject(statusToBuildError(err));
      const parsed = infoResponseSchema.safeParse(res);
      if (!parsed.success) return reject(new BuildError('internal', "Cannot read the daemon's info: malformed reply"));
      resolve(parsed.data);
    });
  });
}

async function writeMetadata(cmd: BuildCommand, response: Record<string, string>): Promise<void> {
  const file = cmd.metadataFile as string;
  try {
    await fsp.writeFile(file, JSON.stringify(response, null, 2) + '\n');
  } catch (err) {
    throw new BuildError('invalid-argument', `Cannot write metadata file ${file}: ${(err as Error).message}`);
  }
}
