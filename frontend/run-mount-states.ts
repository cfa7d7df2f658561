import * as path from 'node:path';
import { OpMeta } from '../solver/op';
import { ExtraMount, FsState, fileNode } from './op-graph-builder';
import { MountError, RunMount, sizeInBytes } from './run-mounts';

/** What turning a RUN's mounts into exec mounts needs from the stage being dispatched. */
export interface RunMountScope {
  /** the stage's WORKDIR, which a relative target is joined to */
  workdir: string;
  /** the state a bind or cache mount reads: its `from` (stage, image, named context) or the build context */
  source(mount: RunMount): FsState;
  /** meta of the internal op that makes a cache mount's root with its mode and owner */
  internalMeta(name: string): OpMeta;
  /** expands the stage's ARG and ENV values in a mount's target, source and id (BuildKit's expander) */
  expand(word: string): string;
}

/**
 * BuildKit's dispatchRunMounts for the bind, cache and tmpfs types: a bind reads `source` of
 * the context or of `from`, read-only unless `rw`; a cache is named by `id` (default: the
 * target) and seeded from `source` of `from`, or, without `from`, from an empty
 * directory with the given mode and owner (an internal mkdir op, as BuildKit's "settings
 * cache mount permissions"); a tmpfs has only a size. Target, source and id are expanded with the
 * stage's ARG and ENV values, as BuildKit's parseMount does. Secret and ssh mounts are not handled here.
 */
export function extraMounts(mounts: readonly RunMount[], scope: RunMountScope): ExtraMount[] {
  return mounts.map((m): ExtraMount => {
    const target = scope.expand(m.target as string);
    if (target === '') throw new MountError('mount target is required (target=/path)');
    const dest = path.posix.resolve('/', scope.workdir || '/', target);
    const selector = path.posix.join('/', m.source === undefined ? '/' : scope.expand(m.source));
    switch (m.type) {
      case 'tmpfs':
        return { type: 'tmpfs', dest, state: null, readonly: false, tmpfsSize: m.size === undefined ? 0 : sizeInBytes(m.size) };
      case 'bind':
        return { type: 'bind', dest, state: scope.source(m), selector, readonly: m.readonly ?? true };
      case 'cache': {
        const id = m.id === undefined ? path.posix.normalize(target) : scope.expand(m.id);
        if (id === '') throw new MountError('cache mount id is empty');
        const cache = { id, sharing: m.sharing ?? 'shared' };
        const readonly = m.readonly ?? false;
        if (m.from !== undefined) return { type: 'cache', dest, state: scope.source(m), selector, readonly, cache };
        if (m.mode === undefined && m.uid === undefined && m.gid === undefined) return { type: 'cache', dest, state: null, readonly, cache };
        const settings = fileNode(null, [], () => ({
          type: 'mkdir', path: '/cache', mode: m.mode ?? 0o755, makeParents: true,
          chown: { user: String(m.uid ?? 0), group: String(m.gid ?? 0) },
        }), scope.internalMeta('[internal] settings cache mount permissions'));
        return { type: 'cache', dest, state: settings, selector: '/cache', readonly, cache };
      }
      default:
        throw new Error(`mount type ${m.type} is not an exec mount`);
    }
  });
}
