import { toBuildError } from '../solver/build-error';
import { parseArgs } from './parse-args';
import { localKeys } from './local-keys';
import { PrefetchedWalk } from './walk-prefetch';

/**
 * `buildctl`: BuildKit-compatible client of buildd. Exit 0 on success, 1 on failure, 2 on usage
 * errors. Only what reading the flags needs is loaded before a build's context walks start (in
 * worker threads, see PrefetchedWalk): gRPC, the protocol and the renderers load meanwhile.
 */
export async function main(): Promise<number> {
  // grpc-js passes an IP address as TLS servername when dialing tcp://127.0.0.1:PORT; Node's
  // DEP0123 warning about it says nothing a user can act on.
  process.noDeprecation = true;
  let args: ReturnType<typeof parseArgs>;
  try {
    args = parseArgs(process.argv.slice(2), process.env);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('commander.')) {
      return code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help' ? 0 : 2;
    }
    process.stderr.write(`ERROR: ${toBuildError(err).message}\n`);
    return 2;
  }
  const prefetched: Record<string, PrefetchedWalk> = {};
  let keys: Record<string, string> | undefined;
  if (args.command.kind === 'build') {
    const { locals, frontendAttrs } = args.command;
    // a keyed local's walk posts only its listing and the files the daemon may ask for
    keys = await localKeys(locals);
    // the dockerfile local's walk enters only the directories on the way to the Dockerfile:
    // cheaper than a thread
    for (const name of Object.keys(locals)) {
      if (name !== 'dockerfile') prefetched[name] = PrefetchedWalk.start(name, locals, frontendAttrs.filename ?? 'Dockerfile', Object.hasOwn(keys, name) ? 'listing' : 'entries');
    }
  }
  try {
    const { runCommand } = await import('./run-command');
    return await runCommand(args, prefetched, keys);
  } finally {
    await Promise.all(Object.values(prefetched).map((w) => w.close()));
  }
}

if (require.main === module) {
  void main().then((code) => {
    process.exitCode = code;
  });
}
