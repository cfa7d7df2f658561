import { build } from './fake-resolver';

function runEnv(result: Awaited<ReturnType<typeof build>>): string[] {
  const exec = result.definition.ops.map((o) => o.op).find((op) => op.kind === 'exec');
  if (!exec || exec.kind !== 'exec') throw new Error('no RUN in the graph');
  return exec.meta.env;
}

describe('predefined platform ARGs', () => {
  test('a stage that declares them sees the target and build platform', async () => {
    const r = await build('FROM localhost:5000/busybox:latest\nARG TARGETARCH\nARG BUILDPLATFORM\nRUN echo $TARGETARCH\n');
    expect(runEnv(r)).toEqual(expect.arrayContaining(['TARGETARCH=amd64', 'BUILDPLATFORM=linux/amd64']));
  });

  test('a global ARG of the same name without a default blanks it, as the reference BuildKit does', async () => {
    const r = await build('ARG TARGETARCH\nFROM localhost:5000/busybox:latest\nARG TARGETARCH\nARG TARGETOS\nRUN echo $TARGETARCH\n');
    expect(runEnv(r)).toEqual(expect.arrayContaining(['TARGETARCH=', 'TARGETOS=linux']));
  });

  test('a build arg still overrides a global ARG without a default', async () => {
    const r = await build('ARG TARGETARCH\nFROM localhost:5000/busybox:latest\nARG TARGETARCH\nRUN echo $TARGETARCH\n', { buildArgs: { TARGETARCH: 'arm64' } });
    expect(runEnv(r)).toEqual(expect.arrayContaining(['TARGETARCH=arm64']));
  });
});
