import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { BuildSession, ExportSpec } from '../../buildd/builder';
import { ImageExportDeps, exportImage } from '../../buildd/image-export';
import { BuildError } from '../../solver/build-error';
import { LocalContentStore } from '../../store/content-store';
import { StaticCredentials } from '../../store/docker-credentials';
import type { ImageConfig } from '../../store/image-config';
import { ImageStore } from '../../store/image-store';
import { LayerIndex } from '../../store/layer-index';
import { OverlaySnapshotter } from '../../store/overlay-snapshotter';
import { RegistryClient } from '../../store/registry-client';
import type { RegistryHostConfig } from '../../store/registry-hosts';
import { makeCerts } from '../helpers/certs';
import { TestRegistry, startRegistry } from '../helpers/registry';

jest.setTimeout(60_000);

// Not "localhost": the output's registry is spoken to over HTTPS, and nothing in the daemon's
// settings trusts its certificate, so a push needs registry.insecure=true.
const ADDRESS = '127.0.0.2';
const USER = 'ci';
const PASS = 's3cret';

let tmp: string;
let caFile: string;
let registry: TestRegistry;
let tokenHost: string;
let stores: Omit<ImageExportDeps, 'registry' | 'credentials'>;
const credentials = (): StaticCredentials => new StaticCredentials(new Map([[registry.host, { username: USER, password: PASS }]]));

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-export-insecure-'));
  const certs = await makeCerts(path.join(tmp, 'certs'), { sans: [`IP:${ADDRESS}`, 'IP:127.0.0.1'] });
  caFile = certs.daemon.ca;
  const tls = { certificate: certs.daemon.cert, key: certs.daemon.key };
  // Its token server speaks HTTPS too, with a certificate the daemon trusts by registry.<host>.ca.
  registry = await startRegistry({ token: { user: USER, pass: PASS, tls } }, { address: ADDRESS, tls });
  tokenHost = new URL(registry.tokenServer?.realm ?? '').host;
  const root = path.join(tmp, 'root');
  stores = {
    content: await LocalContentStore.open(path.join(root, 'content')),
    snapshotter: await OverlaySnapshotter.open(root),
    layers: await LayerIndex.open(root),
    images: await ImageStore.open(root),
  };
});

afterAll(async () => {
  await registry?.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

const image: ImageConfig = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: { Env: ['PUSHED=1'] } };

/** exportImage as the daemon runs it, with the daemon's RegistryClient made from `registries`. */
async function pushInsecure(registries: Record<string, RegistryHostConfig>, name: string): Promise<Record<string, string>> {
  const client = new RegistryClient({ registries, credentials: credentials() });
  const session: BuildSession = {
    progress: () => undefined,
    exportStream: () => {
      throw new Error('an image export streams nothing to the client');
    },
    signal: new AbortController().signal,
  };
  const spec: ExportSpec = { type: 'image', attrs: { name, push: 'true', 'registry.insecure': 'true' } };
  try {
    return await exportImage({ ...stores, registry: client }, spec, [{ result: null, image, baseHistory: 0 }], session);
  } finally {
    await client.close();
  }
}

describe('push with registry.insecure=true on the output', () => {
  test("keeps the daemon's settings of other hosts: the token server's CA", async () => {
    const name = `${registry.host}/team/app:1`;
    const response = await pushInsecure({ [tokenHost]: { ca: [caFile] } }, name);
    // Read back verifying both certificates: the image is there under its digest.
    const reader = new RegistryClient({ registries: { [registry.host]: { ca: [caFile] }, [tokenHost]: { ca: [caFile] } }, credentials: credentials() });
    try {
      const got = await reader.resolve(name);
      expect(got.digest).toBe(response['containerimage.digest']);
      expect(got.config.config?.Env).toEqual(['PUSHED=1']);
    } finally {
      await reader.close();
    }
  });

  test('without that CA the token server is refused, naming its certificate', async () => {
    const err = await pushInsecure({}, `${registry.host}/team/refused:1`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect((err as BuildError).code).toBe('failed-precondition');
    expect((err as BuildError).message).toContain(`the certificate of ${tokenHost} is not trusted (`);
    expect((err as BuildError).message).toContain(`give the CA that signed it in registry."${tokenHost}".ca of the daemon config`);
  });
});
