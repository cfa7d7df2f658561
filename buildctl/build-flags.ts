import { parseGoBool } from '../buildd/bool-attr';
import { suggest } from '../frontend/suggest';
import { BuildError } from '../solver/build-error';

/** One parsed `--output`; `dest` stays on the client. */
export interface OutputSpec {
  type: 'image' | 'oci' | 'docker' | 'tar' | 'local';
  attrs: Record<string, string>;
  /** file path, or '-' for stdout (oci, docker, tar); the directory of a local output */
  dest?: string;
}

/**
 * Splits one CSV record as Go's encoding/csv does for BuildKit's flags: fields separated by
 * commas, a field may be double-quoted, `""` inside quotes is a quote.
 */
export function splitCsv(text: string): string[] {
  const fields: string[] = [];
  let cur = '';
  let quoted = false;
  let atStart = true;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"' && atStart) {
      quoted = true;
      atStart = false;
    } else if (ch === ',') {
      fields.push(cur);
      cur = '';
      atStart = true;
    } else {
      cur += ch;
      atStart = false;
    }
  }
  if (quoted) throw new BuildError('invalid-argument', `Cannot parse "${text}": unterminated quote`);
  fields.push(cur);
  return fields;
}

/** `type=image,name=REF[,push=true]`, `type=registry,name=REF`, `type=oci,dest=FILE|-`, `type=docker,dest=FILE|-`. */
export function parseOutput(text: string): OutputSpec {
  const attrs: Record<string, string> = {};
  for (const field of splitCsv(text)) {
    const eq = field.indexOf('=');
    if (eq <= 0) throw new BuildError('invalid-argument', `Cannot parse --output ${text}: "${field}" is not key=value`);
    const key = field.slice(0, eq).trim().toLowerCase();
    attrs[key] = field.slice(eq + 1);
  }
  // As BuildKit: the registry exporter is the image exporter with push=true.
  const type = attrs['type'] === 'registry' ? 'image' : attrs['type'];
  if (attrs['type'] === 'registry') attrs['push'] = 'true';
  delete attrs['type'];
  const dest = attrs['dest'];
  delete attrs['dest'];
  if (type === undefined) throw new BuildError('invalid-argument', `Cannot parse --output ${text}: type is missing`);
  if (type !== 'image' && type !== 'oci' && type !== 'docker' && type !== 'tar' && type !== 'local') {
    throw new BuildError('invalid-argument', `Cannot parse --output ${text}: type ${type} is not supported (image, registry, oci, docker, tar, local)`);
  }
  // As BuildKit's buildctl: `output=` is a common slip for dest=.
  if (attrs['output'] !== undefined) throw new BuildError('invalid-argument', `Cannot parse --output ${text}: output= is not an attribute: did you mean dest=${attrs['output']}?`);
  if (type === 'image') {
    if (dest !== undefined) throw new BuildError('invalid-argument', `Cannot parse --output ${text}: type=image has no dest`);
    const push = attrs['push'] === '' || (attrs['push'] !== undefined && parseGoBool(attrs['push']) === true);
    if (push && !attrs['name']) throw new BuildError('invalid-argument', `Cannot parse --output ${text}: push=true needs a name${misspelt(attrs, 'name')}`);
    return { type, attrs };
  }
  if (type === 'local') {
    if (dest === undefined || dest === '' || dest === '-') throw new BuildError('invalid-argument', `Cannot parse --output ${text}: type=local needs dest=DIR${misspelt(attrs, 'dest')}`);
    return { type, attrs, dest };
  }
  if (dest === undefined || dest === '') throw new BuildError('invalid-argument', `Cannot parse --output ${text}: type=${type} needs dest=FILE or dest=-${misspelt(attrs, 'dest')}`);
  return { type, attrs, dest };
}

/**
 * `: did you mean name?` when a given attribute is a typo of the missing one. Other unknown
 * attributes pass to the daemon, which warns about them (it knows what it implements).
 */
function misspelt(attrs: Record<string, string>, wanted: string): string {
  const typo = Object.keys(attrs).find((k) => k !== wanted && suggest(k, [wanted]) === wanted);
  return typo === undefined ? '' : ` (${typo}=: did you mean ${wanted}?)`;
}

/** `--opt k=v` and `--local name=dir`: the first '=' splits; the key must not be empty. */
export function parseKeyValue(flag: string, text: string): [string, string] {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new BuildError('invalid-argument', `Cannot parse ${flag} ${text}: expected key=value`);
  return [text.slice(0, eq), text.slice(eq + 1)];
}

export function parseLocals(values: readonly string[]): Record<string, string> {
  const locals: Record<string, string> = {};
  for (const v of values) {
    const [name, dir] = parseKeyValue('--local', v);
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new BuildError('invalid-argument', `Cannot parse --local ${v}: bad name ${name}`);
    if (name in locals) throw new BuildError('invalid-argument', `Cannot parse --local ${v}: ${name} given twice`);
    if (dir === '') throw new BuildError('invalid-argument', `Cannot parse --local ${v}: empty directory`);
    locals[name] = dir;
  }
  return locals;
}

export function parseOpts(values: readonly string[]): Record<string, string> {
  const attrs: Record<string, string> = {};
  for (const v of values) {
    const [k, val] = parseKeyValue('--opt', v);
    attrs[k] = val;
  }
  return attrs;
}

export function parseOutputs(values: readonly string[]): OutputSpec[] {
  const outputs = values.map(parseOutput);
  if (outputs.filter((o) => o.dest !== undefined).length > 1) {
    throw new BuildError('invalid-argument', 'Cannot use the outputs: at most one oci/docker/tar/local output per build');
  }
  return outputs;
}
