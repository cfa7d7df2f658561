import { parseSize } from '../buildd/gc/units';

export { parseDuration } from '../buildd/gc/units';

/**
 * --keep-storage: a number of megabytes as BuildKit's buildctl takes it ("512", "1.5"), or a
 * size with a unit ("10GB", "512MiB", "100mb"), in bytes.
 */
export function parseStorage(text: string): number {
  return parseSize(text, 1e6);
}
