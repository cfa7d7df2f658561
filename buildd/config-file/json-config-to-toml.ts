import { stringify } from 'smol-toml';
import { parseJsonConfig } from './load-config-file';
import { jsonToToml } from './map-config-keys';

/**
 * The text of a JSON config (`file` names it in errors and the header) as buildd.toml, for
 * `buildd config convert`. The JSON is checked as the daemon checks it, and its values are
 * written as they were given (a size stays "2g", a duration "5m"), so the TOML loads back to
 * the same DaemonConfigFile. Files the config names are not opened: a config may well be
 * converted on another machine than the one it is for. Pure.
 */
export function jsonConfigToToml(text: string, file: string): string {
  const { json } = parseJsonConfig(text, file, 'convert');
  // the given values, not parsed.data: the schema turns some of them (stepLimits.memory) into others
  const toml = stringify(jsonToToml(json as Record<string, unknown>));
  const header = [`# buildd.toml, converted from ${file} by \`buildd config convert\`.`, '# Its keys are described in docs/config.md.', ''];
  return `${header.join('\n')}\n${spaced(toml)}`;
}

/** A blank line before every table header, which smol-toml leaves out after an empty table. */
function spaced(toml: string): string {
  // stringify writes one key or header per line and escapes newlines in strings, so a line that
  // starts with `[` is a header
  return toml.replace(/([^\n])\n\[/g, '$1\n\n[').replace(/^\n+/, '');
}
