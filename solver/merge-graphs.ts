import type { DefinitionGraph, Vertex } from './definition-graph';

/**
 * One graph of several (a multi-platform build's, one per target), each already checked: the
 * union of their vertices, an op two of them share (same digest, so the same op) once. Its
 * `result` is null: the outputs are the graphs' own results, solved together with
 * Solver.solveAll.
 */
export function mergeGraphs(graphs: readonly DefinitionGraph[]): DefinitionGraph {
  const vertices = new Map<string, Vertex>();
  for (const g of graphs) for (const [digest, v] of g.vertices) if (!vertices.has(digest)) vertices.set(digest, v);
  return { vertices, result: null };
}
