import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { filesystemTar } from '../store/layer-diff';
import type { Snapshotter } from '../store/snapshotter';
import { encodeTarHeader, TAR_END } from '../store/tar-header';
import { rewriteTarTimes } from '../store/tar-times';
import type { BuildSession, ExporterResponse } from './builder';

/** One platform's filesystem in a multi-platform tar: under `dir/` (BuildKit's `linux_arm64`). */
export interface PlacedResult {
  dir: string;
  result: string | null;
}

/**
 * `--output type=tar` and `type=local`: the result's whole filesystem as one tar, streamed to
 * the client (which writes it to dest, or for `local` unpacks it into dest), as BuildKit's tar
 * and local exporters. Read through a read-only view of the result, released afterwards; a
 * result without a filesystem (FROM scratch, nothing added) is an empty tar. With an `epoch`
 * (SOURCE_DATE_EPOCH, seconds) every entry gets that time, as BuildKit's exporters give it.
 *
 * A multi-platform build (`results` a list) puts each platform's filesystem in a folder of its
 * own, as BuildKit does: `linux_amd64/`, `linux_arm64/` (mode 0755, owner 0:0, time 0 or the
 * epoch), in the order of the platforms asked for.
 */
export async function exportFilesystem(snapshotter: Pick<Snapshotter, 'mountView'>, results: string | null | readonly PlacedResult[], session: BuildSession, epoch?: number): Promise<ExporterResponse> {
  const tar = Array.isArray(results) ? placedTar(snapshotter, results as readonly PlacedResult[], session.signal) : wholeTar(snapshotter, results as string | null, session.signal);
  await pipeline(Readable.from(epoch === undefined ? tar : rewriteTarTimes(tar, epoch, 'set')), session.exportStream(), { signal: session.signal });
  return {};
}

async function* wholeTar(snapshotter: Pick<Snapshotter, 'mountView'>, result: string | null, signal: AbortSignal): AsyncGenerator<Buffer> {
  if (result === null) {
    yield TAR_END;
    return;
  }
  const view = await snapshotter.mountView(result);
  try {
    yield* filesystemTar(view.path, signal);
  } finally {
    await view.release();
  }
}

async function* placedTar(snapshotter: Pick<Snapshotter, 'mountView'>, results: readonly PlacedResult[], signal: AbortSignal): AsyncGenerator<Buffer> {
  for (const { dir, result } of results) {
    yield encodeTarHeader({ name: `${dir}/`, type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 0 });
    if (result === null) continue;
    const view = await snapshotter.mountView(result);
    try {
      yield* filesystemTar(view.path, signal, { prefix: `${dir}/`, end: false });
    } finally {
      await view.release();
    }
  }
  yield TAR_END;
}
