import type { ImageConfig } from './image-archive';

/** The keys of the config's `config` object compared between builders (the shared kit's set). */
export const CONFIG_KEYS = ['Env', 'Cmd', 'Entrypoint', 'WorkingDir', 'User', 'ExposedPorts', 'Volumes', 'Labels', 'StopSignal', 'Healthcheck', 'Shell', 'OnBuild'] as const;

/** The image's platform, from the top level of the config. */
export const PLATFORM_KEYS = ['architecture', 'os', 'variant'] as const;

/**
 * What of an image config must agree: the keys above, an empty value ([] {} "" null) counted as
 * absent, since builders differ in how they write "none".
 */
export type ConfigView = Record<string, unknown>;

/** One history entry as `docker history` shows it, without times and comments. */
export interface HistoryItem {
  created_by: string;
  empty_layer: boolean;
}

function isEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === '') return true;
  if (Array.isArray(v)) return v.length === 0;
  return typeof v === 'object' && Object.keys(v).length === 0;
}

export function configView(config: ImageConfig): ConfigView {
  const view: ConfigView = {};
  const inner = config.config ?? {};
  for (const key of CONFIG_KEYS) if (!isEmpty(inner[key])) view[key] = inner[key];
  for (const key of PLATFORM_KEYS) if (!isEmpty(config[key])) view[key] = config[key];
  return view;
}

export function historyView(config: ImageConfig): HistoryItem[] {
  return (config.history ?? []).map((h) => ({ created_by: h.created_by ?? '', empty_layer: h.empty_layer ?? false }));
}
