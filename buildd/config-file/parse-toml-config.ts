import { parse, TomlError } from 'smol-toml';
import { BuildError } from '../../solver/build-error';
import { describeZodError } from '../../solver/describe-zod-error';
import { daemonConfigFileSchema, type DaemonConfigFile } from '../config';
import { describeTomlIssues } from './describe-toml-issues';
import { tomlToJson } from './map-config-keys';
import { tomlConfigSchema } from './toml-config-schema';

/** Deeper than any table of buildd.toml by far; a document nested deeper is not a config. */
const MAX_DEPTH = 16;

/**
 * The text of a buildd.toml (`file` names it in errors) as the JSON config's DaemonConfigFile,
 * so that mergeConfig and everything after it do not know which format was read. Fails with
 * invalid-argument naming the line and column of a TOML syntax error, the dotted path of an
 * unknown key (with the closest known one) or of a value of the wrong type. Pure: the files a
 * config names are checked by the caller.
 */
export function parseTomlConfig(text: string, file: string): DaemonConfigFile {
  let doc: Record<string, unknown>;
  try {
    // `__proto__` and `constructor` keys are refused outright: the document is untrusted input
    doc = parse(text, { unsafeKeyBehaviour: 'throw', maxDepth: MAX_DEPTH });
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    throw new BuildError('invalid-argument', `Cannot load config ${file}: line ${err.line}, column ${err.column}: ${tomlReason(err)}\n${err.codeblock.trimEnd()}`);
  }
  const checked = tomlConfigSchema.safeParse(doc);
  if (!checked.success) throw new BuildError('invalid-argument', `Cannot load config ${file}: ${describeTomlIssues(checked.error, tomlConfigSchema)}`);
  const parsed = daemonConfigFileSchema.safeParse(tomlToJson(doc));
  // the TOML schema checked every value with these very schemas: failing here is a bug of the mapping
  if (!parsed.success) throw new BuildError('internal', `Cannot load config ${file}: its TOML maps to an invalid config: ${describeZodError(parsed.error)}`);
  return parsed.data;
}

/** smol-toml's message without its preamble and the code block it appends (that is shown apart). */
function tomlReason(err: TomlError): string {
  const first = err.message.split('\n')[0] ?? err.message;
  return first.replace(/^Invalid TOML document: /, '');
}
