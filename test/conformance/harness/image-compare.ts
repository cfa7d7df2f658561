import type { FileEntry } from './file-table';
import { flattenImage, type FlatImage } from './flatten-image';

/**
 * Paths a runtime may leave behind as mount points or stubs: compared only where both images
 * have them (a builder may or may not keep the stub in the layer of a RUN).
 */
export const RUNTIME_STUBS = ['etc/hosts', 'etc/resolv.conf', 'etc/hostname', 'proc', 'sys', 'dev'] as const;

/** One way two images differ. A plain value; {@link formatDifference} prints it. */
export type Difference =
  | { kind: 'missing'; path: string; reference: FileEntry }
  | { kind: 'extra'; path: string; candidate: FileEntry }
  | { kind: 'differs'; path: string; reference: FileEntry; candidate: FileEntry }
  | { kind: 'config'; key: string; reference: unknown; candidate: unknown }
  | { kind: 'history'; index: number; reference: unknown; candidate: unknown };

export function isRuntimeStub(p: string): boolean {
  return RUNTIME_STUBS.some((s) => p === s || p.startsWith(`${s}/`));
}

/** JSON with object keys sorted, so that equal values print alike whatever their key order. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(v, (_k, value: unknown) =>
    value !== null && typeof value === 'object' && !Array.isArray(value)
      ? Object.fromEntries(Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : value,
  );
}

export function compareFiles(reference: FlatImage['files'], candidate: FlatImage['files']): Difference[] {
  const out: Difference[] = [];
  const paths = [...new Set([...Object.keys(reference), ...Object.keys(candidate)])].sort();
  for (const p of paths) {
    const r = reference[p];
    const c = candidate[p];
    if (r === undefined) {
      if (!isRuntimeStub(p)) out.push({ kind: 'extra', path: p, candidate: c });
    } else if (c === undefined) {
      if (!isRuntimeStub(p)) out.push({ kind: 'missing', path: p, reference: r });
    } else if (canonicalJson(r) !== canonicalJson(c)) {
      out.push({ kind: 'differs', path: p, reference: r, candidate: c });
    }
  }
  return out;
}

export function compareConfigs(reference: FlatImage['config'], candidate: FlatImage['config']): Difference[] {
  const keys = [...new Set([...Object.keys(reference), ...Object.keys(candidate)])].sort();
  return keys
    .filter((k) => canonicalJson(reference[k]) !== canonicalJson(candidate[k]))
    .map((key) => ({ kind: 'config', key, reference: reference[key], candidate: candidate[key] }));
}

export function compareHistories(reference: FlatImage['history'], candidate: FlatImage['history']): Difference[] {
  const out: Difference[] = [];
  for (let i = 0; i < Math.max(reference.length, candidate.length); i++) {
    if (canonicalJson(reference[i]) !== canonicalJson(candidate[i])) out.push({ kind: 'history', index: i, reference: reference[i], candidate: candidate[i] });
  }
  return out;
}

/** Every difference between two flattened images: files, then config, then history. */
export function compareFlatImages(reference: FlatImage, candidate: FlatImage): Difference[] {
  return [...compareFiles(reference.files, candidate.files), ...compareConfigs(reference.config, candidate.config), ...compareHistories(reference.history, candidate.history)];
}

/** Compares two image archives (docker-archive, OCI layout tar or directory); none means the same image. */
export async function compareImages(reference: string, candidate: string): Promise<Difference[]> {
  const [r, c] = await Promise.all([flattenImage(reference), flattenImage(candidate)]);
  return compareFlatImages(r, c);
}

/** One line for a person: what differs and both sides, with only the differing fields of a file. */
export function formatDifference(d: Difference): string {
  const show = (v: unknown): string => (v === undefined ? '(none)' : canonicalJson(v));
  switch (d.kind) {
    case 'missing':
      return `missing  /${d.path}  ${show(d.reference)}`;
    case 'extra':
      return `extra    /${d.path}  ${show(d.candidate)}`;
    case 'differs': {
      const fields = [...new Set([...Object.keys(d.reference), ...Object.keys(d.candidate)])].sort();
      const r = d.reference as unknown as Record<string, unknown>;
      const c = d.candidate as unknown as Record<string, unknown>;
      const changed = fields.filter((f) => canonicalJson(r[f]) !== canonicalJson(c[f]));
      return `differs  /${d.path}  ${changed.map((f) => `${f}: reference=${show(r[f])} candidate=${show(c[f])}`).join('; ')}`;
    }
    case 'config':
      return `config   ${d.key}  reference=${show(d.reference)} candidate=${show(d.candidate)}`;
    case 'history':
      return `history  [${d.index}]  reference=${show(d.reference)} candidate=${show(d.candidate)}`;
  }
}
