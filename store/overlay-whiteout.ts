import type { Stats } from 'node:fs';

/** Whether `st` is an overlayfs whiteout in an upper dir: a 0:0 character device marking a path deleted in that layer. */
export function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}
