import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { BuildError } from '../../solver/build-error';
import { describeZodError } from '../../solver/describe-zod-error';
import { loadCaFile } from '../../store/registry-hosts';
import { readSmallFile } from '../../store/small-file';
import { daemonConfigFileSchema, type DaemonConfigFile } from '../config';
import { parseTomlConfig } from './parse-toml-config';

/** Largest config file read: configs are small, and this keeps a wrong path from eating memory. */
const MAX_CONFIG_BYTES = 1024 * 1024;

export type ConfigFormat = 'json' | 'toml';

/**
 * How a config file is read: by its name when it ends in `.json` or `.toml`; else as JSON when
 * it starts with `{` (a TOML document cannot) and as TOML otherwise, so that a JSON config
 * under another name keeps working and its syntax errors are JSON's.
 */
export function configFormat(file: string, text: string): ConfigFormat {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.json') return 'json';
  if (ext === '.toml') return 'toml';
  return text.trimStart().startsWith('{') ? 'json' : 'toml';
}

/** A config's text, in either format, as DaemonConfigFile; `file` names it in errors. Pure. */
export function parseConfigText(text: string, file: string): DaemonConfigFile {
  if (configFormat(file, text) === 'toml') return parseTomlConfig(text, file);
  return parseJsonConfig(text, file, 'load').config;
}

/** A JSON config checked against the schema: the parsed JSON as given and the config it makes. Errors say `Cannot <action> config FILE`. */
export function parseJsonConfig(text: string, file: string, action: 'load' | 'convert'): { json: unknown; config: DaemonConfigFile } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new BuildError('invalid-argument', `Cannot ${action} config ${file}: ${(err as Error).message}`);
  }
  const parsed = daemonConfigFileSchema.safeParse(json);
  if (!parsed.success) throw new BuildError('invalid-argument', `Cannot ${action} config ${file}: ${describeZodError(parsed.error)}`);
  return { json, config: parsed.data };
}

/** `--config FILE`: buildd.toml or the JSON config, checked, with the CA files it names. */
export async function loadConfigFile(file: string): Promise<DaemonConfigFile> {
  const config = parseConfigText(await readSmallFile(file, MAX_CONFIG_BYTES, 'load config'), file);
  // A CA path that is wrong stops the daemon at start, not the first pull from that registry.
  for (const [host, settings] of Object.entries(config.registry ?? {})) {
    for (const ca of settings.ca ?? []) {
      try {
        await loadCaFile(ca);
      } catch (err) {
        throw new BuildError('invalid-argument', `Cannot load config ${file}: registry.${JSON.stringify(host)}.ca: ${(err as Error).message}`);
      }
    }
  }
  return config;
}

/**
 * The config read without `--config` (see defaultConfigPath): loaded as `--config` would when
 * the file exists, nothing when it does not. A file that exists and cannot be read is an error,
 * not a silent start with the defaults.
 */
export async function loadDefaultConfigFile(file: string): Promise<DaemonConfigFile> {
  try {
    await fsp.stat(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return {};
  }
  return loadConfigFile(file);
}
