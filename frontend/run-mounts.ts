import { didYouMean } from './suggest';

/**
 * `RUN --mount=...` as BuildKit's instructions.parseMount reads it: comma-separated
 * `key=value` fields (a bare key is `key=true` for the boolean ones). Parsing validates
 * every field, so a typo fails the build before anything runs.
 */

export type MountType = 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';

/** One parsed mount; fields a type does not take are absent. */
export interface RunMount {
  type: MountType;
  target?: string;
  source?: string;
  from?: string;
  id?: string;
  sharing?: 'shared' | 'private' | 'locked';
  readonly?: boolean;
  required?: boolean;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: string;
  env?: string;
}

/** Thrown for a bad mount spec; the caller adds the line. */
export class MountError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MountError';
  }
}

const TYPES: readonly MountType[] = ['bind', 'cache', 'tmpfs', 'secret', 'ssh'];
const KEYS = ['type', 'target', 'dst', 'destination', 'source', 'src', 'from', 'id', 'sharing', 'readonly', 'ro', 'rw', 'readwrite', 'required', 'mode', 'uid', 'gid', 'size', 'env'];
/** Which keys each type accepts (aliases are normalized first). */
const ALLOWED: Record<MountType, readonly string[]> = {
  bind: ['target', 'source', 'from', 'readonly'],
  cache: ['target', 'source', 'from', 'id', 'sharing', 'readonly', 'mode', 'uid', 'gid'],
  tmpfs: ['target', 'size'],
  secret: ['target', 'id', 'required', 'mode', 'uid', 'gid', 'env'],
  ssh: ['target', 'id', 'required', 'mode', 'uid', 'gid'],
};
const ALIASES: Record<string, string> = { dst: 'target', destination: 'target', src: 'source', ro: 'readonly', rw: 'readwrite', readwrite: 'readwrite' };

/** Parses one `--mount` value. */
export function parseRunMount(spec: string): RunMount {
  const fields = spec.split(',').map((f) => f.trim()).filter((f) => f !== '');
  const values = new Map<string, string | undefined>();
  for (const field of fields) {
    const eq = field.indexOf('=');
    const rawKey = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    if (!KEYS.includes(rawKey)) throw new MountError(`unexpected key '${rawKey}' in '${field}'${didYouMean(rawKey, KEYS)}`);
    const key = ALIASES[rawKey] ?? rawKey;
    values.set(key, eq < 0 ? undefined : field.slice(eq + 1));
  }
  const typeText = values.get('type') ?? 'bind';
  if (!TYPES.includes(typeText as MountType)) throw new MountError(`unsupported mount type "${typeText}"${didYouMean(typeText, TYPES)}`);
  const type = typeText as MountType;
  values.delete('type');
  if (values.has('readwrite')) {
    values.set('readonly', String(!bool('rw', values.get('readwrite'))));
    values.delete('readwrite');
  }
  const mount: RunMount = { type };
  for (const [key, value] of values) {
    if (!ALLOWED[type].includes(key)) throw new MountError(`option "${key}" is not valid for mount type=${type}`);
    const need = (): string => {
      if (value === undefined || value === '') throw new MountError(`mount option "${key}" needs a value (${key}=...)`);
      return value;
    };
    switch (key) {
      case 'readonly': mount.readonly = bool(key, value); break;
      case 'required': mount.required = bool(key, value); break;
      case 'sharing': {
        const v = need();
        if (v !== 'shared' && v !== 'private' && v !== 'locked') throw new MountError(`unsupported sharing value "${v}" (shared, private or locked)`);
        mount.sharing = v;
        break;
      }
      case 'mode': {
        const v = need();
        if (!/^[0-7]{1,4}$/.test(v)) throw new MountError(`invalid mount mode "${v}" (an octal mode such as 0755 is expected)`);
        mount.mode = parseInt(v, 8);
        break;
      }
      case 'uid':
      case 'gid': {
        const v = need();
        if (!/^\d+$/.test(v) || Number(v) > 0xffffffff) throw new MountError(`invalid ${key} "${v}" (a number is expected)`);
        mount[key] = Number(v);
        break;
      }
      case 'size': {
        const v = need();
        if (!/^\d+(\.\d+)?\s*([kmgtp]i?b?|b)?$/i.test(v)) throw new MountError(`invalid size "${v}"`);
        mount.size = v;
        break;
      }
      default:
        (mount as unknown as Record<string, string>)[key] = need();
    }
  }
  // secret and ssh defaults (target, id) are BuildKit's and live in run-secret-mounts.ts
  if (mount.target === undefined && type !== 'secret' && type !== 'ssh') throw new MountError('mount target is required (target=/path)');
  if (type === 'secret' && mount.id === undefined && (mount.target === undefined || mount.target.split('/').pop() === '')) {
    throw new MountError('a secret mount needs an id or a target (id=NAME)');
  }
  return mount;
}

function bool(key: string, value: string | undefined): boolean {
  if (value === undefined || value === '' || value.toLowerCase() === 'true') return true;
  if (value.toLowerCase() === 'false') return false;
  throw new MountError(`invalid value for ${key}: "${value}" (true or false)`);
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/**
 * A tmpfs `size` in bytes, as BuildKit reads it (go-units RAMInBytes): a number with an
 * optional binary unit, `k`, `kb`, `kib` and `KiB` alike meaning 1024.
 */
export function sizeInBytes(size: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?$/i.exec(size.trim());
  if (!m) throw new MountError(`invalid size "${size}"`);
  const bytes = Math.floor(Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()]);
  if (!Number.isSafeInteger(bytes)) throw new MountError(`invalid size "${size}": too large`);
  return bytes;
}
