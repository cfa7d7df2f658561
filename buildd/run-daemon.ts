import { Command, InvalidArgumentError, Option } from 'commander';
import pino, { type Logger } from 'pino';
import { toBuildError } from '../solver/build-error';
import { ENTITLEMENTS, isEntitlement, type Entitlement } from '../solver/entitlements';
import type { Builder } from './builder';
import { LOG_LEVELS, mergeConfig, type DaemonConfig, type DaemonConfigFile, type DaemonFlags } from './config';
import { configCommand } from './config-file/config-command';
import { defaultConfigPath } from './config-file/default-config-path';
import { loadConfigFile, loadDefaultConfigFile } from './config-file/load-config-file';
import { startDaemon, type RunningDaemon } from './daemon';
import { checkAddresses } from './listen';
import { watchParentLifeline } from './rootless/parent-lifeline';
import { CHILD_ENV, runUnderRootlesskit } from './rootless/rootlesskit-reexec';
import { rootlessStart } from './rootless/rootless-start';
import { builddVersion } from './version';
import { DaemonMetrics } from './ops/daemon-metrics';
import { startTracing, type Tracing } from './ops/tracing';
import { SNAPSHOTTER_CHOICES } from './worker/snapshotter-choice';
import { stopHostCommandHelper } from '../store/host-command';

/**
 * The daemon's process: parse flags and config, make the builder, serve until SIGTERM/SIGINT,
 * then exit 0. The builder comes from `makeBuilder` (main.ts passes the real one) so the
 * process logic does not depend on the build machinery being loadable.
 */
export type MakeBuilder = (opts: { root: string; logger: Logger; config: DaemonConfig; metrics: DaemonMetrics }) => Promise<Builder>;

interface MainFlags extends DaemonFlags {
  config?: string;
}

export function daemonCommand(): Command {
  return new Command('buildd')
    .description('buildd: an image build daemon')
    .version(builddVersion())
    .addOption(new Option('--addr <addr>', 'listen address, tcp://host:port or unix:///path (repeatable)').argParser(collect))
    .option('--root <dir>', 'state directory (default /var/lib/buildd)')
    .option('--tlscacert <file>', 'CA that client certificates must be signed by')
    .option('--tlscert <file>', 'server certificate')
    .option('--tlskey <file>', 'server private key')
    .option('--insecure-tcp', 'allow tcp listeners without TLS')
    .option('--config <file>', 'config file, buildd.toml (TOML) or JSON; flags override it (default /etc/buildd/buildd.toml, rootless ~/.config/buildd/buildd.toml, when it exists)')
    .option('--debug', 'debug logging (the same as --log-level debug)')
    .addOption(new Option('--log-level <level>', 'log level (default info)').choices(LOG_LEVELS))
    .option('--cni-config-path <file>', "CNI network config (.conflist) for RUN steps (default: buildd's own bridge buildd0, 10.10.0.0/16)")
    .option('--cni-binary-dir <dir>', 'directory of the CNI plugin binaries (default /usr/lib/cni)')
    .addOption(new Option('--cni-pool-size <n>', 'network sandboxes kept ready for RUN steps (default 0)').argParser(poolSize))
    .addOption(
      new Option('--allow-insecure-entitlement <name>', 'let clients grant an entitlement: network.host, security.insecure (repeatable)').argParser(entitlement),
    )
    .option('--rootless', "run in the starting user's namespaces (rootlesskit, /etc/subuid and /etc/subgid); RUN steps reach out through slirp4netns when /dev/net/tun is usable")
    .option('--registry-addr <host:port>', 'serve the embedded OCI registry from the content store (a loopback address unless it has TLS and an htpasswd file)')
    .option('--registry-tls', "the registry serves HTTPS with the daemon's certificate (--tlscert, --tlskey)")
    .option('--registry-tlscert <file>', 'the registry serves HTTPS with this certificate (with --registry-tlskey)')
    .option('--registry-tlskey <file>', "the registry certificate's private key")
    .option('--registry-htpasswd <file>', 'Basic authentication to the registry: an htpasswd file of bcrypt entries (htpasswd -B)')
    .option('--registry-anonymous-pull', 'with --registry-htpasswd: pulls need no credentials, pushes do')
    .option('--health-addr <addr>', 'also serve only the gRPC health service, without TLS, on tcp://host:port or unix:///path (for Kubernetes probes)')
    .option('--debugaddr <host:port>', 'serve Prometheus /metrics and /debug/pprof profiles over HTTP (no authentication: keep it on loopback or a private network)')
    .option('--shutdown-grace <duration>', 'after SIGTERM, how long running builds may finish before they are cancelled (default 20s)')
    .option(
      '--oci-worker-no-process-sandbox',
      "RUN steps share the daemon's PID namespace and /proc (for a container whose /proc is masked, e.g. Kubernetes; WARNING: steps can see and signal the daemon's processes); needs --rootless",
    )
    .addOption(new Option('--oci-worker-snapshotter <name>', 'how snapshots are layered: overlayfs, native (copies), auto (overlayfs where it mounts, else native)').choices(SNAPSHOTTER_CHOICES))
    .addHelpText('after', '\nCommands:\n  config convert <file>  print a JSON config file as buildd.toml (see docs/config.md)')
    .exitOverride();
}

