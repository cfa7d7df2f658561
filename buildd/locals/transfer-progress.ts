import type { ProgressEvent } from '../builder';

/** What moved for one local before the build started. */
export interface TransferReport {
  local: string;
  /** ms since the epoch: the start message arrived / locals_done was handled */
  started: number;
  completed: number;
  files: number;
  bytes: number;
}

/**
 * The locals move before the solver runs, so the vertex that loads a local (`[internal] load
 * build context`, `[context NAME] load from client`, as the Dockerfile frontend names them)
 * would show DONE 0.0s while the wait already happened. This rewrites that vertex's start to
 * when the transfer began and logs, before it completes, BuildKit's status line
 * `transferring context: 12.35MB 2.1s` with what really crossed the wire (0B for an
 * unchanged incremental local).
 */
export function withTransferProgress(progress: (ev: ProgressEvent) => void, reports: readonly TransferReport[]): (ev: ProgressEvent) => void {
  const byName = new Map(reports.map((r) => [vertexName(r.local), r]));
  const told = new Set<string>();
  return (ev) => {
    if (ev.type !== 'vertex') return progress(ev);
    const r = byName.get(ev.name);
    if (!r) return progress(ev);
    const started = Math.min(ev.started ?? r.started, r.started);
    if ((ev.completed !== undefined || ev.cached) && !told.has(ev.digest)) {
      told.add(ev.digest);
      progress({ ...ev, started, completed: undefined, cached: false, error: undefined });
      const line = `transferring ${r.local}: ${humanSize(r.bytes)} ${((r.completed - r.started) / 1000).toFixed(1)}s done\n`;
      progress({ type: 'log', vertex: ev.digest, stream: 2, data: Buffer.from(line) });
    }
    progress({ ...ev, started });
  };
}

function vertexName(local: string): string {
  return local === 'context' ? '[internal] load build context' : `[context ${local}] load from client`;
}

/** As go-units HumanSize, which BuildKit's progress uses: decimal units, 4 significant digits. */
export function humanSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number(v.toPrecision(4))}${units[i]}`;
}
