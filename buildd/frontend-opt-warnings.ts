import { checkOptions, OptionRule } from './option-rules';

/**
 * The `--opt` keys of the `dockerfile.v0` frontend: those DockerfileBuilder reads, then those
 * BuildKit's Dockerfile frontend (frontend/dockerui, frontend/dockerfile/builder,
 * frontend/attestations) and its solver read that buildd does not implement yet. Move a key
 * up when it is implemented.
 */
const IMPLEMENTED: readonly OptionRule[] = [
  // an ARG like any other, and the time the exporters clamp to (source-date-epoch.ts)
  { key: 'build-arg:SOURCE_DATE_EPOCH' },
  { key: 'filename' },
  { key: 'target' },
  { key: 'platform' },
  { key: 'build-arg:', prefix: true },
  { key: 'context:', prefix: true },
  { key: 'force-network-mode' },
  { key: 'hostname' },
  // cache imports through the frontend, as BuildKit's dockerui (frontend-cache-opts.ts)
  { key: 'cache-from' },
  { key: 'cache-imports' },
  { key: 'build-arg:BUILDKIT_INLINE_CACHE' },
];

const NOT_YET = (note?: string): OptionRule['unsupported'] => (note ? { note } : {});

/** Build args BuildKit gives a meaning beyond the ARG they also set. */
const SPECIAL_BUILD_ARGS = [
  'BUILDKIT_CACHE_MOUNT_NS', 'BUILDKIT_CONTEXT_KEEP_GIT_DIR', 'BUILDKIT_DOCKERFILE_CHECK',
  'BUILDKIT_MULTI_PLATFORM', 'BUILDKIT_SBOM_SCAN_CONTEXT', 'BUILDKIT_SBOM_SCAN_STAGE',
  'BUILDKIT_SYNTAX',
];
const SPECIAL_NOTE = "only the build arg is set, BuildKit's meaning of it is ignored";

const KNOWN_TO_BUILDKIT: readonly OptionRule[] = [
  ...SPECIAL_BUILD_ARGS.map((a) => ({ key: `build-arg:${a}`, unsupported: NOT_YET(SPECIAL_NOTE) })),
  { key: 'build-arg:BUILDKIT_ATTEST_', prefix: true, unsupported: NOT_YET(SPECIAL_NOTE) },
  { key: 'label:', prefix: true, unsupported: NOT_YET() },
  { key: 'no-cache', unsupported: NOT_YET('ignored; use buildctl build --no-cache') },
  ...[
    'add-hosts', 'cgroup-parent', 'cmdline', 'contextkey', 'contextsubdir', 'cpuperiod',
    'cpuquota', 'cpusetcpus', 'cpusetmems', 'cpushares', 'dockerfilekey', 'frontend.caps',
    'image-resolve-mode', 'memory', 'memswap', 'multi-platform', 'requestid', 'shm-size', 'source', 'ulimit',
  ].map((key) => ({ key, unsupported: NOT_YET() })),
  ...['attest:', 'input-metadata:', 'local-sessionid:', 'sharedkey:', 'vcs:'].map((key) => ({ key, prefix: true, unsupported: NOT_YET() })),
];

// An exact key or a longer prefix wins: build-arg:SOURCE_DATE_EPOCH is not just any build arg.
const RULES: readonly OptionRule[] = [...IMPLEMENTED, ...KNOWN_TO_BUILDKIT];

/**
 * One warning per `--opt` key the Dockerfile frontend ignores: "unknown" (with "did you mean
 * target?" when a known key is one typo away) or "not supported yet". Such keys never fail a
 * build, as in BuildKit, which ignores them without a word.
 */
export function frontendOptWarnings(attrs: Record<string, string>): string[] {
  return checkOptions(attrs, RULES).map((f) =>
    f.kind === 'unknown'
      ? `--opt ${f.key} is unknown and was ignored${f.suggestion ? `: did you mean ${f.suggestion}?` : ''}`
      : `--opt ${f.key} is not supported yet${f.note ? `: ${f.note}` : ' and was ignored'}`,
  );
}
