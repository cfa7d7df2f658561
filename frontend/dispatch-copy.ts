import * as path from 'node:path';
import { CopyAction, FileAction } from '../solver/op';
import { AddSource, classifyAddSource } from './add-sources';
import { parseHeredocWord } from './heredoc-words';
import { commit, displayName, expanderFor, nextPrefix, opMeta, parseChown } from './dispatch-helpers';
import { FsState, fileNode } from './op-graph-builder';
import { CopyInstruction } from './parse-instruction';
import type { DispatchContext, StageState } from './stage-dispatch';

/**
 * COPY and ADD: one file op on the stage's root whose actions copy from the context, a
 * stage, an image, downloaded URLs or git checkouts, and write heredoc files (mkfile).
 */

const SYMBOLIC_CHMOD = /^[ugoa]*[-+=][rwxXst]*(,[ugoa]*[-+=][rwxXst]*)*$/;
const CHECKSUM = /^(sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$/;

export function dispatchCopy(st: StageState, ins: CopyInstruction, ctx: DispatchContext): void {
  const x = expanderFor(st, ctx, ins.at);
  const config = st.image.config ?? (st.image.config = {});
  const writtenDest = x.word(ins.dest);
  const dest = resolveDest(config.WorkingDir || '/', writtenDest);
  const heredocWords = new Map(ins.heredocs.map((h) => [h.name, h]));
  const words = ins.sources.map((s) => {
    const doc = parseHeredocWord(s);
    return doc && heredocWords.has(doc.name) ? { heredoc: heredocWords.get(doc.name), text: s } : { text: x.word(s) };
  });
  if (words.length > 1 && !dest.endsWith('/')) x.fail(`When using ${ins.kind} with more than one source file, the destination must be a directory and end with a /`);

  const chownText = ins.chown === undefined ? undefined : x.word(ins.chown);
  const chown = chownText === undefined ? undefined : parseChown(chownText) ?? x.fail(`invalid --chown value: "${chownText}" (user[:group], names or numbers)`);
  const chmodText = ins.chmod === undefined ? undefined : x.word(ins.chmod);
  let chmod: number | string | undefined;
  if (chmodText !== undefined) {
    if (/^[0-7]{1,4}$/.test(chmodText)) chmod = parseInt(chmodText, 8);
    else if (SYMBOLIC_CHMOD.test(chmodText)) chmod = chmodText;
    else x.fail(`invalid --chmod value: "${chmodText}" (an octal mode such as 0755, or symbolic such as u+x)`);
  }
  const checksum = ins.checksum === undefined ? undefined : x.word(ins.checksum);
  if (checksum !== undefined && !CHECKSUM.test(checksum)) x.fail(`invalid --checksum value: "${checksum}" (sha256:<64 hex digits>)`);
  const exclude = ins.exclude.map((e) => x.word(e));
  const common: Partial<CopyAction> = {
    ...(chown ? { chown } : {}), ...(chmod !== undefined ? { chmod } : {}), ...(ins.link ? { link: true } : {}),
    ...(ins.parents ? { parents: true } : {}), ...(exclude.length > 0 ? { exclude } : {}),
  };

  const states: FsState[] = [];
  const plans: Array<(positions: number[]) => FileAction> = [];
  const localPaths: string[] = [];
  for (const w of words) {
    if (w.heredoc) {
      const doc = w.heredoc;
      if (typeof chmod === 'string') x.fail('a symbolic --chmod cannot apply to a heredoc file; use an octal mode');
      const data = doc.expand ? x.word(doc.content, { rawQuotes: true }) : doc.content;
      const file = dest.endsWith('/') ? dest + doc.name : dest;
      plans.push(() => ({ type: 'mkfile', path: file, data, mode: chmod === undefined ? 0o644 : (chmod as number), ...(chown ? { chown } : {}) }));
      continue;
    }
    const source: AddSource = ins.kind === 'ADD' && ins.from === undefined ? classifyAddSource(w.text) : { kind: 'local', path: w.text };
    if (checksum !== undefined && source.kind !== 'http') x.fail(`--checksum can only be used with an http(s) source, not "${w.text}"`);
    if (source.kind === 'local') {
      localPaths.push(source.path);
      continue;
    }
    const name = `${ins.kind} ${w.text}`;
    const node = source.kind === 'http'
      ? ctx.source(source.url, { filename: source.filename, ...(checksum ? { checksum } : {}) }, name)
      : ctx.source(`git://${source.remote}`, {
        remote: source.remote, ...(source.ref ? { ref: source.ref } : {}), ...(source.subdir ? { subdir: source.subdir } : {}),
        ...(ins.keepGitDir ? { keepGitDir: 'true' } : {}),
      }, name);
    const at = states.push(node) - 1;
    const srcPaths = source.kind === 'http' ? [source.filename] : ['/'];
    plans.push((positions) => ({ type: 'copy', src: positions[at], srcPaths, dest, ...common }));
  }
  if (localPaths.length > 0) {
    const at = states.push(ins.from === undefined ? ctx.context() : ctx.copySource(ins)) - 1;
    // ADD unpacks local archives; whether a file is one, the worker sees from its content.
    const extract = ins.kind === 'ADD' ? { extract: true } : {};
    plans.unshift((positions) => ({ type: 'copy', src: positions[at], srcPaths: localPaths, dest, ...common, ...extract }));
  }

  const name = nextPrefix(st) + displayName(ins.text, st, ctx, {});
  st.fs = fileNode(st.fs, states, (positions) => plans.map((p) => p(positions)), opMeta(ctx, ins.at, name));
  commit(st, `${ins.kind} ${words.map((w) => w.text).join(' ')} ${writtenDest} # buildkit`, true);
}

function resolveDest(workdir: string, written: string): string {
  const asDir = written === '' || written === '.' || written.endsWith('/') || written.endsWith('/.');
  const resolved = path.posix.resolve(workdir, written);
  return asDir && !resolved.endsWith('/') ? resolved + '/' : resolved;
}
