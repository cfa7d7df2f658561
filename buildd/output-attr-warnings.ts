import { BuildError } from '../solver/build-error';
import { boolAttr, parseGoBool } from './bool-attr';
import { exportCompression } from './export-compression';
import { exportOciTypes } from './export-media-types';
import type { ExportSpec } from './builder';
import { checkOptions, OptionRule } from './option-rules';

/**
 * The attributes of each `--output` type: those image-export.ts reads, then those BuildKit's
 * exporters read (exporter/containerimage/exptypes/keys.go, exporter/oci, util/compression)
 * that buildd does not implement yet. Move a key up when it is implemented.
 */
const isTrue = (v: string): boolean => v === '' || parseGoBool(v) === true;

const ANNOTATION_TYPES = ['index', 'index-descriptor', 'manifest', 'manifest-descriptor'];

const COMMON: readonly OptionRule[] = [
  { key: 'name' },
  { key: 'compression' },
  { key: 'compression-level' },
  { key: 'force-compression' },
  // OCI (default for image and oci, and with zstd) or Docker schema 2 (default for docker): export-media-types.ts
  { key: 'oci-mediatypes' },
  // SOURCE_DATE_EPOCH (source-date-epoch.ts); rewrite-timestamp clamps built layers' file times to it
  { key: 'source-date-epoch' },
  { key: 'rewrite-timestamp' },
  ...['attestation-inline', 'oci-artifact', 'prefer-nondist-layers']
    .map((key) => ({ key, unsupported: {} })),
  // the manifest's annotations (manifest-annotations.ts): annotation.K, annotation-manifest.K, each also [PLATFORM]
  ...['annotation.', 'annotation[', 'annotation-manifest.', 'annotation-manifest['].map((key) => ({ key, prefix: true })),
  // the index and descriptor kinds: annotation-TYPE.K, annotation-TYPE[PLATFORM].K
  ...ANNOTATION_TYPES.filter((t) => t !== 'manifest').flatMap((t) => [`annotation-${t}.`, `annotation-${t}[`])
    .map((key) => ({ key, prefix: true, unsupported: {} })),
];

const RULES: Record<ExportSpec['type'], readonly OptionRule[]> = {
  image: [
    ...COMMON,
    { key: 'push' },
    { key: 'push-by-digest' },
    { key: 'registry.insecure' },
    { key: 'store', unsupported: { asBuilt: isTrue, note: 'ignored; buildd always stores a named image' } },
    ...['dangling-name-prefix', 'danging-name-empty-only', 'name-canonical', 'unpack', 'unsafe-internal-store-allow-incomplete']
      .map((key) => ({ key, unsupported: {} })),
  ],
  oci: [...COMMON, { key: 'dest' }, { key: 'tar', unsupported: { asBuilt: isTrue, note: 'ignored; buildd writes a tar' } }],
  docker: [...COMMON, { key: 'dest' }, { key: 'tar', unsupported: { asBuilt: isTrue, note: 'ignored; buildd writes a tar' } }],
  // the filesystem outputs: BuildKit's local and tar exporters read only the epoch
  tar: [{ key: 'dest' }, { key: 'source-date-epoch' }],
  local: [{ key: 'dest' }, { key: 'source-date-epoch' }],
};

/**
 * Checks one `--output` before the build runs. Throws where BuildKit's exporter fails: a
 * boolean buildd reads that is not one (`push=yes`), an annotation of an unknown type, a
 * compression or compression-level buildd cannot write. Returns
 * one warning per attribute that is ignored: "unknown" (with "did you mean name?" when a known
 * attribute is one typo away; BuildKit ignores these silently, so a misspelt `name` leaves the
 * image unnamed there too) or "not supported yet".
 */
export function outputAttrWarnings(spec: ExportSpec): string[] {
  for (const key of spec.type === 'image' ? ['push', 'push-by-digest', 'registry.insecure'] : []) boolAttr(spec.attrs, key, false);
  if (spec.type !== 'tar' && spec.type !== 'local') {
    boolAttr(spec.attrs, 'rewrite-timestamp', false);
    exportOciTypes(spec);
  }
  exportCompression(spec.attrs);
  for (const key of Object.keys(spec.attrs)) {
    const type = /^annotation-([^.[]*)/.exec(key)?.[1];
    if (type !== undefined && /^annotation-[^.[]*(\[[^\]]*\])?\../.test(key) && !ANNOTATION_TYPES.includes(type)) {
      throw new BuildError('invalid-argument', `Cannot use --output attribute ${key}: unrecognized annotation type ${type} (${ANNOTATION_TYPES.join(', ')})`);
    }
  }
  const where = `--output type=${spec.type}:`;
  return checkOptions(spec.attrs, RULES[spec.type]).map((f) =>
    f.kind === 'unknown'
      ? `${where} ${f.key} is unknown and was ignored${f.suggestion ? `: did you mean ${f.suggestion}?` : ''}`
      : `${where} ${f.showValue ? `${f.key}=${f.value}` : f.key} is not supported yet${f.note ? `: ${f.note}` : ' and was ignored'}`,
  );
}
