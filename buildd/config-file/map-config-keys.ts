import { TOML_KEYS } from './toml-keys';

type Table = Record<string, unknown>;

/** A checked buildd.toml document as the JSON config's object (its keys renamed, values as they are). */
export function tomlToJson(doc: Table): Table {
  return moveKeys(doc, TOML_KEYS.map((k) => [k.toml, k.json]));
}

/**
 * A JSON config's object as buildd.toml's tables. Every key must have a place in TOML_KEYS:
 * a key the table lacks would vanish from the converted file without a word, so it is refused.
 */
export function jsonToToml(config: Table): Table {
  const unplaced = keysOutside(config, TOML_KEYS.map((k) => k.json));
  if (unplaced !== undefined) throw new Error(`Cannot convert the config: its key ${unplaced} has no TOML key`);
  return moveKeys(config, TOML_KEYS.map((k) => [k.json, k.toml]));
}

function moveKeys(from: Table, pairs: ReadonlyArray<readonly [readonly string[], readonly string[]]>): Table {
  const to: Table = {};
  for (const [source, target] of pairs) {
    const value = get(from, source);
    if (value !== undefined) set(to, target, value);
  }
  return to;
}

function get(from: Table, path: readonly string[]): unknown {
  let at: unknown = from;
  for (const key of path) {
    if (!isTable(at) || !Object.prototype.hasOwnProperty.call(at, key)) return undefined;
    at = at[key];
  }
  return at;
}

function set(to: Table, path: readonly string[], value: unknown): void {
  let at = to;
  for (const key of path.slice(0, -1)) {
    const next = at[key];
    if (isTable(next)) {
      at = next;
    } else {
      const made: Table = {};
      at[key] = made;
      at = made;
    }
  }
  at[path[path.length - 1] as string] = value;
}

/** The first key of `config` (dotted) that no path of `placed` is, or is under; undefined if none. */
function keysOutside(config: Table, placed: ReadonlyArray<readonly string[]>, prefix: readonly string[] = []): string | undefined {
  for (const key of Object.keys(config)) {
    const path = [...prefix, key];
    if (placed.some((p) => p.length <= path.length && p.every((k, i) => k === path[i]))) continue;
    const value = config[key];
    const deeper = placed.some((p) => p.length > path.length && path.every((k, i) => k === p[i]));
    if (!deeper || !isTable(value)) return path.join('.');
    const inner = keysOutside(value, placed, path);
    if (inner !== undefined) return inner;
  }
  return undefined;
}

function isTable(v: unknown): v is Table {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
