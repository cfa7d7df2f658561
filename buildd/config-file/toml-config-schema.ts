import { z } from 'zod';
import { daemonConfigFileSchema } from '../config';
import { schemaAt } from './schema-at';
import { TOML_KEYS } from './toml-keys';

interface PlacedSchema {
  readonly path: readonly string[];
  readonly schema: z.ZodTypeAny;
}

/** The tables of `keys` as strict objects: a key of no entry is refused, with its table's path. */
function table(keys: readonly PlacedSchema[]): z.ZodObject<z.ZodRawShape> {
  const shape: Record<string, z.ZodTypeAny> = {};
  const below = new Map<string, PlacedSchema[]>();
  for (const { path, schema } of keys) {
    const [head, ...rest] = path as [string, ...string[]];
    if (rest.length === 0) shape[head] = schema.optional();
    else below.set(head, [...(below.get(head) ?? []), { path: rest, schema }]);
  }
  for (const [name, sub] of below) shape[name] = table(sub).optional();
  return z.object(shape).strict();
}

/**
 * buildd.toml as zod checks it: the tables and keys of TOML_KEYS, each value checked by the
 * JSON config's own schema of the key it sets, so that both formats take the same values and a
 * TOML error names the TOML key. Its output is not used: the loader maps the checked document
 * and parses that with daemonConfigFileSchema, which applies the transforms once.
 */
export const tomlConfigSchema: z.ZodObject<z.ZodRawShape> = table(
  TOML_KEYS.map(({ toml, json }) => {
    const schema = schemaAt(daemonConfigFileSchema, json);
    if (schema === undefined) throw new Error(`Cannot build the TOML config schema: the JSON config has no key ${json.join('.')}`);
    return { path: toml, schema };
  }),
);
