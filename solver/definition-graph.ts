import * as path from 'node:path';
import { BuildError } from './build-error';
import { describeZodError } from './describe-zod-error';
import { Definition, definitionSchema, ExecOp, Op, OpInput, OpMeta, opDigest, opInputs } from './op';

/** A validated op with its digest and progress metadata. */
export interface Vertex {
  digest: string;
  op: Op;
  meta: OpMeta;
}

/** A definition the daemon has checked: every digest re-derived, every reference resolved. */
export interface DefinitionGraph {
  vertices: Map<string, Vertex>;
  result: OpInput | null;
}

/**
 * Validates a definition as untrusted input (BuildKit's habit: never trust the frontend's
 * digests or indices): schema, digests recomputed, inputs present, positions in range,
 * no cycles. Throws invalid-argument naming the first problem.
 */
export function loadDefinition(raw: unknown): DefinitionGraph {
  const parsed = definitionSchema.safeParse(raw);
  if (!parsed.success) {
    throw new BuildError('invalid-argument', `Cannot load build definition: ${describeZodError(parsed.error)}`);
  }
  const def: Definition = parsed.data;
  const vertices = new Map<string, Vertex>();
  for (const { digest, op, meta } of def.ops) {
    const actual = opDigest(op);
    if (actual !== digest) throw new BuildError('invalid-argument', `Cannot load build definition: op ${digest} has digest ${actual}`);
    vertices.set(digest, { digest, op, meta });
  }
  for (const v of vertices.values()) {
    const inputs = opInputs(v.op);
    for (const input of inputs) {
      if (!vertices.has(input.digest)) throw new BuildError('invalid-argument', `Cannot load build definition: op ${v.digest} refers to missing op ${input.digest}`);
      if (input.index !== 0) throw new BuildError('invalid-argument', `Cannot load build definition: op ${v.digest} refers to output ${input.index} of ${input.digest}, which has only output 0`);
    }
    for (const pos of inputPositions(v.op)) {
      if (pos < -1 || pos >= inputs.length) throw new BuildError('invalid-argument', `Cannot load build definition: op ${v.digest} uses input position ${pos} of ${inputs.length}`);
    }
    if (v.op.kind === 'exec') checkExecMounts(v.digest, v.op);
  }
  if (def.result && !vertices.has(def.result.digest)) {
    throw new BuildError('invalid-argument', `Cannot load build definition: result ${def.result.digest} is not an op of it`);
  }
  checkAcyclic(vertices);
  return { vertices, result: def.result };
}

function inputPositions(op: Op): number[] {
  if (op.kind === 'exec') return op.mounts.map((m) => m.input);
  if (op.kind === 'file') return [op.base, ...op.actions.map((a) => (a.type === 'copy' ? a.src : -1))];
  return [];
}

/**
 * An exec op's mounts as the worker can run them: one root (a bind with output 0), every other
 * mount without output, the options of its type and no other, each destination once.
 */
function checkExecMounts(digest: string, op: ExecOp): void {
  const fail = (what: string): never => {
    throw new BuildError('invalid-argument', `Cannot load build definition: exec op ${digest} ${what}`);
  };
  const dests = new Set<string>();
  let roots = 0;
  for (const m of op.mounts) {
    const type = m.type ?? 'bind';
    const dest = path.posix.normalize(m.dest).replace(/(.)\/+$/, '$1');
    if (dest !== m.dest) fail(`has mount destination ${JSON.stringify(m.dest)}, which is not a clean absolute path`);
    if (dests.has(dest)) fail(`mounts ${dest} twice`);
    dests.add(dest);
    if (dest === '/') {
      roots++;
      if (type !== 'bind' || m.output !== 0 || m.selector !== undefined) fail('has a root mount that is not a plain bind with output 0');
    } else if (m.output !== -1) fail(`has an output for the mount at ${dest}; only the root mount has one`);
    if ((m.cache !== undefined) !== (type === 'cache')) fail(`has cache options ${type === 'cache' ? 'missing from' : 'on'} the ${type} mount at ${dest}`);
    if (m.tmpfs !== undefined && type !== 'tmpfs') fail(`has tmpfs options on the ${type} mount at ${dest}`);
    if (type === 'tmpfs' && (m.input !== -1 || m.selector !== undefined)) fail(`gives an input to the tmpfs mount at ${dest}`);
  }
  if (roots !== 1) fail(`has ${roots} root mounts; it needs exactly one`);
}

function checkAcyclic(vertices: Map<string, Vertex>): void {
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (digest: string): void => {
    // Iterative over inputs but recursive in depth: graphs are capped at 10000 ops by the schema.
    const s = state.get(digest);
    if (s === 'done') return;
    if (s === 'visiting') throw new BuildError('invalid-argument', `Cannot load build definition: a cycle passes through ${digest}`);
    state.set(digest, 'visiting');
    const v = vertices.get(digest) as Vertex;
    for (const input of opInputs(v.op)) visit(input.digest);
    state.set(digest, 'done');
  };
  for (const digest of vertices.keys()) visit(digest);
}
