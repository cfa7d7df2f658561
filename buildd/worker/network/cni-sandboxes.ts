import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import pino from 'pino';
import { z } from 'zod';
import { BuildError } from '../../../solver/build-error';
import { cniConflistSchema, type CniConflist } from './cni-conflist';
import { CniNetwork, CniPluginError, type CniAttachment } from './cni-network';
import { findCniPlugin } from './cni-plugin';
import { cniResultSchema, firstIpv4, type CniResult } from './cni-result';
import { createNetns, removeNetns, isNetnsMounted } from './netns';

/** The interface CNI sets up inside each namespace, as BuildKit names it. */
const IFNAME = 'eth0';
const ID_PATTERN = /^[A-Za-z0-9_+.-]{1,128}$/;

/** A RUN step's network namespace with its CNI attachment; `release` DELs it and removes it. */
export interface NetworkSandbox {
  /** the namespace file for the OCI spec's `{type: 'network', path}` */
  netnsPath: string;
  /** the step's IPv4 address, when CNI gave one */
  address?: string;
  /** CNI DEL, unmount, remove; never rejects (a failure is logged, and swept at the next start) */
  release(): Promise<void>;
}

/**
 * Provides network namespaces for RUN steps.
 *
 * Lifecycle: one per daemon. `sweep()` once at start (before the first `acquire`), after the
 * executor deleted the containers a killed daemon left; `acquire()` once per RUN with network;
 * each sandbox's `release()` once that RUN's container is deleted, whatever the outcome;
 * `close()` at shutdown, after the last release, tears down what is prepared in advance.
 */
export interface NetworkSandboxes {
  acquire(id: string, step: string): Promise<NetworkSandbox>;
  sweep(): Promise<string[]>;
  close(): Promise<void>;
}

export interface CniSandboxesOptions {
  /** buildd's network state: `sandboxes/<id>/` (namespace file and attachment record) */
  stateDir: string;
  conflist: CniConflist;
  binDirs: readonly string[];
  /** host-local's dataDir of buildd's own default network, emptied of leftover leases on sweep */
  ownIpamDataDir?: string;
  /**
   * sandboxes kept ready (namespace made, CNI ADD done) so a RUN does not wait for them; each
   * is used once and DELed after, a new one is made in the background. 0 (default): none.
   */
  poolSize?: number;
  /**
   * rootless: the namespace the plugins run in (the bridge's), connected out by slirp4netns;
   * closed by `close()` after the last sandbox is torn down. undefined: buildd's own namespace.
   */
  uplink?: Uplink;
  logger?: pino.Logger;
}

/** A network namespace with a way out, that CNI plugins run in; see rootless/slirp-uplink.ts. */
export interface Uplink {
  netnsPath: string;
  close(): Promise<void>;
}

/** A sandbox made ahead, waiting in the pool. */
interface Prepared {
  dir: string;
  att: CniAttachment;
  netnsPath: string;
  result: CniResult;
}

const attachmentSchema = z.object({
  containerId: z.string().regex(ID_PATTERN),
  ifname: z.string().min(1),
  conflist: cniConflistSchema,
});

/**
 * One fresh namespace per RUN, attached with CNI. Before the ADD, the attachment (config
 * list, container id, interface) is written next to the namespace file, so that whatever
 * happens next — a failed ADD, a failed step, a cancel, a kill -9 — a DEL with the very same
 * configuration can follow. With `poolSize`, steps take sandboxes made ahead (their CNI
 * container id is then the pool's `buildd-pool-…`, not the step's); never reused by a second step.
 */
