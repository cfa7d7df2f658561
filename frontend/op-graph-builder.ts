import { CacheMountOpt, Definition, ExecMount, FileAction, Op, OpInput, OpMeta, opDigest, type SecretMount, type SshMount } from '../solver/op';

/**
 * Builds the op graph bottom-up, as LLB states do: every node knows its op, its digest and the
 * nodes it reads, so that emitting the definition is a walk from the result. Only what the
 * result reaches is emitted, each digest once, inputs before the ops that read them; when two
 * nodes share a digest, the first one met on the walk gives the meta (as BuildKit marshals).
 */

/** One op and the nodes its inputs refer to, in input order. */
export interface OpNode {
  readonly digest: string;
  readonly op: Op;
  readonly meta: OpMeta;
  readonly inputs: readonly OpNode[];
}

/** A filesystem state: the output of a node, or null for scratch. */
export type FsState = OpNode | null;

/** An exec op's process, as the dispatcher fills it in. */
export interface ExecSpec {
  args: string[];
  env: string[];
  cwd: string;
  user: string;
  /** the step's hostname (`--opt hostname`); absent: the executor's default, buildkitsandbox */
  hostname?: string;
  /** mounts besides the root, in the order the RUN gives them */
  mounts?: ExtraMount[];
}

/** A RUN mount other than the root, with the state it reads (null: scratch). */
export interface ExtraMount {
  type: 'bind' | 'cache' | 'tmpfs';
  dest: string;
  state: FsState;
  /** path inside `state`; `/` when absent */
  selector?: string;
  readonly: boolean;
  cache?: CacheMountOpt;
  /** tmpfs size in bytes, 0 for the kernel's default */
  tmpfsSize?: number;
}

function node(op: Op, meta: OpMeta, inputs: OpNode[]): OpNode {
  return { digest: opDigest(op), op, meta, inputs };
}

function ref(n: OpNode): OpInput {
  return { digest: n.digest, index: 0 };
}

/** A source: `docker-image://`, `local://`, `https://` or `git://`. */
export function sourceNode(identifier: string, attrs: Record<string, string>, meta: OpMeta): OpNode {
  return node({ kind: 'source', identifier, attrs }, meta, []);
}

/** The network and security mode of an exec op (ExecOp.network, ExecOp.security). */
export interface ExecModes {
  network?: 'none' | 'sandbox' | 'host';
  security?: 'sandbox' | 'insecure';
  /** the stage's platform, `os/arch[/variant]`; linux/amd64 when absent */
  platform?: string;
}

/** RUN: the process runs with `base` mounted read-write at `/`, which becomes the output. */
export function execNode(base: FsState, spec: ExecSpec, meta: OpMeta, modes: ExecModes = {}, session?: { secrets: SecretMount[]; ssh: SshMount[] }): OpNode {
  const inputs = base ? [base] : [];
  const mounts: ExecMount[] = [{ input: base ? 0 : -1, dest: '/', output: 0, readonly: false }];
  // as LLB's ExecOp: each mount's state becomes an input (equal states share one), so the
  // state's digest (and the daemon's content checksum of a bind) reaches the step's cache key
  for (const m of spec.mounts ?? []) mounts.push(execMount(m, inputs));
  return node({
    kind: 'exec',
    inputs: inputs.map(ref),
    // hostname only when set, so the digests of ordinary steps do not change
    meta: { args: spec.args, env: spec.env, cwd: spec.cwd, user: spec.user, ...(spec.hostname !== undefined ? { hostname: spec.hostname } : {}) },
    mounts,
    // absent when empty, so the digests of steps without them do not change
    ...(session && session.secrets.length > 0 ? { secrets: session.secrets } : {}),
    ...(session && session.ssh.length > 0 ? { ssh: session.ssh } : {}),
    network: modes.network ?? 'sandbox',
    // only when insecure: an ordinary step keeps the digest it had before security existed
    ...(modes.security === 'insecure' ? { security: 'insecure' as const } : {}),
    // only when not linux/amd64, as a source's attrs.platform
    ...(modes.platform !== undefined && modes.platform !== 'linux/amd64' ? { platform: modes.platform } : {}),
  }, meta, inputs);
}

function execMount(m: ExtraMount, inputs: OpNode[]): ExecMount {
  let input = -1;
  if (m.state !== null && m.type !== 'tmpfs') {
    const found = inputs.findIndex((n) => n.digest === (m.state as OpNode).digest);
    input = found >= 0 ? found : inputs.push(m.state) - 1;
  }
  const mount: ExecMount = { input, dest: m.dest, output: -1, readonly: m.readonly };
  if (m.type !== 'bind') mount.type = m.type;
  if (m.selector !== undefined && m.selector !== '/') mount.selector = m.selector;
  if (m.cache) mount.cache = m.cache;
  if (m.type === 'tmpfs') mount.tmpfs = { size: m.tmpfsSize ?? 0 };
  return mount;
}

/**
 * A file op on top of `base`. `action` receives the input position of each extra state it
 * names (a copy's source), -1 for scratch; equal states share one input.
 */
export function fileNode(base: FsState, extra: FsState[], action: (positions: number[]) => FileAction | FileAction[], meta: OpMeta): OpNode {
  const inputs: OpNode[] = [];
  const position = (s: FsState): number => {
    if (s === null) return -1;
    const found = inputs.findIndex((n) => n.digest === s.digest);
    if (found >= 0) return found;
    inputs.push(s);
    return inputs.length - 1;
  };
  const basePos = position(base);
  const positions = extra.map(position);
  const made = action(positions);
  return node({ kind: 'file', inputs: inputs.map(ref), base: basePos, actions: Array.isArray(made) ? made : [made] }, meta, inputs);
}

/** The definition of everything `result` reaches. */
export function toDefinition(result: FsState): Definition {
  const ops: Definition['ops'] = [];
  const seen = new Set<string>();
  const visit = (n: OpNode): void => {
    if (seen.has(n.digest)) return;
    seen.add(n.digest);
    for (const input of n.inputs) visit(input);
    ops.push({ digest: n.digest, op: n.op, meta: n.meta });
  };
  if (result) visit(result);
  return { ops, result: result ? ref(result) : null };
}
