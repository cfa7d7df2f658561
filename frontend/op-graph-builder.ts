import { Definition, FileAction, Op, OpInput, OpMeta, opDigest, type SecretMount, type SshMount } from '../solver/op';

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

/** RUN: the process runs with `base` mounted read-write at `/`, which becomes the output. */
export function execNode(base: FsState, spec: ExecSpec, meta: OpMeta, network: 'none' | 'sandbox' = 'sandbox', session?: { secrets: SecretMount[]; ssh: SshMount[] }): OpNode {
  const inputs = base ? [base] : [];
  return node({
    kind: 'exec',
    inputs: inputs.map(ref),
    meta: { args: spec.args, env: spec.env, cwd: spec.cwd, user: spec.user },
    mounts: [{ input: base ? 0 : -1, dest: '/', output: 0, readonly: false }],
    // absent when empty, so the digests of steps without them do not change
    ...(session && session.secrets.length > 0 ? { secrets: session.secrets } : {}),
    ...(session && session.ssh.length > 0 ? { ssh: session.ssh } : {}),
    network,
  }, meta, inputs);
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
