import { spawn } from 'node:child_process';
import { captureCappedOutput } from '../capped-output';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { CniPluginConf } from './cni-conflist';

/** One call of one CNI plugin binary: the environment and stdin the CNI spec defines. */
export interface CniInvocation {
  command: 'ADD' | 'DEL' | 'CHECK';
  containerId: string;
  /** path of the network namespace; '' on DEL when it is already gone (the spec allows it) */
  netns: string;
  ifname: string;
  /** the plugin's configuration with `cniVersion`, `name` and, when chained, `prevResult` */
  config: CniPluginConf & { cniVersion: string; name: string; prevResult?: unknown };
  /** the directories of CNI_PATH, searched in order for the plugin binary */
  binDirs: readonly string[];
  /**
   * the network namespace the plugin runs in (entered with nsenter), where its bridge lives;
   * undefined: buildd's own (root mode). Rootless buildd keeps its bridge in a namespace of its own.
   */
  pluginNetns?: string;
}

/** How a plugin process ended. */
export interface CniPluginOutput {
  /** null when the plugin could not be started or was killed */
  code: number | null;
  stdout: string;
  stderr: string;
  /** exit code or signal, for messages */
  exit: string;
}

/** A plugin's output is a small JSON document; more than this is not a plugin speaking CNI. */
const MAX_OUTPUT_BYTES = 1024 * 1024;

/** Finds the plugin binary in the binary directories, as CNI_PATH is searched. */
export async function findCniPlugin(type: string, binDirs: readonly string[]): Promise<string | undefined> {
  for (const dir of binDirs) {
    const file = path.join(dir, type);
    try {
      await fsp.access(file, fsConstants.X_OK);
      if ((await fsp.stat(file)).isFile()) return file;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/**
 * Runs one plugin to completion. Never rejects for the plugin's failure: the caller turns a
 * non-zero exit into its error. Rejects only when the binary is not found.
 */
export async function invokeCniPlugin(call: CniInvocation): Promise<CniPluginOutput> {
  const binary = await findCniPlugin(call.config.type, call.binDirs);
  if (binary === undefined) {
    return { code: null, stdout: '', stderr: `plugin not found in ${call.binDirs.join(':')}`, exit: 'not found' };
  }
  return new Promise((resolve) => {
    const [file, args] = call.pluginNetns === undefined ? [binary, []] : ['nsenter', [`--net=${call.pluginNetns}`, '--', binary]];
    const child = spawn(file, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      // only what the spec defines, and PATH for the tools plugins run (iptables, ip)
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        CNI_COMMAND: call.command,
        CNI_CONTAINERID: call.containerId,
        CNI_NETNS: call.netns,
        CNI_IFNAME: call.ifname,
        CNI_PATH: call.binDirs.join(':'),
      },
    });
    const out = captureCappedOutput(child, MAX_OUTPUT_BYTES);
    // a plugin that exits without reading its stdin must not crash the daemon with EPIPE
    child.stdin.on('error', () => undefined);
    child.stdin.end(JSON.stringify(call.config));
    child.once('error', (err) => resolve({ code: null, stdout: out.stdout(), stderr: out.stderr() + err.message, exit: 'could not start' }));
    child.once('close', (code, sig) => resolve({ code, stdout: out.stdout(), stderr: out.stderr(), exit: code === null ? `killed by ${sig ?? 'a signal'}` : `exit code ${code}` }));
  });
}
