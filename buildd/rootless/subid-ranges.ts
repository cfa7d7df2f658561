import { promises as fsp } from 'node:fs';

/** One line of /etc/subuid or /etc/subgid that belongs to the user. */
export interface SubidRange {
  start: number;
  count: number;
}

/**
 * The subordinate id ranges that `file` (/etc/subuid or /etc/subgid, `owner:start:count` per
 * line) gives the user, who may be named by login name or by numeric id, as newuidmap accepts
 * both. Lines that are not three fields of that shape are skipped, as shadow's own parser does.
 * A missing file gives no ranges.
 */
export async function readSubidRanges(file: string, user: { name: string; id: number }): Promise<SubidRange[]> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: SubidRange[] = [];
  for (const line of text.split('\n')) {
    const m = /^([^:\s]+):(\d+):(\d+)$/.exec(line.trim());
    if (!m || (m[1] !== user.name && m[1] !== String(user.id))) continue;
    out.push({ start: Number(m[2]), count: Number(m[3]) });
  }
  return out;
}