function poolSize(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 128) throw new InvalidArgumentError('an integer from 0 to 128');
  return n;
}

function entitlement(value: string, previous: Entitlement[] | undefined): Entitlement[] {
  if (!isEntitlement(value)) throw new InvalidArgumentError(`unknown entitlement ${value} (${ENTITLEMENTS.join(' or ')})`);
  return [...(previous ?? []), value];
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** What resolveConfig takes besides argv; given per call. */
export interface ResolveOptions {
  /** the config read without --config; default defaultConfigPath() (a test points it elsewhere) */
  defaultConfigFile?: string;
}

/** Parses argv into the resolved config (exported for tests). */
export async function resolveConfig(argv: string[], opts: ResolveOptions = {}): Promise<DaemonConfig> {
  const cmd = daemonCommand();
  cmd.parse(argv, { from: 'user' });
  const flags = cmd.opts<MainFlags>();
  const file: DaemonConfigFile = flags.config
    ? await loadConfigFile(flags.config)
    : await loadDefaultConfigFile(opts.defaultConfigFile ?? defaultConfigPath(flags.rootless ?? false));
  return mergeConfig(file, flags);
}

/** `buildd config …` (see configCommand): the process's exit code. */
async function runConfigCommand(argv: string[]): Promise<number> {
  try {
    let printed = '';
    await configCommand((text) => (printed += text)).parseAsync(argv, { from: 'user' });
    // written before the exit that follows, whatever stdout is
    await new Promise<void>((resolve) => process.stdout.write(printed, () => resolve()));
    return 0;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    // commander already printed help, version or its own usage error
    if (typeof code === 'string' && code.startsWith('commander.')) return code === 'commander.helpDisplayed' || code === 'commander.version' ? 0 : 2;
    process.stderr.write(`buildd: ${toBuildError(err).message}\n`);
    return 1;
  }
}

/** Runs the daemon with `argv` (without `node script`); exits the process when done. */
export async function runDaemon(argv: string[], makeBuilder: MakeBuilder): Promise<void> {
  // the daemon has no operands, so a first word `config` can only mean the command
  if (argv[0] === 'config') process.exit(await runConfigCommand(argv.slice(1)));
  let config: DaemonConfig;
  try {
    config = await resolveConfig(argv);
    checkAddresses(config);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    // commander already printed help, version or its own usage error
    if (typeof code === 'string' && code.startsWith('commander.')) {
      process.exit(code === 'commander.helpDisplayed' || code === 'commander.version' ? 0 : 2);
    }
    process.stderr.write(`buildd: ${toBuildError(err).message}\n`);
    process.exit(1);
  }
  if (config.rootless) {
    try {
      if ((await rootlessStart()) === 'reexec') process.exit(await runUnderRootlesskit([...process.execArgv, ...process.argv.slice(1)]));
    } catch (err) {
      process.stderr.write(`buildd: ${toBuildError(err).message}\n`);
      process.exit(1);
    }
  }
  const logger = pino({ level: config.logLevel, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true }));
  let builder: Builder | undefined;
  let daemon: RunningDaemon | undefined;
  let tracing: Tracing | undefined;
  try {
    tracing = startTracing(config.otel, logger);
    const metrics = new DaemonMetrics();
    builder = await makeBuilder({ root: config.root, logger, config, metrics });
    daemon = await startDaemon(config, builder, logger, metrics);
  } catch (err) {
    logger.fatal({ err: toBuildError(err).message }, 'buildd cannot start');
    process.stderr.write(`buildd: ${toBuildError(err).message}\n`);
    await builder?.close().catch(() => undefined);
    await stopHostCommandHelper();
    await tracing?.shutdown();
    process.exit(1);
  }
  const running = daemon;
  let signalled = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (signalled) {
      logger.warn({ signal: sig }, 'second signal: exiting without waiting');
      process.exit(1);
    }
    signalled = true;
    logger.info({ signal: sig }, 'buildd shutting down');
    running.stop().then(
      async () => {
        await stopHostCommandHelper();
        await tracing?.shutdown();
        logger.info('buildd stopped');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err: toBuildError(err).message }, 'buildd stopped with an error');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  if (config.rootless && process.env[CHILD_ENV] === '1') {
    watchParentLifeline(process.stdin, () => {
      // after a SIGTERM the starter waits for us; only its own death ends the pipe first
      if (signalled) return;
      logger.warn('rootless: the buildd process that started rootlesskit is gone; shutting down');
      onSignal('SIGTERM');
    });
  }
  for (const a of running.addresses) logger.info({ addr: a.text }, `buildd listening on ${a.text}`);
  if (running.registry) logger.info({ registry: running.registry }, `registry listening on ${running.registry}`);
  if (running.debug) logger.info({ debugaddr: running.debug }, `debug server (metrics, profiles) listening on http://${running.debug}`);
  if (running.health) logger.info({ health: running.health.text }, `health service listening on ${running.health.text}`);
}
