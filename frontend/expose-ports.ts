/**
 * EXPOSE port specs as Docker reads them (go-connections/nat.ParsePortSpecs, container side
 * only): `80`, `80/tcp`, `53/udp`, `8000-8002/tcp`. Each becomes one `port/proto` key.
 */

const PROTOCOLS = new Set(['tcp', 'udp', 'sctp']);

/** Thrown for a malformed spec; the caller adds the Dockerfile line. */
export class PortSpecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PortSpecError';
  }
}

/** The `port/proto` keys of one spec, in ascending port order. */
export function parsePortSpec(spec: string): string[] {
  const slash = spec.lastIndexOf('/');
  const rawPort = slash < 0 ? spec : spec.slice(0, slash);
  const proto = slash < 0 ? 'tcp' : spec.slice(slash + 1).toLowerCase();
  if (!PROTOCOLS.has(proto)) throw new PortSpecError(`invalid proto: ${proto}`);
  // An `ip:hostPort:containerPort` mapping means nothing to an image; Docker keeps the last part.
  const containerPart = rawPort.includes(':') ? rawPort.slice(rawPort.lastIndexOf(':') + 1) : rawPort;
  const match = /^(\d+)(?:-(\d+))?$/.exec(containerPart);
  if (!match) throw new PortSpecError(`invalid containerPort: ${containerPart}`);
  const start = Number(match[1]);
  const end = match[2] === undefined ? start : Number(match[2]);
  if (start > 65535 || end > 65535 || end < start) throw new PortSpecError(`invalid range specified for container port: ${containerPart}`);
  const keys: string[] = [];
  for (let p = start; p <= end; p++) keys.push(`${p}/${proto}`);
  return keys;
}
