import { endianness } from 'node:os';
import { BuildError } from '../solver/build-error';

/**
 * An OCI platform as the build and the image index see it. After `normalizePlatform` the
 * variant is either a non-empty string or absent (never ''), so two platforms are the same
 * exactly when their `platformId`s are equal.
 */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** Platform-like values from an image index (`store/manifest.ts`'s zod type fits). */
export type PlatformLike = { os: string; architecture: string; variant?: string };

/** Each part of a platform specifier, after lower-casing (containerd lower-cases too). */
const PART = /^[a-z0-9._-]+$/;

/** containerd's isKnownOS: a single-part specifier naming one of these is an OS. */
const KNOWN_OS = new Set(
  'aix android darwin dragonfly freebsd hurd illumos ios js linux nacl netbsd openbsd plan9 solaris windows zos'.split(' '),
);

/** containerd's isKnownArch: a single-part specifier must name one of these (after normalizing). */
const KNOWN_ARCH = new Set(
  ('386 amd64 amd64p32 arm armbe arm64 arm64be ppc64 ppc64le loong64 mips mipsle mips64 mips64le ' +
    'mips64p32 mips64p32le ppc riscv riscv64 s390 s390x sparc sparc64 wasm').split(' '),
);

function invalid(spec: string, why: string): BuildError {
  return new BuildError('invalid-argument', `Cannot parse platform ${JSON.stringify(spec.slice(0, 200))}: ${why}`);
}

function make(os: string, architecture: string, variant: string | undefined): Platform {
  return variant ? { os, architecture, variant } : { os, architecture };
}

/**
 * Parses `os/arch[/variant]`, or a lone OS or architecture as containerd's `Parse` does: a
 * known OS alone takes the host's architecture (`linux` → `linux/amd64` here), a known
 * architecture alone takes the OS linux (the only OS buildd runs steps for). The parts are
 * lower-cased and kept as written otherwise: callers compare platforms only after
 * `normalizePlatform`, which does every rewriting (containerd's Parse half-normalizes and
 * then undoes it for arm/v7 and arm64/v8, which nobody here needs). OS versions and
 * features (`windows(10.0.17763)`) are not supported.
 * Throws BuildError('invalid-argument') naming the specifier when it is malformed.
 */
export function parsePlatform(spec: string, host: Platform = hostPlatform()): Platform {
  const lower = spec.toLowerCase();
  if (lower === '') throw invalid(spec, 'it is empty');
  const parts = lower.split('/');
  if (parts.length > 3) throw invalid(spec, 'expected os/arch[/variant], got more than 3 parts');
  for (const part of parts) {
    if (part === '') throw invalid(spec, 'expected os/arch[/variant], got an empty part');
    if (!PART.test(part)) throw invalid(spec, `${JSON.stringify(part)} has characters other than a-z 0-9 . _ -`);
  }
  if (parts.length === 1) {
    const [only] = parts;
    if (KNOWN_OS.has(normalizeOs(only))) return make(only, host.architecture, host.variant);
    if (KNOWN_ARCH.has(normalizeArch(only, '')[0])) return make('linux', only, undefined);
    throw invalid(spec, 'not a known operating system or architecture');
  }
  return make(parts[0], parts[1], parts[2]);
}

function normalizeOs(os: string): string {
  const lower = os.toLowerCase();
  if (lower === '') return 'linux';
  return lower === 'macos' ? 'darwin' : lower;
}

/** containerd's normalizeArch (database.go), rule for rule. */
function normalizeArch(architecture: string, variant: string): [string, string] {
  const arch = architecture.toLowerCase();
  const v = variant.toLowerCase();
  switch (arch) {
    case 'i386':
      return ['386', ''];
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      return ['amd64', v === 'v1' ? '' : v];
    case 'aarch64':
    case 'arm64':
      if (v === '8' || v === 'v8' || v === 'v8.0') return ['arm64', ''];
      if (v === '9' || v === '9.0' || v === 'v9.0') return ['arm64', 'v9'];
      return ['arm64', v];
    case 'armhf':
      return ['arm', 'v7'];
    case 'armel':
      return ['arm', 'v6'];
    case 'arm':
      if (v === '' || v === '7') return ['arm', 'v7'];
      if (v === '5' || v === '6' || v === '8') return ['arm', 'v' + v];
      return ['arm', v];
    default:
      return [arch, v];
  }
}

/**
 * The canonical form of a platform, by containerd's `Normalize`: i386 → 386, x86_64 → amd64
 * (v1 dropped), aarch64 → arm64 (v8 dropped, 9 → v9), armhf → arm/v7, armel → arm/v6, plain
 * arm → arm/v7, OS lower-cased (macos → darwin). Two platforms are the same platform when
 * their normalized forms are equal; index entries and user input both go through this.
 */
export function normalizePlatform(p: PlatformLike): Platform {
  const [architecture, variant] = normalizeArch(p.architecture, p.variant ?? '');
  return make(normalizeOs(p.os), architecture, variant);
}

/** `os/arch[/variant]`, as containerd's Format prints it (no normalization: see platformId). */
export function formatPlatform(p: PlatformLike): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}

