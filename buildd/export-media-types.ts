import { BuildError } from '../solver/build-error';
import type { ExportSpec } from './builder';
import { boolAttr } from './bool-attr';
import { exportCompression } from './export-compression';

/**
 * Whether an output writes OCI media types (`true`) or Docker's schema 2 ones, as BuildKit's
 * exporters decide: `oci-mediatypes=` when given; else OCI for image and oci outputs and Docker
 * for `type=docker`. zstd exists only as an OCI layer: it turns OCI types on, and asking for
 * both zstd and oci-mediatypes=false is an error, as in BuildKit; so are manifest annotations,
 * which a Docker manifest cannot hold.
 */
export function exportOciTypes(spec: ExportSpec): boolean {
  const zstd = exportCompression(spec.attrs).compression.type === 'zstd';
  const given = spec.attrs['oci-mediatypes'];
  const oci = given === undefined ? spec.type !== 'docker' || zstd : boolAttr(spec.attrs, 'oci-mediatypes', true);
  if (!oci && zstd) throw new BuildError('invalid-argument', `Cannot use --output type=${spec.type}: compression=zstd conflicts with oci-mediatypes=false (a zstd layer has only an OCI media type)`);
  const annotation = Object.keys(spec.attrs).find((k) => k.startsWith('annotation'));
  if (!oci && annotation !== undefined) {
    throw new BuildError('invalid-argument', `Cannot use --output type=${spec.type} attribute ${annotation}: annotations need OCI media types (oci-mediatypes=true)${given === undefined ? `, which type=${spec.type} does not write by default` : ''}`);
  }
  return oci;
}
