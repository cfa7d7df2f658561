import type { DefinitionGraph } from './definition-graph';

/**
 * The vertices whose results are the layers of the build result's filesystem, top first: the
 * result's op, then the op its root filesystem comes from (an exec's `/` mount, a file op's
 * base), and so on down to a source. A step of another stage, or a mount's input, is not here:
 * its layer is not the image's.
 */
export function resultChain(graph: DefinitionGraph): Set<string> {
  const chain = new Set<string>();
  let at = graph.result?.digest;
  while (at !== undefined && !chain.has(at)) {
    chain.add(at);
    const op = graph.vertices.get(at)?.op;
    let input = -1;
    if (op?.kind === 'exec') input = op.mounts.find((m) => m.dest === '/' && m.output === 0)?.input ?? -1;
    else if (op?.kind === 'file') input = op.base;
    at = op === undefined || op.kind === 'source' || input < 0 ? undefined : op.inputs[input]?.digest;
  }
  return chain;
}
