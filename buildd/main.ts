import { runDaemon } from './run-daemon';

/**
 * `buildd` entry point. The build machinery is loaded only once flags and config are valid, so
 * `--help` and config errors answer even where it cannot load.
 */
void runDaemon(process.argv.slice(2), async (opts) => {
  const { createBuilder } = await import('./create-builder');
  return createBuilder(opts);
});
