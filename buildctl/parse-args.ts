import { Command, Option } from 'commander';
import { BuildError } from '../solver/build-error';
import { parseEntitlement, type Entitlement } from '../solver/entitlements';
import { parseLocals, parseOpts, parseOutputs, type OutputSpec } from './build-flags';
import { DEFAULT_ADDR } from '../buildd/api/address';
import type { ConnectFlags } from './connect';
import { parseSecrets, parseSshs, type SecretSpec, type SshSpec } from './session-flags';
import type { DuCommand, PruneCommand } from './cache-commands';
import type { DebugCommand } from './debug-commands';
import { parseDuration, parseStorage } from './cache-flags';
import { parseCacheFlag, type CacheFlag } from './cache-flag';

export type ProgressMode = 'auto' | 'plain' | 'tty' | 'rawjson';

/** `buildctl build` as parsed, before anything touches the disk or the network. */
export interface BuildCommand {
  kind: 'build';
  frontend: string;
  frontendAttrs: Record<string, string>;
  locals: Record<string, string>;
  outputs: OutputSpec[];
  noCache: boolean;
  /** --allow: entitlements granted to the build (the daemon must allow them too) */
  entitlements: Entitlement[];
  progress: ProgressMode;
  metadataFile?: string;
  /** --secret id=ID,src=FILE | env=VAR */
  secrets?: SecretSpec[];
  /** --ssh default | ID=SOCKET | ID=KEY[,KEY] */
  ssh?: SshSpec[];
  /** --export-cache, --import-cache: type=registry,ref=R[,mode=max] */
  cacheExports?: CacheFlag[];
  cacheImports?: CacheFlag[];
}

export interface ParsedArgs {
  connect: ConnectFlags;
  debug: boolean;
  command: BuildCommand | DuCommand | PruneCommand | DebugCommand | { kind: 'info' };
}

function cacheFlags(o: { exportCache?: string[]; importCache?: string[] }): Pick<BuildCommand, 'cacheExports' | 'cacheImports'> {
  return {
    ...(o.exportCache?.length ? { cacheExports: o.exportCache.map((v) => parseCacheFlag('--export-cache', v)) } : {}),
    ...(o.importCache?.length ? { cacheImports: o.importCache.map((v) => parseCacheFlag('--import-cache', v)) } : {}),
  };
}

/** Client environment variables buildctl passes on as build args (BuildKit's propagatableEnvs). */
const PROPAGATED_ENV = ['SOURCE_DATE_EPOCH'];

function propagatedEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(PROPAGATED_ENV.filter((name) => env[name] !== undefined).map((name) => [`build-arg:${name}`, env[name] as string]));
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

/** --secret and --ssh, present only when given. */
function sessionFlags(o: { secret?: string[]; ssh?: string[] }, env: NodeJS.ProcessEnv): Pick<BuildCommand, 'secrets' | 'ssh'> {
  return {
    ...(o.secret ? { secrets: parseSecrets(o.secret, env) } : {}),
    ...(o.ssh ? { ssh: parseSshs(o.ssh, env) } : {}),
  };
}

/**
 * Parses buildctl's argv (without `node script`) with BuildKit's flag names. Throws a
 * commander error (with `.code`) for usage errors, a BuildError for bad values. `env` gives
 * BUILDKIT_HOST, the default of --addr.
 */
