import { applyThreadpoolSize } from './uv-threadpool';

// First of all: libuv sizes its threadpool from the environment once, when the pool is first
// used, so nothing that may use it (run-daemon's modules included) is loaded before this.
applyThreadpoolSize();

/**
 * `buildd` entry point. The build machinery is loaded only once flags and config are valid, so
 * `--help` and config errors answer even where it cannot load.
 */
void import('./run-daemon').then(({ runDaemon }) =>
  runDaemon(process.argv.slice(2), async (opts) => {
    const { createBuilder } = await import('./create-builder');
    return createBuilder(opts);
  }),
);
