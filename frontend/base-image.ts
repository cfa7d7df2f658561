import { ContainerConfig, History, ImageConfig } from '../store/image-config';

/**
 * The image a stage starts from: the base image's config trimmed to what BuildKit's image
 * type keeps, or the empty image for `FROM scratch`; with PATH always set.
 */

/** The PATH BuildKit gives Linux images whose config sets none. */
export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const CONFIG_KEYS = [
  'User', 'ExposedPorts', 'Env', 'Entrypoint', 'Cmd', 'Volumes', 'WorkingDir', 'Labels',
  'StopSignal', 'ArgsEscaped', 'Healthcheck', 'OnBuild', 'Shell',
] as const;

/** A deep copy, so that stages built on one base never share mutable parts. */
export function cloneImage(image: ImageConfig): ImageConfig {
  return structuredClone(image);
}

/** The image for `FROM scratch`: BuildKit starts it with the default PATH and WorkingDir "/". */
export function emptyImage(): ImageConfig {
  return { architecture: 'amd64', os: 'linux', config: { Env: [DEFAULT_PATH], WorkingDir: '/' }, rootfs: { type: 'layers', diff_ids: [] }, history: [] };
}

/**
 * The starting image for a resolved base: its config (known fields only, as BuildKit's
 * image struct drops the rest), its layers, and its history made to agree with its layers
 * (one entry without empty_layer per layer), which the exporter relies on.
 */
export function imageFromBase(base: ImageConfig): ImageConfig {
  const source: ContainerConfig = base.config ?? {};
  const config: ContainerConfig = {};
  for (const key of CONFIG_KEYS) {
    const value = source[key];
    if (value !== undefined && value !== null) (config as Record<string, unknown>)[key] = structuredClone(value);
  }
  const diffIds = [...base.rootfs.diff_ids];
  const image: ImageConfig = {
    architecture: 'amd64',
    os: 'linux',
    config,
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: alignHistory(base.history ?? [], diffIds.length),
  };
  if (base.author !== undefined) image.author = base.author;
  return image;
}

/** Makes sure PATH is in Env, appending BuildKit's default when it is missing. */
export function ensurePath(config: ContainerConfig): void {
  const env = config.Env ?? [];
  if (!env.some((e) => e.startsWith('PATH='))) config.Env = [...env, DEFAULT_PATH];
}

function alignHistory(history: readonly History[], layers: number): History[] {
  const out = history.map((h) => ({ ...h }));
  let withLayer = out.filter((h) => !h.empty_layer).length;
  // A base whose history is shorter than its layers (squashed or hand-made images) gets
  // placeholder entries in front, as BuildKit's exporter does.
  while (withLayer < layers) {
    out.unshift({ comment: 'history entry for a base layer that had none' });
    withLayer++;
  }
  // One that claims more layers than it has: the newest surplus entries become empty.
  for (let i = out.length - 1; i >= 0 && withLayer > layers; i--) {
    if (!out[i].empty_layer) {
      out[i].empty_layer = true;
      withLayer--;
    }
  }
  return out;
}
