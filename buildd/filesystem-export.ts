import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { filesystemTar } from '../store/layer-diff';
import type { Snapshotter } from '../store/snapshotter';
import { TAR_END } from '../store/tar-header';
import { rewriteTarTimes } from '../store/tar-times';
import type { BuildSession, ExporterResponse } from './builder';

/**
 * `--output type=tar` and `type=local`: the result's whole filesystem as one tar, streamed to
 * the client (which writes it to dest, or for `local` unpacks it into dest), as BuildKit's tar
 * and local exporters. Read through a read-only view of the result, released afterwards; a
 * result without a filesystem (FROM scratch, nothing added) is an empty tar. With an `epoch`
 * (SOURCE_DATE_EPOCH, seconds) every entry gets that time, as BuildKit's exporters give it.
 */
export async function exportFilesystem(snapshotter: Pick<Snapshotter, 'mountView'>, result: string | null, session: BuildSession, epoch?: number): Promise<ExporterResponse> {
  const out = session.exportStream();
  if (result === null) {
    await pipeline(Readable.from([TAR_END]), out, { signal: session.signal });
    return {};
  }
  const view = await snapshotter.mountView(result);
  try {
    const tar = filesystemTar(view.path, session.signal);
    await pipeline(Readable.from(epoch === undefined ? tar : rewriteTarTimes(tar, epoch, 'set')), out, { signal: session.signal });
  } finally {
    await view.release();
  }
  return {};
}
