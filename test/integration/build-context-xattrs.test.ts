import * as path from 'node:path';
import { getAttribute, setAttribute } from '@napi-rs/xattr';
import { flattenImage } from '../conformance/harness/flatten-image';
import { BuildEnv, startBuildEnv, writeContext } from '../helpers/build-env';

/** v2 file capability, effective, cap_setuid + cap_net_raw: binary, a byte >= 0x80. */
const CAP = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
/** The same with cap_net_raw only: what `setcap cap_net_raw+ep` writes. */
const CAP_NET_RAW = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

type FileRow = { type: string; sha256?: string; xattrs?: Record<string, string> };

/** The image's files as the conformance harness flattens them (xattrs from the SCHILY.xattr records). */
async function flatten(archive: string): Promise<Record<string, FileRow>> {
  return (await flattenImage(archive)).files;
}

/**
 * A PAX value as the conformance harness prints it (xattrText: UTF-8, else Python's surrogateescape):
 * ASCII stays, a byte >= 0x80 that is no UTF-8 sequence becomes U+DC00+byte. Enough for the
 * capabilities here, whose high bytes stand alone.
 */
function asImgdiff(value: Buffer): string {
  return String.fromCharCode(...[...value].map((b) => (b < 0x80 ? b : 0xdc00 + b)));
}

/** Whether the build ran the step named `step` (DONE) or took it from the cache (CACHED). */
function stepOutcome(progress: string, step: string): 'DONE' | 'CACHED' {
  const m = new RegExp(`^(#\\d+) ${step.replace(/[[\]/.*]/g, '\\$&')}$`, 'm').exec(progress);
  if (!m) throw new Error(`step ${step} not in the progress:\n${progress}`);
  const cached = progress.includes(`\n${m[1]} CACHED`);
  const done = progress.includes(`\n${m[1]} DONE`);
  if (cached === done) throw new Error(`step ${step} is neither or both DONE and CACHED:\n${progress}`);
  return cached ? 'CACHED' : 'DONE';
}

describe('extended attributes of build-context files reach COPY, as BuildKit (fsutil) sends them', () => {
  let env: BuildEnv;
  let ctx: string;
  let builds = 0;

  const build = async (): Promise<{ progress: string; files: Record<string, FileRow> }> => {
    const out = path.join(env.tmp, `image-${++builds}.tar`);
    const res = await env.build(ctx, ['--output', `type=oci,dest=${out}`]);
    expect({ code: res.code, stderr: res.code === 0 ? '' : res.stderr }).toEqual({ code: 0, stderr: '' });
    return { progress: res.stderr, files: await flatten(out) };
  };

  beforeAll(async () => {
    env = await startBuildEnv();
    ctx = await writeContext(path.join(env.tmp, 'ctx'), {
      Dockerfile: `FROM ${env.busybox}\nCOPY f /f\n`,
      f: { mode: 0o755, content: '#!/bin/sh\necho ping\n' },
    });
    await setAttribute(path.join(ctx, 'f'), 'security.capability', CAP);
    await setAttribute(path.join(ctx, 'f'), 'user.note', 'hello');
    // Never sent: the daemon refuses trusted.* (it would forge overlayfs markers); the client
    // leaves it out instead of failing the build.
    await setAttribute(path.join(ctx, 'f'), 'trusted.note', 'secret');
  }, 120_000);

  afterAll(async () => {
    await env?.stop();
  });

  test("COPY of a context file keeps its security.capability in the layer, byte for byte; user.* stays out of the layer", async () => {
    const { files } = await build();
    expect(files['f']).toMatchObject({ type: 'file' });
    // exactly the capability: no user.note (layers keep only security.capability, as the reference), no trusted.*
    expect(files['f'].xattrs).toEqual({ 'security.capability': asImgdiff(CAP) });
  }, 180_000);

  test('a context file changed only in its capability is copied again, and the image has the new one', async () => {
    const same = await build();
    expect(stepOutcome(same.progress, '[2/2] COPY f /f')).toBe('CACHED');

    await setAttribute(path.join(ctx, 'f'), 'security.capability', CAP_NET_RAW);
    expect(await getAttribute(path.join(ctx, 'f'), 'security.capability')).toEqual(CAP_NET_RAW);
    const changed = await build();
    expect(stepOutcome(changed.progress, '[2/2] COPY f /f')).toBe('DONE');
    expect(changed.files['f'].xattrs).toEqual({ 'security.capability': asImgdiff(CAP_NET_RAW) });
  }, 300_000);

  test('a context file changed only in a user.* attribute is copied again (BuildKit keys user.* too)', async () => {
    await setAttribute(path.join(ctx, 'f'), 'user.note', 'changed');
    const changed = await build();
    expect(stepOutcome(changed.progress, '[2/2] COPY f /f')).toBe('DONE');
    expect(changed.files['f'].xattrs).toEqual({ 'security.capability': asImgdiff(CAP_NET_RAW) });
  }, 180_000);
});
