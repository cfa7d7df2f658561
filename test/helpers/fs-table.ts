import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/**
 * Every entry below `dir` as `rel path → "type mode uid:gid"`, sorted, for tests that compare
 * a copied or extracted tree with what BuildKit produced. With `content`, files show as
 * `file:<content>` and symlinks as `symlink-><target>`.
 */
export async function fsTable(dir: string, opts: { content?: boolean } = {}): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await fsp.readdir(path.join(dir, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = path.join(dir, r);
      const st = await fsp.lstat(abs);
      let type: string;
      if (st.isDirectory()) type = 'dir';
      else if (st.isSymbolicLink()) type = opts.content ? `symlink->${await fsp.readlink(abs)}` : 'symlink';
      else type = opts.content ? `file:${await fsp.readFile(abs, 'utf8')}` : 'file';
      out[r] = `${type} ${(st.isSymbolicLink() ? 0o777 : st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
      if (st.isDirectory()) await walk(r);
    }
  };
  await walk('');
  return out;
}
