import type { DefinitionGraph, Vertex } from '../../../solver/definition-graph';
import type { Op } from '../../../solver/op';
import { resultChain } from '../../../solver/result-chain';

const d = (n: number): string => `sha256:${String(n).padStart(64, '0')}`;

function graph(ops: Record<number, Op>, result: number): DefinitionGraph {
  const vertices = new Map<string, Vertex>(Object.entries(ops).map(([n, op]) => [d(Number(n)), { digest: d(Number(n)), op, meta: { name: `op ${n}` } } as Vertex]));
  return { vertices, result: { digest: d(result), index: 0 } };
}

describe('resultChain', () => {
  it('follows the root mount of a RUN and the base of a COPY down to the image, and leaves other stages and mounts out', () => {
    const ops: Record<number, Op> = {
      1: { kind: 'source', identifier: 'docker-image://busybox', attrs: {} },
      2: { kind: 'source', identifier: 'local://context', attrs: {} },
      // another stage: RUN on the image
      3: { kind: 'exec', inputs: [{ digest: d(1), index: 0 }], mounts: [{ input: 0, dest: '/', output: 0, readonly: false }], meta: { args: ['true'], env: [], cwd: '/' } } as unknown as Op,
      // final stage: COPY . /src on the image (base 1), then COPY --from the other stage (base 0)
      4: { kind: 'file', inputs: [{ digest: d(1), index: 0 }, { digest: d(2), index: 0 }], base: 0, actions: [{ type: 'copy', src: 1, srcPaths: ['.'], dest: '/src' }] },
      5: { kind: 'file', inputs: [{ digest: d(4), index: 0 }, { digest: d(3), index: 0 }], base: 0, actions: [{ type: 'copy', src: 1, srcPaths: ['/out'], dest: '/out' }] },
      // RUN with a bind mount of the context beside its root, the root second
      6: { kind: 'exec', inputs: [{ digest: d(2), index: 0 }, { digest: d(5), index: 0 }], mounts: [{ input: 0, dest: '/ctx', output: -1, readonly: true }, { input: 1, dest: '/', output: 0, readonly: false }], meta: { args: ['true'], env: [], cwd: '/' } } as unknown as Op,
    };
    expect([...resultChain(graph(ops, 6))]).toEqual([d(6), d(5), d(4), d(1)]);
    expect([...resultChain(graph(ops, 3))]).toEqual([d(3), d(1)]);
  });

  it('stops at scratch and is empty without a result', () => {
    const ops: Record<number, Op> = { 1: { kind: 'file', inputs: [], base: -1, actions: [{ type: 'mkdir', path: '/x', mode: 0o755, makeParents: true }] } };
    expect([...resultChain(graph(ops, 1))]).toEqual([d(1)]);
    expect(resultChain({ vertices: new Map(), result: null }).size).toBe(0);
  });
});