export function parseArgs(argv: readonly string[], env: NodeJS.ProcessEnv, out?: { writeOut(s: string): void; writeErr(s: string): void }): ParsedArgs {
  let command: ParsedArgs['command'] | undefined;
  const program = new Command('buildctl')
    .description('buildctl: the client of buildd')
    .option('--addr <addr>', 'daemon address, tcp://host:port or unix:///path', env['BUILDKIT_HOST'] || DEFAULT_ADDR)
    .option('--tlscacert <file>', 'CA of the daemon certificate')
    .option('--tlscert <file>', 'client certificate')
    .option('--tlskey <file>', 'client private key')
    .option('--tlsservername <name>', 'name the daemon certificate must carry')
    .option('--tlsdir <dir>', 'directory with ca.pem, cert.pem and key.pem')
    .option('--debug', 'more detail in errors')
    .exitOverride();
  if (out) program.configureOutput(out);

  program
    .command('build')
    .description('build, and export the result')
    .option('--frontend <name>', 'frontend, e.g. dockerfile.v0')
    .option('--local <name=dir>', 'a local directory to send, e.g. context=. (repeatable)', collect)
    .option('--opt <key=value>', 'frontend option: filename, target, build-arg:NAME=VALUE (repeatable)', collect)
    .option('--no-cache', 'ignore the build cache')
    .option('--allow <entitlement>', 'grant an entitlement: network.host, security.insecure (repeatable)', collect)
    .option('-o, --output <csv>', 'type=image,name=REF[,push=true] | type=oci|docker,dest=FILE|- (repeatable)', collect)
    .addOption(new Option('--progress <mode>', 'progress output').choices(['auto', 'plain', 'tty', 'rawjson']).default('auto'))
    .option('--metadata-file <file>', 'write the exporter response as JSON to this file')
    .option('--secret <csv>', 'secret for RUN --mount=type=secret: id=ID,src=FILE | id=ID,env=VAR (repeatable)', collect)
    .option('--ssh <spec>', 'ssh agent for RUN --mount=type=ssh: default | ID=SOCKET | ID=KEY[,KEY] (repeatable)', collect)
    .option('--export-cache <csv>', 'export the build cache: type=registry,ref=REF[,mode=min|max][,compression=...] (repeatable)', collect)
    .option('--import-cache <csv>', 'import a build cache: type=registry,ref=REF (repeatable)', collect)
    .exitOverride()
    .action((o: { frontend?: string; local?: string[]; opt?: string[]; cache: boolean; allow?: string[]; output?: string[]; progress: ProgressMode; metadataFile?: string }) => {
      if (!o.frontend) throw new BuildError('invalid-argument', 'Cannot build: --frontend is required (e.g. --frontend dockerfile.v0)');
      command = {
        kind: 'build',
        frontend: o.frontend,
        // as BuildKit's buildctl: the client's $SOURCE_DATE_EPOCH becomes the build arg, an --opt wins
        frontendAttrs: { ...propagatedEnv(env), ...parseOpts(o.opt ?? []) },
        locals: parseLocals(o.local ?? []),
        outputs: parseOutputs(o.output ?? []),
        noCache: o.cache === false,
        entitlements: [...new Set((o.allow ?? []).map((e) => parseEntitlement('--allow', e)))],
        progress: o.progress,
        metadataFile: o.metadataFile,
        ...sessionFlags(o as { secret?: string[]; ssh?: string[] }, env),
        ...cacheFlags(o as { exportCache?: string[]; importCache?: string[] }),
      };
    });

  program
    .command('du')
    .description('show what the build cache keeps on disk')
    .option('--filter <filter>', 'key==value, key!=value or key~=regexp (id, type, description, parent, inuse, shared, mutable; repeatable)', collect)
    .option('-v, --verbose', 'every field of every record')
    .exitOverride()
    .action((o: { filter?: string[]; verbose?: boolean }) => {
      command = { kind: 'du', filters: o.filter ?? [], verbose: o.verbose === true };
    });

  program
    .command('prune')
    .description('remove build cache')
    .option('--filter <filter>', 'as du --filter; until=DURATION as --keep-duration (repeatable)', collect)
    .option('--all', 'include internal records (buildd keeps none)')
    .option('--keep-duration <duration>', 'keep what was used within this long (24h, 1h30m)')
    .option('--keep-storage <size>', 'keep this much: megabytes as BuildKit (512) or with a unit (10GB)')
    .option('-v, --verbose', 'every field of every removed record')
    .exitOverride()
    .action((o: { filter?: string[]; all?: boolean; keepDuration?: string; keepStorage?: string; verbose?: boolean }) => {
      // docker builder prune's until=24h filter is --keep-duration
      const until = (o.filter ?? []).filter((f) => f.startsWith('until='));
      const durations = [...(o.keepDuration === undefined ? [] : [o.keepDuration]), ...until.map((f) => f.slice('until='.length))];
      command = {
        kind: 'prune',
        filters: (o.filter ?? []).filter((f) => !f.startsWith('until=')),
        all: o.all === true,
        keepDurationMs: durations.length === 0 ? 0 : Math.max(...durations.map(parseDuration)),
        keepBytes: o.keepStorage === undefined ? 0 : parseStorage(o.keepStorage),
        verbose: o.verbose === true,
      };
    });

  const debug = program.command('debug').description('inspect the daemon').exitOverride();
  debug
    .command('info')
    .description('show the daemon version')
    .exitOverride()
    .action(() => {
      command = { kind: 'info' };
    });

  const format = new Option('--format <format>', 'table or json').choices(['table', 'json']).default('table');
  debug
    .command('histories')
    .description('list past and running builds, newest first')
    .option('--ref <ref>', 'only this build')
    .addOption(format)
    .exitOverride()
    .action((o: { ref?: string; format: 'table' | 'json' }) => {
      command = { kind: 'histories', ...(o.ref === undefined ? {} : { ref: o.ref }), format: o.format };
    });
  debug
    .command('logs')
    .description("replay a past build's progress")
    .argument('<ref>', 'the build (debug histories lists them)')
    .addOption(new Option('--progress <mode>', 'auto, plain, tty or rawjson').choices(['auto', 'plain', 'tty', 'rawjson']).default('plain'))
    .exitOverride()
    .action((ref: string, o: { progress: ProgressMode }) => {
      command = { kind: 'logs', ref, progress: o.progress };
    });
  debug
    .command('workers')
    .description("show the daemon's worker: platforms, labels, GC policy, executor")
    .option('-v, --verbose', 'every field')
    .addOption(new Option('--format <format>', 'table or json').choices(['table', 'json']).default('table'))
    .exitOverride()
    .action((o: { verbose?: boolean; format: 'table' | 'json' }) => {
      command = { kind: 'workers', verbose: o.verbose === true, format: o.format };
    });

  program.parse([...argv], { from: 'user' });
  if (!command) throw new BuildError('invalid-argument', 'Cannot run: no command given (build, du, prune, debug info|histories|logs|workers)');
  const g = program.opts<ConnectFlags & { debug?: boolean }>();
  return {
    connect: {
      addr: g.addr,
      tlscacert: g.tlscacert,
      tlscert: g.tlscert,
      tlskey: g.tlskey,
      tlsservername: g.tlsservername,
      tlsdir: g.tlsdir,
    },
    debug: g.debug === true,
    command,
  };
}
