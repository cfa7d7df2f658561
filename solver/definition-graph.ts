import { BuildError } from './build-error';
import { describeZodError } from './describe-zod-error';
import { Definition, definitionSchema, Op, OpInput, OpMeta, opDigest, opInputs } from './op';

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
