import { promises as fsp } from 'node:fs';
import type { z } from 'zod';

/** No JSON document of an image (index, manifest, config) is anywhere near this large. */
const MAX_JSON_BYTES = 4 * 1024 * 1024;

/** Reads a JSON file of at most 4 MiB and checks it against `schema`; `what` names it in errors. */
export async function readJsonFile<S extends z.ZodTypeAny>(file: string, schema: S, what: string): Promise<z.infer<S>> {
  const handle = await fsp.open(file, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new Error(`Cannot read ${what}: ${err.code === 'ENOENT' ? 'it is missing' : err.message}`);
  });
  let text: string;
  try {
    const { size } = await handle.stat();
    if (size > MAX_JSON_BYTES) throw new Error(`Cannot read ${what}: it has ${size} bytes, more than ${MAX_JSON_BYTES}`);
    text = await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`Cannot read ${what}: it is not JSON (${(err as Error).message})`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new Error(`Cannot read ${what}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ')}`);
  return parsed.data;
}
