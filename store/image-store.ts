import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { readJsonFile, writeFileAtomic } from './atomic-file';
import { descriptorSchema, Descriptor } from './manifest';

const recordSchema = z.object({ name: z.string(), target: descriptorSchema, updatedAt: z.string() }).strict();
/** A named image kept by the daemon: its name and the manifest it points at. */
export type ImageRecord = z.infer<typeof recordSchema>;

/**
 * Names of images built with `--output type=image` (pushed or not), containerd's image store
 * in miniature: one atomic JSON record per name under `<root>/images`. A record lives until
 * it is overwritten by the next build of that name.
 */
export class ImageStore {
  private constructor(private readonly dir: string) {}

  static async open(root: string): Promise<ImageStore> {
    const dir = path.join(root, 'images');
    await fsp.mkdir(dir, { recursive: true });
    return new ImageStore(dir);
  }

  private file(name: string): string {
    return path.join(this.dir, Buffer.from(name).toString('base64url') + '.json');
  }

  async put(name: string, target: Descriptor): Promise<void> {
    await writeFileAtomic(this.file(name), JSON.stringify({ name, target, updatedAt: new Date().toISOString() }));
  }

  async get(name: string): Promise<ImageRecord | undefined> {
    const parsed = recordSchema.safeParse(await readJsonFile(this.file(name)));
    return parsed.success ? parsed.data : undefined;
  }
}
