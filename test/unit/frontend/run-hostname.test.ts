import { BuildError } from '../../../solver/build-error';
import type { ExecOp } from '../../../solver/op';
import type { FrontendResult } from '../../../frontend/dockerfile-frontend';
import { parseHostnameOpt } from '../../../frontend/run-hostname';
import { build } from './fake-resolver';

const BB = 'localhost:5000/busybox:latest';

function execs(r: FrontendResult): Array<{ digest: string; op: ExecOp }> {
  return r.definition.ops.flatMap((o) => (o.op.kind === 'exec' ? [{ digest: o.digest, op: o.op }] : []));
}

describe('--opt hostname', () => {
  it('reads hostname first, then build-arg:BUILDKIT_SANDBOX_HOSTNAME, as BuildKit does; empty is no hostname', () => {
    expect(parseHostnameOpt({})).toBeUndefined();
    expect(parseHostnameOpt({ hostname: 'box' })).toBe('box');
    expect(parseHostnameOpt({ 'build-arg:BUILDKIT_SANDBOX_HOSTNAME': 'arg' })).toBe('arg');
    expect(parseHostnameOpt({ hostname: 'opt', 'build-arg:BUILDKIT_SANDBOX_HOSTNAME': 'arg' })).toBe('opt');
    expect(parseHostnameOpt({ hostname: '' })).toBeUndefined();
    expect(parseHostnameOpt({ hostname: 'a-1.b-2.example' })).toBe('a-1.b-2.example');
  });

  it.each([['bad_name'], ['-lead'], ['trail-'], ['a..b'], ['x'.repeat(65)], ['two words'], ['nl\nx']])('refuses %j, naming the option', (value) => {
    expect(() => parseHostnameOpt({ hostname: value })).toThrow(BuildError);
    expect(() => parseHostnameOpt({ hostname: value })).toThrow(`Cannot use --opt hostname=${value}: expected a hostname`);
    expect(() => parseHostnameOpt({ 'build-arg:BUILDKIT_SANDBOX_HOSTNAME': value })).toThrow('Cannot use --opt build-arg:BUILDKIT_SANDBOX_HOSTNAME=');
  });

  it('puts the hostname in every RUN of every stage and in its digest; without it the op is what it was', async () => {
    const df = `FROM ${BB} AS a\nRUN one\nFROM ${BB}\nCOPY --from=a /x /x\nRUN two\n`;
    const plain = execs(await build(df));
    const named = execs(await build(df, { hostname: 'box' }));
    expect(plain.map((e) => e.op.meta)).not.toContainEqual(expect.objectContaining({ hostname: expect.anything() }));
    expect(Object.keys(plain[0].op.meta).sort()).toEqual(['args', 'cwd', 'env', 'user']);
    expect(named.map((e) => e.op.meta.hostname)).toEqual(['box', 'box']);
    expect(named.map((e) => e.digest)).not.toEqual(expect.arrayContaining(plain.map((e) => e.digest)));
  });
});
