import { BuildError } from '../../../solver/build-error';
import { ImageConfig } from '../../../store/image-config';
import { FrontendInput, FrontendResult, ImageResolver, ResolvedImage, ResolveOptions, dockerfileToGraph } from '../../../frontend/dockerfile-frontend';

/** The reference registry's busybox, as `docker inspect` shows it (one layer, Cmd ["sh"]). */
export const BUSYBOX: ImageConfig = {
  architecture: 'amd64',
  os: 'linux',
  config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'] },
  rootfs: { type: 'layers', diff_ids: ['sha256:' + 'b'.repeat(64)] },
  history: [{ created: '2026-01-01T00:00:00Z', comment: 'Imported from -' }],
};

/** A resolver over a fixed table that records what it was asked for. */
export function fakeResolver(table: Record<string, ImageConfig> = { 'localhost:5000/busybox:latest': BUSYBOX }): ImageResolver & { calls: string[]; platforms: Array<string | undefined> } {
  const calls: string[] = [];
  const platforms: Array<string | undefined> = [];
  const resolve = async (ref: string, opts: ResolveOptions): Promise<ResolvedImage> => {
    calls.push(ref);
    platforms.push(opts.platform);
    const config = table[ref];
    if (!config) throw new BuildError('not-found', `Cannot resolve ${ref}: no such image`);
    const hex = Buffer.from(ref).toString('hex').padEnd(64, '0').slice(0, 64);
    return { ref, digest: 'sha256:' + hex, config: structuredClone(config) };
  };
  return Object.assign(resolve, { calls, platforms });
}

/** Runs the frontend with defaults for everything the test does not care about. */
export function build(dockerfile: string, extra: Partial<FrontendInput> = {}): Promise<FrontendResult> {
  return dockerfileToGraph({
    dockerfile, filename: 'Dockerfile', buildArgs: {}, noCache: false, contextName: 'context',
    resolveImage: fakeResolver(), ...extra,
  });
}
