import { z } from 'zod';

/** A key path into a config: table and key names, and indices of arrays. */
export type KeyPath = ReadonlyArray<string | number>;

/**
 * The schema that checks the value at `path` under `schema`, or undefined when the schema has
 * no such place. Follows objects by key, records (whatever the key) and arrays (whatever the
 * index), through optional, default and refined or transformed wrappers: the shapes the
 * config schemas are made of. Pure.
 */
export function schemaAt(schema: z.ZodTypeAny, path: KeyPath): z.ZodTypeAny | undefined {
  let at: z.ZodTypeAny = schema;
  for (const segment of path) {
    const inner = unwrap(at);
    if (inner instanceof z.ZodObject && typeof segment === 'string') {
      const shape = inner.shape as Record<string, z.ZodTypeAny>;
      if (!Object.prototype.hasOwnProperty.call(shape, segment)) return undefined;
      at = shape[segment] as z.ZodTypeAny;
    } else if (inner instanceof z.ZodRecord && typeof segment === 'string') {
      at = inner.valueSchema as z.ZodTypeAny;
    } else if (inner instanceof z.ZodArray && typeof segment === 'number') {
      at = inner.element as z.ZodTypeAny;
    } else {
      return undefined;
    }
  }
  return at;
}

/** The keys of the object (table) at `path`; undefined where there is no object with fixed keys. */
export function objectKeysAt(schema: z.ZodTypeAny, path: KeyPath): string[] | undefined {
  const at = schemaAt(schema, path);
  const inner = at === undefined ? undefined : unwrap(at);
  return inner instanceof z.ZodObject ? Object.keys(inner.shape as Record<string, unknown>) : undefined;
}

/** The schema under optional, nullable, default and effects (refine, transform) wrappers. */
export function unwrap(schema: z.ZodTypeAny): z.ZodTypeAny {
  let at = schema;
  for (;;) {
    if (at instanceof z.ZodOptional || at instanceof z.ZodNullable) at = at.unwrap() as z.ZodTypeAny;
    else if (at instanceof z.ZodDefault) at = at.removeDefault() as z.ZodTypeAny;
    else if (at instanceof z.ZodEffects) at = at.innerType() as z.ZodTypeAny;
    else return at;
  }
}
