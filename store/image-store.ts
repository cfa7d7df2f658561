import * as path from 'node:path';
import { z } from 'zod';
import { JsonRecordStore } from './json-record-store';
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
  private constructor(private readonly records: JsonRecordStore<ImageRecord>) {}

  static async open(root: string): Promise<ImageStore> {
    return new ImageStore(await JsonRecordStore.open(path.join(root, 'images'), recordSchema, (name) => Buffer.from(name).toString('base64url')));
  }

  async put(name: string, target: Descriptor): Promise<void> {
    await this.records.put(name, { name, target, updatedAt: new Date().toISOString() });
  }

  async get(name: string): Promise<ImageRecord | undefined> {
    const record = await this.records.get(name);
    return record?.name === name ? record : undefined;
  }
}