export class CniSandboxes implements NetworkSandboxes {
  private readonly sandboxDir: string;
  private readonly network: CniNetwork;
  private readonly log: pino.Logger;
  private readonly pool: Prepared[] = [];
  private filling: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly opts: CniSandboxesOptions) {
    this.sandboxDir = path.join(path.resolve(opts.stateDir), 'sandboxes');
    this.network = new CniNetwork(opts.binDirs, opts.uplink?.netnsPath);
    this.log = opts.logger ?? pino({ enabled: false });
  }

  /** Checks that every plugin of the list is installed, so that a missing one fails at start. */
  async check(): Promise<void> {
    for (const plugin of this.opts.conflist.plugins) {
      if ((await findCniPlugin(plugin.type, this.opts.binDirs)) === undefined) {
        throw new BuildError('failed-precondition', `Cannot set up CNI networking: plugin ${plugin.type} not found in ${this.opts.binDirs.join(':')} (see --cni-binary-dir)`);
      }
      // ipam plugins are binaries too
      const ipam = (plugin as { ipam?: { type?: unknown } }).ipam?.type;
      if (typeof ipam === 'string' && (await findCniPlugin(ipam, this.opts.binDirs)) === undefined) {
        throw new BuildError('failed-precondition', `Cannot set up CNI networking: plugin ${ipam} not found in ${this.opts.binDirs.join(':')} (see --cni-binary-dir)`);
      }
    }
  }

  async acquire(id: string, step: string): Promise<NetworkSandbox> {
    if (!ID_PATTERN.test(id)) throw new BuildError('invalid-argument', `Cannot set up the network of step ${step}: invalid id ${JSON.stringify(id)}`);
    if (this.closed) throw new BuildError('unavailable', `Cannot set up the network of step ${step}: the daemon is shutting down`);
    const ready = this.pool.shift();
    this.fill();
    const p = ready ?? (await this.prepare(id, step));
    this.log.debug({ id, cniId: p.att.containerId, address: firstIpv4(p.result), pooled: ready !== undefined }, 'network sandbox ready');
    let released: Promise<void> | undefined;
    return {
      netnsPath: p.netnsPath,
      address: firstIpv4(p.result),
      release: () => (released ??= this.teardown(p.dir, p.att, p.result)),
    };
  }

  /**
   * Tops the pool up to `poolSize` in the background (one at a time, so a pool never competes
   * with steps for more than one ADD). A failure is logged and ends this round: the next
   * `acquire` tries again, and makes its own sandbox meanwhile.
   */
  fill(): void {
    if (this.filling || this.closed || this.pool.length >= (this.opts.poolSize ?? 0)) return;
    this.filling = (async () => {
      while (!this.closed && this.pool.length < (this.opts.poolSize ?? 0)) {
        const id = `buildd-pool-${randomBytes(8).toString('hex')}`;
        try {
          const p = await this.prepare(id, 'the pool');
          if (this.closed) await this.teardown(p.dir, p.att, p.result);
          else this.pool.push(p);
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, 'Cannot fill the network sandbox pool');
          return;
        }
      }
    })().finally(() => (this.filling = undefined));
  }

  /** Waits for the pool filling in progress, if any (for tests and shutdown). */
  async settled(): Promise<void> {
    await this.filling;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.filling;
    for (const p of this.pool.splice(0)) await this.teardown(p.dir, p.att, p.result);
    await this.opts.uplink?.close();
  }

  private async prepare(id: string, step: string): Promise<Prepared> {
    const dir = path.join(this.sandboxDir, id);
    await fsp.mkdir(this.sandboxDir, { recursive: true, mode: 0o700 });
    // not recursive: an existing directory is another step's sandbox
    await fsp.mkdir(dir, { mode: 0o700 });
    const att: CniAttachment = { containerId: id, ifname: IFNAME, conflist: this.opts.conflist };
    const netnsPath = path.join(dir, 'ns');
    let result: CniResult | undefined;
    try {
      await writeJson(path.join(dir, 'attachment.json'), att);
      await createNetns(netnsPath);
      result = await this.network.add(att, netnsPath);
      await writeJson(path.join(dir, 'result.json'), result);
    } catch (err) {
      // DEL after a failed ADD too: the plugins before the failing one did their part
      await this.teardown(dir, att, result);
      const detail = err instanceof CniPluginError ? err.message : (err as Error).message;
      throw new BuildError('internal', `Cannot set up the network of step ${step}: ${detail}`, { cause: err });
    }
    return { dir, att, netnsPath, result };
  }

  /**
   * DELs and removes every sandbox a killed daemon left (no container can be using one: the
   * executor's sweep deleted them), then the leftover leases of buildd's own network.
   */
  async sweep(): Promise<string[]> {
    let ids: string[] = [];
    try {
      ids = await fsp.readdir(this.sandboxDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    for (const id of ids) {
      const dir = path.join(this.sandboxDir, id);
      const att = await readJson(path.join(dir, 'attachment.json'), attachmentSchema);
      const result = await readJson(path.join(dir, 'result.json'), cniResultSchema);
      // the last chance: a DEL that fails now (e.g. a config the plugins refuse) would fail at
      // every start, so the record goes whatever happens (teardown logged the failure)
      await this.teardown(dir, att, result, true);
    }
    if (this.opts.ownIpamDataDir) await removeLeases(path.join(this.opts.ownIpamDataDir, this.opts.conflist.name));
    return ids;
  }

  /**
   * DEL (when an attachment was recorded), unmount, remove; logs what fails, never throws.
   * When DEL fails, the record stays for the next start to retry, unless `final`.
   */
  private async teardown(dir: string, att: CniAttachment | undefined, result: CniResult | undefined, final = false): Promise<void> {
    const netnsPath = path.join(dir, 'ns');
    let clean = true;
    if (att) {
      try {
        // a namespace that is not mounted (kill -9 during unshare) is passed as '' as the spec allows
        const netns = (await isNetnsMounted(netnsPath)) ? netnsPath : '';
        await this.network.del(att, netns, result);
      } catch (err) {
        clean = false;
        this.log.warn({ id: att.containerId, err: (err as Error).message }, 'Cannot release the network of a step: CNI DEL failed');
      }
    }
    try {
      await removeNetns(netnsPath);
      // kept when DEL failed: the next start retries it
      if (clean || final) await fsp.rm(dir, { recursive: true, force: true });
    } catch (err) {
      this.log.warn({ dir, err: (err as Error).message }, 'Cannot remove a network namespace');
    }
  }
}

async function writeJson(file: string, value: unknown): Promise<void> {
  await fsp.writeFile(file, JSON.stringify(value), { mode: 0o600 });
}

/** A record from an earlier daemon, or undefined when it is missing or unreadable. */
async function readJson<T>(file: string, schema: z.ZodType<T>): Promise<T | undefined> {
  try {
    const parsed = schema.safeParse(JSON.parse(await fsp.readFile(file, 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** host-local keeps one file per leased address, named by the address; its lock and cursor stay. */
async function removeLeases(networkDir: string): Promise<void> {
  let names: string[];
  try {
    names = await fsp.readdir(networkDir);
  } catch {
    return;
  }
  for (const name of names) {
    if (/^[0-9a-fA-F.:]+$/.test(name) && (name.includes('.') || name.includes(':'))) await fsp.rm(path.join(networkDir, name), { force: true });
  }
}
