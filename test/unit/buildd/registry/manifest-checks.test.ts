import { DistributionError } from '../../../../buildd/registry/distribution-error';
import { checkManifest } from '../../../../buildd/registry/manifest-checks';

const d = (c: string): string => 'sha256:' + c.repeat(64);
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';

const image = {
  schemaVersion: 2,
  mediaType: OCI_MANIFEST,
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: d('c'), size: 10 },
  layers: [
    { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: d('1'), size: 5 },
    { mediaType: 'application/vnd.oci.image.layer.nondistributable.v1.tar', digest: d('2'), size: 5, urls: ['https://example.com/l'] },
  ],
};

function refusal(body: unknown, type?: string): string {
  try {
    checkManifest(Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)), type);
    return 'accepted';
  } catch (err) {
    return err instanceof DistributionError ? `${err.status} ${err.code}` : String(err);
  }
}

describe('manifests pushed to the embedded registry', () => {
  test('an image manifest names the blobs it needs (foreign layers excepted)', () => {
    const c = checkManifest(Buffer.from(JSON.stringify(image)), `${OCI_MANIFEST}; charset=utf-8`);
    expect(c).toEqual({ mediaType: OCI_MANIFEST, blobs: [d('c'), d('1')], manifests: [], subject: undefined, artifactType: undefined, annotations: undefined });
  });

  test('an index names the manifests it needs; the media type may come from the body alone', () => {
    const index = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: d('e'), size: 3 }] };
    expect(checkManifest(Buffer.from(JSON.stringify(index)), undefined)).toMatchObject({ mediaType: OCI_INDEX, blobs: [], manifests: [d('e')] });
  });

  test('a manifest that is not what it is pushed as is refused', () => {
    expect(refusal({ schemaVersion: 2, manifests: [] }, OCI_MANIFEST)).toBe('400 MANIFEST_INVALID');
    expect(refusal({ ...image, mediaType: undefined, manifests: [] }, OCI_MANIFEST)).toBe('400 MANIFEST_INVALID');
    expect(refusal(image, OCI_INDEX)).toBe('400 MANIFEST_INVALID');
    expect(refusal(image, DOCKER_MANIFEST)).toBe('400 MANIFEST_INVALID');
    expect(refusal({ ...image, mediaType: undefined }, DOCKER_MANIFEST)).toBe('accepted');
    expect(refusal('[1,2]', OCI_MANIFEST)).toBe('400 MANIFEST_INVALID');
    expect(refusal('{', OCI_MANIFEST)).toBe('400 MANIFEST_INVALID');
    expect(refusal({ ...image, mediaType: undefined })).toBe('400 MANIFEST_INVALID');
    expect(refusal(image, 'application/json')).toBe('400 MANIFEST_INVALID');
    expect(refusal({ ...image, config: { digest: 'md5:x' } }, OCI_MANIFEST)).toBe('400 MANIFEST_INVALID');
  });

  test('a subject makes a referrer, with the artifact type from the manifest or its config', () => {
    const subject = { mediaType: OCI_MANIFEST, digest: d('5'), size: 9 };
    expect(checkManifest(Buffer.from(JSON.stringify({ ...image, subject })), OCI_MANIFEST)).toMatchObject({ subject: d('5'), artifactType: 'application/vnd.oci.image.config.v1+json' });
    expect(checkManifest(Buffer.from(JSON.stringify({ ...image, subject, artifactType: 'application/x' })), OCI_MANIFEST)).toMatchObject({ artifactType: 'application/x' });
  });
});
