import { lstatSync, readdirSync } from 'node:fs';
import * as path from 'node:path';

/** Entries measured between two turns of the event loop. */
const TURN = 256;

/**
 * Bytes a directory tree takes on disk (allocated blocks, as `du` counts them), each inode
 * once however many names it has inside the tree, without following symlinks. A file a COPY
 * hard-linked from a kept context counts here and there: each tree is measured on its own, as
 * BuildKit measures each record. Synchronous lstat calls (microseconds on cached metadata), a
 * turn of the event loop every TURN entries; an entry that disappears meanwhile counts nothing.
 */
export async function diskUsage(root: string, signal?: AbortSignal): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  let sinceTurn = 0;
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack.pop() as string;
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      if (++sinceTurn >= TURN) {
        sinceTurn = 0;
        signal?.throwIfAborted();
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      const abs = path.join(dir, name);
      const st = (() => {
        try {
          return lstatSync(abs);
        } catch {
          return undefined;
        }
      })();
      if (st === undefined) continue;
      if (st.isDirectory()) stack.push(abs);
      if (st.nlink > 1 && !st.isDirectory()) {
        const key = `${st.dev}:${st.ino}`;
        if (seen.has(key)) continue;
        seen.add(key);
      }
      total += st.blocks * 512;
    }
  }
  return total;
}
