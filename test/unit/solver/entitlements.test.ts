import { grantEntitlements } from '../../../buildd/grant-entitlements';
import { BuildError } from '../../../solver/build-error';
import { checkEntitlements, opEntitlements, parseEntitlement, type Entitlement } from '../../../solver/entitlements';
import type { ExecOp } from '../../../solver/op';
import { build } from '../frontend/fake-resolver';

const BB = 'localhost:5000/busybox:latest';

function thrown(fn: () => unknown): BuildError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BuildError);
    return err as BuildError;
  }
  throw new Error('expected a BuildError');
}

async function vertices(df: string) {
  return (await build(df)).definition.ops;
}

describe('entitlements of a build graph', () => {
  it('names what each exec op needs', async () => {
    const ops = (await vertices(`FROM ${BB}\nRUN a\nRUN --network=none b\nRUN --network=host c\nRUN --security=insecure d\nRUN --network=host --security=insecure e\n`))
      .map((v) => v.op)
      .filter((op): op is ExecOp => op.kind === 'exec');
    expect(ops.map(opEntitlements)).toEqual([[], [], ['network.host'], ['security.insecure'], ['network.host', 'security.insecure']]);
  });

  it('refuses a RUN --network=host the client did not grant, naming network.host and the Dockerfile line', async () => {
    const ops = await vertices(`FROM ${BB}\nRUN true\nRUN --network=host wget x\n`);
    const err = thrown(() => checkEntitlements(ops, new Set<Entitlement>(['security.insecure'])));
    expect(err.code).toBe('permission-denied');
    expect(err.message).toBe('Cannot run [3/3] RUN --network=host wget x: network.host is not allowed; the client must grant it with buildctl build --allow network.host');
    expect(err.range).toEqual({ file: 'Dockerfile', startLine: 3, endLine: 3 });
    expect(err.vertex).toBe(ops.find((o) => o.op.kind === 'exec' && o.op.network === 'host')?.digest);
  });

  it('refuses a RUN --security=insecure the client did not grant, naming security.insecure', async () => {
    const ops = await vertices(`FROM ${BB}\nRUN --security=insecure mount -t tmpfs t /mnt\n`);
    const err = thrown(() => checkEntitlements(ops, new Set<Entitlement>(['network.host'])));
    expect(err.code).toBe('permission-denied');
    expect(err.message).toMatch(/^Cannot run \[2\/2\] RUN --security=insecure mount -t tmpfs t \/mnt: security\.insecure is not allowed; .*--allow security\.insecure$/);
  });

  it('passes a graph whose entitlements are granted, and one that needs none with nothing granted', async () => {
    const ops = await vertices(`FROM ${BB}\nRUN --network=host --security=insecure true\n`);
    expect(() => checkEntitlements(ops, new Set<Entitlement>(['network.host', 'security.insecure']))).not.toThrow();
    const plain = await vertices(`FROM ${BB}\nRUN --network=none true\nRUN true\n`);
    expect(() => checkEntitlements(plain, new Set())).not.toThrow();
  });
});

describe('granting entitlements (daemon side)', () => {
  it('grants what the client asks for when the daemon allows it', () => {
    expect([...grantEntitlements(['network.host'], ['network.host', 'security.insecure'])]).toEqual(['network.host']);
    expect([...grantEntitlements([], [])]).toEqual([]);
  });

  it('fails when the client asks for one the daemon does not allow, as BuildKit does', () => {
    const err = thrown(() => grantEntitlements(['network.host', 'security.insecure'], ['network.host']));
    expect(err.code).toBe('permission-denied');
    expect(err.message).toBe(
      'Cannot grant entitlement security.insecure: it is not allowed by build daemon configuration; start buildd with --allow-insecure-entitlement security.insecure',
    );
  });

  it('knows BuildKit entitlement names only', () => {
    expect(parseEntitlement('--allow', 'network.host')).toBe('network.host');
    const err = thrown(() => parseEntitlement('--allow', 'network.hots'));
    expect(err.code).toBe('invalid-argument');
    expect(err.message).toBe('Cannot parse --allow network.hots: unknown entitlement network.hots (network.host or security.insecure)');
  });
});
