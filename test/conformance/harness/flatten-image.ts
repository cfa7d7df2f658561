import { flattenLayers, type FileEntry } from './file-table';
import { openImageArchive } from './image-archive';
import { configView, historyView, type ConfigView, type HistoryItem } from './image-view';

/** An image as the comparison sees it: its files, the config keys that matter, its history. A plain value. */
export interface FlatImage {
  config: ConfigView;
  history: HistoryItem[];
  /** by path, sorted */
  files: Record<string, FileEntry>;
}

/**
 * Flattens an image archive (docker-archive, OCI layout tar or directory; see
 * openImageArchive). Layers stream through: memory grows with the number of files, not their size.
 */
export async function flattenImage(source: string): Promise<FlatImage> {
  const image = await openImageArchive(source);
  try {
    const table = await flattenLayers(image.layers);
    const files = Object.fromEntries([...table].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    return { config: configView(image.config), history: historyView(image.config), files };
  } finally {
    await image.close();
  }
}
