import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** Mount points at or under `root`, deepest first (from /proc/self/mountinfo). */
export async function mountsUnder(root: string): Promise<string[]> {
  const abs = path.resolve(root);
  const text = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === abs || p.startsWith(abs + '/'))
    .sort((a, b) => b.length - a.length);
}

/** Unmounts everything under `root` and deletes it: for afterAll, whatever the tests left. */
export async function cleanupRoot(root: string): Promise<void> {
  for (const m of await mountsUnder(root)) await execFileP('umount', ['-l', m]);
  await fsp.rm(root, { recursive: true, force: true });
}
