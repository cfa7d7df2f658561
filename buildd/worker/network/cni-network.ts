import type { CniConflist } from './cni-conflist';
import { invokeCniPlugin, type CniInvocation } from './cni-plugin';
import { describeCniFailure, parseCniResult, type CniResult } from './cni-result';

/** A plugin of the chain failed; `plugin` is its type, `message` what it said. */
export class CniPluginError extends Error {
  constructor(
    readonly plugin: string,
    readonly detail: string,
  ) {
    super(`${plugin}: ${detail}`);
    this.name = 'CniPluginError';
  }
}

/** Everything a DEL needs, recorded before the ADD so that a restart can DEL too. */
export interface CniAttachment {
  containerId: string;
  ifname: string;
  conflist: CniConflist;
}

/**
 * Runs a network configuration list's plugins as the CNI spec 1.0 says: ADD in order, each
 * with the previous plugin's result as `prevResult`; DEL in reverse order, each with the
 * ADD's final result (when known) as `prevResult`. Stateless: the caller keeps the attachment.
 */
export class CniNetwork {
  /** `pluginNetns`: where the plugins run (see CniInvocation); undefined: buildd's own namespace */
  constructor(
    private readonly binDirs: readonly string[],
    private readonly pluginNetns?: string,
  ) {}

  async add(att: CniAttachment, netns: string): Promise<CniResult> {
    let prev: CniResult | undefined;
    for (const plugin of att.conflist.plugins) {
      const out = await invokeCniPlugin(this.call('ADD', att, netns, plugin, prev));
      if (out.code !== 0) throw new CniPluginError(plugin.type, describeCniFailure(out.stdout, out.stderr, out.exit));
      const parsed = parseCniResult(out.stdout);
      if ('problem' in parsed) throw new CniPluginError(plugin.type, parsed.problem);
      prev = parsed.result;
    }
    // the schema requires one plugin at least, so prev is set
    return prev as CniResult;
  }

  /**
   * DELs every plugin, also after one failed: a DEL must release what it can (spec: DEL
   * should not fail for what is already gone). Throws the first failure afterwards.
   */
  async del(att: CniAttachment, netns: string, result?: CniResult): Promise<void> {
    let first: CniPluginError | undefined;
    for (const plugin of [...att.conflist.plugins].reverse()) {
      const out = await invokeCniPlugin(this.call('DEL', att, netns, plugin, result));
      if (out.code !== 0) first ??= new CniPluginError(plugin.type, describeCniFailure(out.stdout, out.stderr, out.exit));
    }
    if (first) throw first;
  }

  private call(
    command: CniInvocation['command'],
    att: CniAttachment,
    netns: string,
    plugin: CniConflist['plugins'][number],
    prev: CniResult | undefined,
  ): CniInvocation {
    const config: CniInvocation['config'] = { ...plugin, cniVersion: att.conflist.cniVersion, name: att.conflist.name };
    if (prev !== undefined) config.prevResult = prev;
    return { command, containerId: att.containerId, netns, ifname: att.ifname, config, binDirs: this.binDirs, pluginNetns: this.pluginNetns };
  }
}
