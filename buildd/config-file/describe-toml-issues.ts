import { z } from 'zod';
import { objectKeysAt, type KeyPath } from './schema-at';
import { suggestKey } from './suggest-key';
import { BUILDKIT_ONLY_KEYS, TOML_KEYS } from './toml-keys';

/** Unknown keys named in one message at most: past a few, the file is likely not buildd's. */
const MAX_UNKNOWN_KEYS = 5;

/**
 * What is wrong with a buildd.toml document, for a person: every unknown key (up to a few) with
 * its dotted path and the closest known key of its table, because a typo is the likeliest cause
 * of everything else; else the first problem, as `path: expected …, got …`. Pure.
 */
export function describeTomlIssues(error: z.ZodError, schema: z.ZodTypeAny): string {
  const unknown = error.issues.flatMap((issue) =>
    issue.code === z.ZodIssueCode.unrecognized_keys ? issue.keys.map((key) => unknownKey([...issue.path, key], schema)) : [],
  );
  if (unknown.length > 0) {
    const more = unknown.length > MAX_UNKNOWN_KEYS ? `; and ${unknown.length - MAX_UNKNOWN_KEYS} more` : '';
    return unknown.slice(0, MAX_UNKNOWN_KEYS).join('; ') + more;
  }
  const issue = error.issues[0];
  if (issue === undefined) return 'invalid';
  const where = issue.path.length > 0 ? `${formatKeyPath(issue.path)}: ` : '';
  return where + problem(issue);
}

function unknownKey(path: KeyPath, schema: z.ZodTypeAny): string {
  const name = formatKeyPath(path);
  if (BUILDKIT_ONLY_KEYS.has(pattern(path))) return `${name} is a key of buildkitd.toml that buildd does not have (docs/config.md lists its keys)`;
  const key = String(path[path.length - 1]);
  const near = suggestKey(key, objectKeysAt(schema, path.slice(0, -1)) ?? []);
  if (near !== undefined) return `unknown key ${name}, did you mean ${JSON.stringify(near)}?`;
  // someone who moves a JSON config by hand writes its key names
  const moved = TOML_KEYS.find((k) => k.json.length === 1 && k.json[0] === key);
  if (moved !== undefined) return `unknown key ${name}, did you mean ${JSON.stringify(formatKeyPath(moved.toml))} (the JSON config's ${JSON.stringify(key)})?`;
  return `unknown key ${name}`;
}

function problem(issue: z.ZodIssue): string {
  if (issue.code === z.ZodIssueCode.invalid_type) return `expected ${typeName(issue.expected)}, got ${typeName(issue.received)}`;
  if (issue.code === z.ZodIssueCode.invalid_union) {
    // every member refused the value's type itself (not something inside it): say which types fit
    const expected = new Set<string>();
    let received: string | undefined;
    for (const member of issue.unionErrors) {
      const first = member.issues.find((i) => samePath(i.path, issue.path));
      if (first?.code !== z.ZodIssueCode.invalid_type) {
        received = undefined;
        break;
      }
      expected.add(typeName(first.expected));
      received = first.received;
    }
    if (received !== undefined) return `expected ${[...expected].join(' or ')}, got ${typeName(received)}`;
  }
  return issue.message;
}

/** zod's type names in TOML's words: an object is a table, a Date a date-time. */
function typeName(type: string): string {
  if (type === 'object') return 'a table';
  if (type === 'array') return 'an array';
  if (type === 'date') return 'a date-time';
  if (type === 'integer') return 'an integer';
  return `a ${type}`;
}

function samePath(a: KeyPath, b: KeyPath): boolean {
  return a.length === b.length && a.every((k, i) => k === b[i]);
}

/** A path as TOML writes it: `worker.oci.gcpolicy[1].keepBytes`, `registry."docker.io".ca`. */
export function formatKeyPath(path: KeyPath): string {
  let text = '';
  for (const key of path) {
    if (typeof key === 'number') text += `[${key}]`;
    else text += (text === '' ? '' : '.') + (/^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key));
  }
  return text;
}

/** The path as BUILDKIT_ONLY_KEYS writes it: any registry host `*`, any index `[]`. */
function pattern(path: KeyPath): string {
  return path
    .map((key, i) => (typeof key === 'number' ? '[]' : i === 1 && path[0] === 'registry' ? '*' : key))
    .join('.')
    .replace(/\.\[\]/g, '[]');
}