/** The key of a platform (BuildKit's platform ID): `linux/arm/v7`, `linux/arm64`. */
export function platformId(p: PlatformLike): string {
  return formatPlatform(normalizePlatform(p));
}

/** The per-platform folder name of a multi-platform local/tar export: `linux_arm_v7`. */
export function platformDirName(p: PlatformLike): string {
  return platformId(p).replace(/\//g, '_');
}

/**
 * The platforms of `--opt platform=linux/amd64,linux/arm64`, normalized, in the order given
 * (the order of the index buildd writes). Refuses an empty list, an empty item and two items
 * that name the same platform once normalized (`linux/arm64,linux/arm64/v8`), since they
 * would build the same image twice under one key.
 */
export function parsePlatformList(value: string): Platform[] {
  const items = value.split(',').map((s) => s.trim());
  if (items.length === 1 && items[0] === '') {
    throw new BuildError('invalid-argument', 'Cannot parse platform list: it is empty');
  }
  const seen = new Map<string, string>();
  const out: Platform[] = [];
  for (const item of items) {
    if (item === '') {
      throw new BuildError('invalid-argument', `Cannot parse platform list ${JSON.stringify(value.slice(0, 300))}: it has an empty item`);
    }
    const p = normalizePlatform(parsePlatform(item));
    const id = formatPlatform(p);
    const earlier = seen.get(id);
    if (earlier !== undefined) {
      throw new BuildError(
        'invalid-argument',
        `Cannot parse platform list ${JSON.stringify(value.slice(0, 300))}: ${earlier} and ${item} are the same platform (${id})`,
      );
    }
    seen.set(id, item);
    out.push(p);
  }
  return out;
}

/** containerd's arm64variantToVersion: the arm64 variants an arm64/vX.Y also runs, newest first. */
function arm64Variants(variant: string): string[] | undefined {
  const m = /^v(8|9)(?:\.(\d))?$/.exec(variant);
  if (!m) return undefined;
  const major = Number(m[1]);
  const minor = m[2] === undefined ? 0 : Number(m[2]);
  if (major === 9 && minor > 7) return undefined;
  const out: string[] = [];
  const down = (maj: number, from: number): void => {
    for (let n = from; n >= 0; n--) out.push(n === 0 ? `v${maj}` : `v${maj}.${n}`);
  };
  if (major === 9) {
    down(9, minor);
    down(8, Math.min(minor + 5, 9));
  } else {
    down(8, minor);
  }
  return out;
}

/** containerd's platformVector (compare.go): what `p` (normalized) accepts, best first. */
function platformVector(p: Platform): Platform[] {
  const { os, architecture } = p;
  const variant = p.variant ?? '';
  const numeric = /^v?(\d+)$/.exec(variant);
  switch (architecture) {
    case 'amd64': {
      const out = [p];
      if (numeric) for (let n = Number(numeric[1]) - 1; n >= 1; n--) out.push(make(os, 'amd64', `v${n}`));
      out.push(make(os, '386', undefined));
      return out;
    }
    case 'arm': {
      const out = [p];
      if (numeric) for (let n = Number(numeric[1]) - 1; n >= 5; n--) out.push(make(os, 'arm', `v${n}`));
      return out;
    }
    case 'arm64': {
      // containerd matches nothing of arm64 for a variant outside v8..v9.x (and then tries
      // arm/<that variant>); buildd keeps the platform itself and stops there.
      const own = arm64Variants(variant || 'v8');
      if (!own) return [p];
      return [...own.map((v) => make(os, 'arm64', v)), ...platformVector(make(os, 'arm', 'v8'))];
    }
    default:
      return [p];
  }
}

/** What `platformMatcher` returns: containerd's `Only(p)` as a match and an order. */
export interface PlatformMatcher {
  /** The accepted platforms, normalized, best first. */
  readonly platforms: readonly Platform[];
  /** Whether `candidate` (normalized first) is one of `platforms`. */
  match(candidate: PlatformLike): boolean;
  /** The index of `candidate` in `platforms`; Infinity when it is not accepted. */
  rank(candidate: PlatformLike): number;
}

/**
 * containerd's `platforms.Only(wanted)`, which BuildKit uses to pick a base image from an
 * index: amd64/vN accepts amd64/vN … amd64, then 386; arm/vN accepts arm/vN down to arm/v5;
 * arm64 accepts arm64, then arm/v8, v7, v6, v5; anything else only itself. Candidates are
 * normalized and compared on os, architecture and variant exactly.
 */
export function platformMatcher(wanted: PlatformLike): PlatformMatcher {
  const platforms = platformVector(normalizePlatform(wanted)).map(normalizePlatform);
  const ids = platforms.map(formatPlatform);
  const rank = (candidate: PlatformLike): number => {
    const i = ids.indexOf(platformId(candidate));
    return i < 0 ? Infinity : i;
  };
  return { platforms, rank, match: (candidate) => rank(candidate) !== Infinity };
}

/**
 * The entry of an index to use for `wanted`: the best-ranked by `platformMatcher`, the first in
 * index order among equals. Entries without a platform are ignored here (containerd would try
 * them last and check their config's platform; a caller that wants that does it itself).
 */
export function pickManifest<T extends { platform?: PlatformLike }>(manifests: readonly T[], wanted: PlatformLike): T | undefined {
  const matcher = platformMatcher(wanted);
  let best: T | undefined;
  let bestRank = Infinity;
  for (const m of manifests) {
    if (!m.platform) continue;
    const r = matcher.rank(m.platform);
    if (r < bestRank) {
      best = m;
      bestRank = r;
    }
  }
  return best;
}

/**
 * The platform of the machine buildd runs on, from Node's arch names (x64 → amd64, ia32 → 386,
 * arm → arm/v7, ppc64 → ppc64le on little-endian, mips64el → mips64le); the OS is linux, the
 * only one buildd runs steps on. It is BuildKit's BUILDPLATFORM and the worker's native one.
 */
export function hostPlatform(arch: string = process.arch, byteOrder: 'LE' | 'BE' = endianness()): Platform {
  const map: Record<string, Platform> = {
    x64: { os: 'linux', architecture: 'amd64' },
    arm64: { os: 'linux', architecture: 'arm64' },
    arm: { os: 'linux', architecture: 'arm', variant: 'v7' },
    ia32: { os: 'linux', architecture: '386' },
    ppc64: { os: 'linux', architecture: byteOrder === 'LE' ? 'ppc64le' : 'ppc64' },
    mips64el: { os: 'linux', architecture: 'mips64le' },
    mipsel: { os: 'linux', architecture: 'mipsle' },
  };
  return map[arch] ?? { os: 'linux', architecture: arch };
}
