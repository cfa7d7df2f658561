/**
 * BuildKit's `--oci-worker-snapshotter` values that buildd has: `overlayfs`, `native` (copies
 * each layer's tree), `auto` (overlayfs where a test mount works, else native). Kept apart from
 * openSnapshotter so that the config can be checked without loading the store.
 */
export const SNAPSHOTTER_CHOICES = ['auto', 'overlayfs', 'native'] as const;
export type SnapshotterChoice = (typeof SNAPSHOTTER_CHOICES)[number];
export type SnapshotterName = Exclude<SnapshotterChoice, 'auto'>;
