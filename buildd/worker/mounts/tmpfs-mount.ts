import type { ExecMount } from '../../../solver/op';
import type { OciMount } from '../oci-spec';

/**
 * `RUN --mount=type=tmpfs`: a fresh tmpfs for the step alone, as BuildKit mounts it (nosuid,
 * the kernel's default mode 1777, `size=` bytes when given). It lives in the container's mount
 * namespace only, so nothing is left on the host and nothing of it reaches the layer.
 */
export function tmpfsMount(m: ExecMount): OciMount {
  const options = ['nosuid', 'nodev'];
  const size = m.tmpfs?.size ?? 0;
  if (size > 0) options.push(`size=${size}`);
  if (m.readonly) options.push('ro');
  return { destination: m.dest, type: 'tmpfs', source: 'tmpfs', options };
}
