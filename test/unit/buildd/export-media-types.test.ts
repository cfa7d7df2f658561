import { exportOciTypes } from '../../../buildd/export-media-types';

describe('exportOciTypes', () => {
  it("defaults as BuildKit's exporters: OCI for image and oci, Docker for docker", () => {
    expect(exportOciTypes({ type: 'image', attrs: {} })).toBe(true);
    expect(exportOciTypes({ type: 'oci', attrs: {} })).toBe(true);
    expect(exportOciTypes({ type: 'docker', attrs: {} })).toBe(false);
  });

  it('follows oci-mediatypes, and zstd turns OCI on where nothing was asked', () => {
    expect(exportOciTypes({ type: 'image', attrs: { 'oci-mediatypes': 'false' } })).toBe(false);
    expect(exportOciTypes({ type: 'docker', attrs: { 'oci-mediatypes': 'true' } })).toBe(true);
    expect(exportOciTypes({ type: 'docker', attrs: { 'oci-mediatypes': '' } })).toBe(true);
    expect(exportOciTypes({ type: 'docker', attrs: { compression: 'zstd' } })).toBe(true);
  });

  it.each([
    [{ compression: 'zstd', 'oci-mediatypes': 'false' }, 'image', 'Cannot use --output type=image: compression=zstd conflicts with oci-mediatypes=false'],
    [{ 'oci-mediatypes': 'no' }, 'image', 'Cannot use --output attribute oci-mediatypes=no: expected true or false'],
    [{ 'oci-mediatypes': 'false', 'annotation.k': 'v' }, 'oci', 'Cannot use --output type=oci attribute annotation.k: annotations need OCI media types (oci-mediatypes=true)'],
    [{ 'annotation-manifest.k': 'v' }, 'docker', 'annotations need OCI media types (oci-mediatypes=true), which type=docker does not write by default'],
  ] as const)('refuses %j on type=%s', (attrs, type, message) => {
    expect(() => exportOciTypes({ type, attrs: { ...attrs } })).toThrow(message);
  });
});
