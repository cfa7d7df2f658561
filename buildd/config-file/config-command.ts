import { Command } from 'commander';
import { readSmallFile } from '../../store/small-file';
import { jsonConfigToToml } from './json-config-to-toml';

/** Largest JSON config converted, as the daemon's own limit on config files. */
const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * `buildd config …`: commands about config files, apart from the daemon's own flags (runDaemon
 * hands it argv when the first word is `config`). `convert FILE.json` prints the buildd.toml
 * of a JSON config on `out`. Made per invocation; parseAsync runs it once.
 */
export function configCommand(out: (text: string) => void): Command {
  const config = new Command('buildd config').description('work with buildd config files (docs/config.md)').exitOverride();
  config
    .command('convert')
    .description('print a JSON config file as buildd.toml (TOML), which loads to the same configuration')
    .argument('<file>', 'the JSON config file')
    .exitOverride()
    .action(async (file: string) => {
      out(jsonConfigToToml(await readSmallFile(file, MAX_CONFIG_BYTES, 'convert config'), file));
    });
  return config;
}
