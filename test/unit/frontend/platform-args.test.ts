import { build, fakeResolver } from './fake-resolver';

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

describe('target and build platforms', () => {
  const execs = (r: Awaited<ReturnType<typeof build>>) => r.definition.ops.map((o) => o.op).flatMap((op) => (op.kind === 'exec' ? [op] : []));
  const cross = [
    'FROM --platform=$BUILDPLATFORM localhost:5000/busybox:latest AS build',
    'ARG TARGETPLATFORM TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDARCH',
    'RUN echo $TARGETPLATFORM $BUILDARCH > /out',
    'FROM localhost:5000/busybox:latest',
    'COPY --from=build /out /out',
    'RUN cat /out',
    '',
  ].join('\n');

  test('BUILDPLATFORM is the worker\'s, and a target given as linux/arm is linux/arm/v7 (TARGETVARIANT=v7)', async () => {
    const r = await build(cross, { platform: 'linux/arm', buildPlatform: 'linux/arm64' });
    expect(runEnv(r)).toEqual(expect.arrayContaining(['TARGETPLATFORM=linux/arm/v7', 'TARGETARCH=arm', 'TARGETVARIANT=v7', 'BUILDPLATFORM=linux/arm64', 'BUILDARCH=arm64']));
  });

  test('a RUN carries its stage\'s platform in its op (so in its key); a linux/amd64 one carries none', async () => {
    const r = await build(cross, { platform: 'linux/arm64/v8' });
    const [first, second] = execs(r);
    expect(first?.platform).toBeUndefined(); // the BUILDPLATFORM stage: linux/amd64
    expect(second?.platform).toBe('linux/arm64');
    const native = await build(cross);
    expect(execs(native).map((op) => op.platform)).toEqual([undefined, undefined]);
  });

  test('the image is the target\'s even when its last stage ran on the build platform', async () => {
    const r = await build('FROM --platform=$BUILDPLATFORM localhost:5000/busybox:latest\nRUN true\n', { platform: 'linux/arm/v6' });
    expect({ os: r.image.os, architecture: r.image.architecture, variant: r.image.variant }).toEqual({ os: 'linux', architecture: 'arm', variant: 'v6' });
    const arm64 = await build('FROM --platform=$BUILDPLATFORM localhost:5000/busybox:latest\nRUN true\n', { platform: 'linux/arm64' });
    expect(arm64.image).toMatchObject({ os: 'linux', architecture: 'arm64' });
    expect(arm64.image.variant).toBeUndefined();
  });

  test('FROM --platform is normalized as containerd does, and an empty one is refused', async () => {
    const resolver = fakeResolver();
    await build('FROM --platform=linux/aarch64 localhost:5000/busybox:latest\nRUN true\n', { resolveImage: resolver });
    expect(resolver.platforms).toEqual(['linux/arm64']);
    await expect(build('ARG P\nFROM --platform=$P localhost:5000/busybox:latest\n')).rejects.toThrow(/empty platform value from expression \$P/);
    await expect(build('FROM --platform=linux/a/b/c localhost:5000/busybox:latest\n')).rejects.toThrow(/invalid --platform "linux\/a\/b\/c"/);
  });

  test('a base image of another platform than its stage\'s gives BuildKit\'s InvalidBaseImagePlatform warning', async () => {
    const r = await build('FROM localhost:5000/busybox:latest\nRUN true\n', { platform: 'linux/arm64' });
    expect(r.warnings.map((w) => w.message)).toContain('InvalidBaseImagePlatform: Base image localhost:5000/busybox:latest was pulled with platform "linux/amd64", expected "linux/arm64" for current build');
    const native = await build('FROM localhost:5000/busybox:latest\nRUN true\n');
    expect(native.warnings.map((w) => w.message).join('\n')).not.toMatch(/InvalidBaseImagePlatform/);
  });
});
