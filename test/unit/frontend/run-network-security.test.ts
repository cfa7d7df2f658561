import { BuildError } from '../../../solver/build-error';
import type { ExecOp } from '../../../solver/op';
import type { FrontendResult } from '../../../frontend/dockerfile-frontend';
import { parseForceNetworkMode } from '../../../frontend/run-network';
import { build } from './fake-resolver';

const BB = 'localhost:5000/busybox:latest';

function execs(r: FrontendResult): Array<{ digest: string; op: ExecOp }> {
  return r.definition.ops.flatMap((o) => (o.op.kind === 'exec' ? [{ digest: o.digest, op: o.op }] : []));
}

describe('RUN --network and --security in the exec op', () => {
  it('gives --network=host and --security=insecure their own op fields', async () => {
    const r = await build(`FROM ${BB}\nRUN --network=host wget -q -O- http://127.0.0.1:1/\nRUN --security=insecure mount -t tmpfs none /mnt\n`);
    const [host, insecure] = execs(r).map((e) => e.op);
    expect(host).toMatchObject({ network: 'host' });
    expect(host).not.toHaveProperty('security');
    expect(insecure).toMatchObject({ network: 'sandbox', security: 'insecure' });
  });

  it('leaves an ordinary RUN without a security field, so its digest is what it was before', async () => {
    const r = await build(`FROM ${BB}\nRUN --security=sandbox true\n`);
    expect(Object.keys(execs(r)[0].op).sort()).toEqual(['inputs', 'kind', 'meta', 'mounts', 'network']);
  });

  it('makes the network and security mode part of the op digest (and so of its cache key)', async () => {
    const digests = await Promise.all(
      ['RUN true', 'RUN --network=none true', 'RUN --network=host true', 'RUN --security=insecure true', 'RUN --network=host --security=insecure true'].map(
        async (line) => execs(await build(`FROM ${BB}\n${line}\n`))[0].digest,
      ),
    );
    expect(new Set(digests).size).toBe(digests.length);
  });
});

describe('--opt force-network-mode', () => {
  it('is the network of every RUN that does not name none or host, in every stage', async () => {
    const df = `FROM ${BB} AS a\nRUN one\nFROM ${BB}\nCOPY --from=a /x /x\nRUN two\nRUN --network=default three\nRUN --network=host four\nRUN --network=none five\n`;
    const none = await build(df, { forceNetworkMode: 'none' });
    expect(execs(none).map((e) => [e.op.meta.args[2], e.op.network])).toEqual([
      ['one', 'none'], ['two', 'none'], ['three', 'none'], ['four', 'host'], ['five', 'none'],
    ]);
    const host = await build(df, { forceNetworkMode: 'host' });
    expect(execs(host).map((e) => e.op.network)).toEqual(['host', 'host', 'host', 'host', 'none']);
    const sandbox = await build(df, { forceNetworkMode: 'sandbox' });
    expect(execs(sandbox).map((e) => e.op.network)).toEqual(['sandbox', 'sandbox', 'sandbox', 'host', 'none']);
    expect(execs(await build(df)).map((e) => e.op.network)).toEqual(['sandbox', 'sandbox', 'sandbox', 'host', 'none']);
  });

  it.each([
    [undefined, 'sandbox'], ['', 'sandbox'], ['sandbox', 'sandbox'], ['none', 'none'], ['host', 'host'],
  ] as const)('reads %p as %s (BuildKit parseNetMode)', (value, mode) => {
    expect(parseForceNetworkMode(value)).toBe(mode);
  });

  it('refuses any other value, as BuildKit does', () => {
    let err: unknown;
    try {
      parseForceNetworkMode('bridge');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BuildError);
    expect((err as BuildError).code).toBe('invalid-argument');
    expect((err as BuildError).message).toBe('Cannot use --opt force-network-mode=bridge: invalid netmode bridge (none, host or sandbox)');
  });
});
