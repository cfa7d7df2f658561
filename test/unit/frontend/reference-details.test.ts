import { BuildError } from '../../../solver/build-error';
import { build } from './fake-resolver';

const BB = 'localhost:5000/busybox:latest';

async function failure(dockerfile: string): Promise<string> {
  const err = await build(dockerfile).then(() => undefined, (e: unknown) => e);
  if (!(err instanceof BuildError)) throw new Error(`expected a BuildError, got ${String(err)}`);
  return err.message.split('\n')[0];
}

function runHistory(r: Awaited<ReturnType<typeof build>>): string[] {
  return (r.image.history ?? []).map((h) => h.created_by ?? '').filter((c) => c.startsWith('RUN '));
}

function runEnv(r: Awaited<ReturnType<typeof build>>): string[] {
  const exec = r.definition.ops.map((o) => o.op).filter((op) => op.kind === 'exec').pop();
  return exec?.kind === 'exec' ? exec.meta.env : [];
}

/** Details where the reference builder (BuildKit v0.8) was asked and answered. */
describe('as the reference builder does it', () => {
  test('an ARG redeclared after an ENV: with a default it wins in RUN, bare it keeps the ENV value', async () => {
    const r = await build(`FROM ${BB}\nARG A=1\nENV A=2\nARG A=3\nRUN echo $A\nENV B=$A\nARG C=x\nENV C=y\nARG C\nRUN echo $C\n`);
    expect(runEnv(r)).toEqual(expect.arrayContaining(['A=3', 'C=y']));
    expect(r.image.config?.Env).toEqual(expect.arrayContaining(['A=2', 'B=3', 'C=y']));
  });

  test('a stage FROM another stage keeps the ARG values but lists only its own ARGs in RUN history', async () => {
    const r = await build(`FROM ${BB} AS base\nARG A=1\nARG B=2\nFROM base\nARG C=3\nRUN echo $A$B$C\n`);
    expect(runHistory(r)).toEqual(['RUN |1 C=3 /bin/sh -c echo $A$B$C # buildkit']);
    expect(runEnv(r)).toEqual(expect.arrayContaining(['A=1', 'B=2', 'C=3']));
  });

  test('a proxy ARG declared in the stage is listed in RUN history; an undeclared one is not', async () => {
    const declared = await build(`FROM ${BB}\nARG HTTP_PROXY=http://p\nRUN echo x\n`);
    expect(runHistory(declared)).toEqual(['RUN |1 HTTP_PROXY=http://p /bin/sh -c echo x # buildkit']);
    const passed = await build(`FROM ${BB}\nRUN echo x\n`, { buildArgs: { HTTP_PROXY: 'http://q' } });
    expect(runHistory(passed)).toEqual(['RUN /bin/sh -c echo x # buildkit']);
    expect(runEnv(passed)).toEqual(expect.arrayContaining(['HTTP_PROXY=http://q']));
  });

  test('ONBUILD is recorded in the config and writes no history entry', async () => {
    const r = await build(`FROM ${BB}\nONBUILD RUN echo built\n`);
    expect(r.image.config?.OnBuild).toEqual(['RUN echo built']);
    expect((r.image.history ?? []).some((h) => (h.created_by ?? '').startsWith('ONBUILD'))).toBe(false);
  });

  test('HEALTHCHECK: given intervals under 1ms and retries under 1 are refused in its words', async () => {
    expect(await failure(`FROM ${BB}\nHEALTHCHECK --retries=0 CMD true\n`)).toBe('Dockerfile:2:1: --retries must be at least 1 (not 0)');
    expect(await failure(`FROM ${BB}\nHEALTHCHECK --interval=0s CMD true\n`)).toBe('Dockerfile:2:1: Interval "interval" cannot be less than 1ms');
    expect(await failure(`FROM ${BB}\nHEALTHCHECK --start-period=0s CMD true\n`)).toBe('Dockerfile:2:1: Interval "start-period" cannot be less than 1ms');
    const ok = await build(`FROM ${BB}\nHEALTHCHECK --interval=5s --retries=2 CMD true\n`);
    expect(ok.image.config?.Healthcheck).toMatchObject({ Interval: 5_000_000_000, Retries: 2 });
  });

  test('STOPSIGNAL keeps any word as written', async () => {
    expect((await build(`FROM ${BB}\nSTOPSIGNAL sigterm\n`)).image.config?.StopSignal).toBe('sigterm');
    expect((await build(`FROM ${BB}\nSTOPSIGNAL FOO\n`)).image.config?.StopSignal).toBe('FOO');
  });
});
