import { promises as fsp } from 'node:fs';
import { z } from 'zod';
import { BuildError } from '../../../solver/build-error';
import { describeZodError } from '../../../solver/describe-zod-error';

/**
 * One plugin of a network configuration list. Only `type` is read here: it names the plugin
 * binary, found in the CNI binary directories, so it must be a bare file name. Every other key
 * is the plugin's own and passed to it unchanged.
 */
export const cniPluginConfSchema = z
  .object({
    type: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'a plugin type is a file name in the CNI binary directory'),
  })
  .passthrough();

/** A CNI network configuration list (`.conflist`), as the CNI spec 1.0 defines it. */
export const cniConflistSchema = z
  .object({
    cniVersion: z.string().regex(/^\d+\.\d+\.\d+$/),
    name: z.string().min(1),
    disableCheck: z.boolean().optional(),
    plugins: z.array(cniPluginConfSchema).min(1),
  })
  .passthrough();

export type CniPluginConf = z.infer<typeof cniPluginConfSchema>;
export type CniConflist = z.infer<typeof cniConflistSchema>;

/** BuildKit's defaults (appdefaults.BridgeName/BridgeSubnet), under buildd's own name. */
export const DEFAULT_BRIDGE_NAME = 'buildd0';
export const DEFAULT_BRIDGE_SUBNET = '10.10.0.0/16';
export const DEFAULT_CNI_BINARY_DIR = '/usr/lib/cni';
export const DEFAULT_NETWORK_NAME = 'buildd';

export interface DefaultConflistOptions {
  /** host-local's lease directory: under buildd's root, so that every lease in it is buildd's */
  ipamDataDir: string;
  bridge?: string;
  subnet?: string;
}

/**
 * The network buildd sets up when the operator gives no `--cni-config-path`: BuildKit's bridge
 * network (loopback, then a bridge that is the containers' default gateway and masquerades
 * their traffic, addresses from host-local).
 */
export function defaultConflist(opts: DefaultConflistOptions): CniConflist {
  return {
    cniVersion: '1.0.0',
    name: DEFAULT_NETWORK_NAME,
    plugins: [
      // a namespace that runc is told to join gets no loopback from runc: this brings it up
      { type: 'loopback' },
      {
        type: 'bridge',
        bridge: opts.bridge ?? DEFAULT_BRIDGE_NAME,
        isGateway: true,
        isDefaultGateway: true,
        ipMasq: true,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: opts.subnet ?? DEFAULT_BRIDGE_SUBNET }]],
          dataDir: opts.ipamDataDir,
        },
      },
    ],
  };
}

/** Config files are small; the cap keeps a wrong path from eating memory. */
const MAX_CONFLIST_BYTES = 256 * 1024;

/**
 * Reads an operator's network configuration: a `.conflist`, or a single plugin's `.conf`
 * (`type` at the top level), which becomes a list of one as CNI's libcni does.
 */
export async function loadConflist(file: string): Promise<CniConflist> {
  let json: unknown;
  try {
    const st = await fsp.stat(file);
    if (st.size > MAX_CONFLIST_BYTES) throw new Error(`larger than ${MAX_CONFLIST_BYTES} bytes`);
    json = JSON.parse(await fsp.readFile(file, 'utf8'));
  } catch (err) {
    throw new BuildError('invalid-argument', `Cannot load CNI config ${file}: ${(err as Error).message}`);
  }
  return parseConflist(json, file);
}

/** Validates a parsed config (list or single plugin); `source` names it in errors. */
export function parseConflist(json: unknown, source: string): CniConflist {
  if (typeof json === 'object' && json !== null && !Array.isArray(json) && 'type' in json && !('plugins' in json)) {
    const single = json as Record<string, unknown>;
    const { cniVersion, name, ...plugin } = single;
    json = { cniVersion, name, plugins: [plugin] };
  }
  const parsed = cniConflistSchema.safeParse(json);
  if (!parsed.success) throw new BuildError('invalid-argument', `Cannot load CNI config ${source}: ${describeZodError(parsed.error)}`);
  return parsed.data;
}
