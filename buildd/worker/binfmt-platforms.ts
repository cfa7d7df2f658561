import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Platform, formatPlatform, normalizePlatform, platformId } from '../../store/platforms';

/** Where the kernel lists its binfmt_misc handlers. */
export const BINFMT_DIR = '/proc/sys/fs/binfmt_misc';

/** Files of the binfmt_misc folder that are not handlers. */
const CONTROL_FILES = new Set(['register', 'status']);

/**
 * One magic-type handler of /proc/sys/fs/binfmt_misc/<name>, as the kernel prints it. Read so
 * that buildd can tell which foreign CPUs a RUN step can execute on this machine (through
 * qemu-user) before it starts one that would fail with `exec format error`.
 */
export interface BinfmtEntry {
  name: string;
  enabled: boolean;
  interpreter: string;
  /** The kernel's flag letters, e.g. `OPF`; '' when none. */
  flags: string;
  /** Where in the file `magic` must be found. */
  offset: number;
  magic: Buffer;
  /** Bits of `magic` that count; absent means all of them. */
  mask?: Buffer;
}

const HEX = /^(?:[0-9a-f]{2})+$/i;

/**
 * Parses the text of /proc/sys/fs/binfmt_misc/<name>: `enabled`/`disabled`, then
 * `interpreter`, `flags:`, `offset`, `magic`, `mask` lines. Returns undefined for an
 * extension-type entry (matched on a file name suffix, never an ELF binary) and for text
 * that is not a handler (the `status` file, a truncated read).
 */
export function parseBinfmtEntry(name: string, text: string): BinfmtEntry | undefined {
  const lines = text.split('\n').map((l) => l.trim());
  const state = lines[0];
  if (state !== 'enabled' && state !== 'disabled') return undefined;
  let interpreter: string | undefined;
  let flags = '';
  let offset = 0;
  let magic: Buffer | undefined;
  let mask: Buffer | undefined;
  for (const line of lines.slice(1)) {
    const space = line.indexOf(' ');
    const key = space < 0 ? line : line.slice(0, space);
    const value = space < 0 ? '' : line.slice(space + 1).trim();
    switch (key) {
      case 'interpreter':
        interpreter = value;
        break;
      case 'flags:':
        flags = value;
        break;
      case 'offset':
        if (!/^\d+$/.test(value)) return undefined;
        offset = Number(value);
        break;
      case 'magic':
        if (!HEX.test(value)) return undefined;
        magic = Buffer.from(value, 'hex');
        break;
      case 'mask':
        if (!HEX.test(value)) return undefined;
        mask = Buffer.from(value, 'hex');
        break;
      case 'extension':
        return undefined;
    }
  }
  if (!interpreter || !magic) return undefined;
  const entry: BinfmtEntry = { name, enabled: state === 'enabled', interpreter, flags, offset, magic };
  if (mask) entry.mask = mask;
  return entry;
}

const ELF = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

/** e_machine → platform, with the ELF class (32/64-bit) and byte order each one has. */
const MACHINES: ReadonlyArray<{ machine: number; bits: 32 | 64; little: boolean; platform: Platform }> = [
  { machine: 0xb7, bits: 64, little: true, platform: { os: 'linux', architecture: 'arm64' } },
  { machine: 0x28, bits: 32, little: true, platform: { os: 'linux', architecture: 'arm', variant: 'v7' } },
  { machine: 0x3e, bits: 64, little: true, platform: { os: 'linux', architecture: 'amd64' } },
  { machine: 0x03, bits: 32, little: true, platform: { os: 'linux', architecture: '386' } },
  { machine: 0xf3, bits: 64, little: true, platform: { os: 'linux', architecture: 'riscv64' } },
  { machine: 0x15, bits: 64, little: true, platform: { os: 'linux', architecture: 'ppc64le' } },
  { machine: 0x16, bits: 64, little: false, platform: { os: 'linux', architecture: 's390x' } },
  { machine: 0x08, bits: 64, little: true, platform: { os: 'linux', architecture: 'mips64le' } },
  { machine: 0x102, bits: 64, little: true, platform: { os: 'linux', architecture: 'loong64' } },
];

/**
 * The platform whose executables an ELF-header magic matches: byte 4 is the class (1 = 32-bit,
 * 2 = 64-bit), byte 5 the byte order (1 = little, 2 = big), bytes 18-19 `e_machine` in that
 * order. The class and byte order must be the ones the platform has, so qemu-aarch64_be or
 * qemu-armeb (big-endian) and riscv32 are not taken for arm64, arm or riscv64. Returns
 * undefined for a magic that is not an ELF header or a machine buildd does not know.
 */
export function elfMagicPlatform(magic: Uint8Array): Platform | undefined {
  if (magic.length < 20 || !ELF.equals(Buffer.from(magic.subarray(0, 4)))) return undefined;
  const bits = magic[4] === 1 ? 32 : magic[4] === 2 ? 64 : undefined;
  const little = magic[5] === 1 ? true : magic[5] === 2 ? false : undefined;
  if (bits === undefined || little === undefined) return undefined;
  const machine = little ? magic[18] | (magic[19] << 8) : (magic[18] << 8) | magic[19];
  const known = MACHINES.find((m) => m.machine === machine && m.bits === bits && m.little === little);
  return known ? { ...known.platform } : undefined;
}

/** A foreign platform that a registered, enabled binfmt_misc handler runs. */
export interface EmulatedPlatform {
  platform: Platform;
  /** The handler's name in /proc/sys/fs/binfmt_misc (`qemu-aarch64`). */
  name: string;
  interpreter: string;
  /**
   * The handler has the F (fix binary) flag: the kernel opened the interpreter when it was
   * registered, so it runs inside any container; without F the kernel looks the interpreter
   * path up in the container's own root at exec time, where it does not exist.
   */
  fixBinary: boolean;
}

async function readEntry(dir: string, name: string): Promise<BinfmtEntry | undefined> {
  try {
    return parseBinfmtEntry(name, await fsp.readFile(path.join(dir, name), 'utf8'));
  } catch {
    return undefined; // removed since the listing, or unreadable: not usable either way
  }
}

/**
 * The platforms that enabled ELF handlers in `dir` emulate, sorted by handler name. A missing
 * or unreadable folder (binfmt_misc not mounted) means none. An arm handler (qemu-arm) yields
 * arm/v7 and then arm/v6, which qemu-arm's default CPU runs as well and BuildKit lists too.
 * Disabled handlers, extension handlers and handlers whose magic is not at offset 0 are left out.
 */
export async function emulatedPlatforms(dir: string = BINFMT_DIR): Promise<EmulatedPlatform[]> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return [];
  }
  names = names.filter((n) => !CONTROL_FILES.has(n)).sort();
  const entries = await Promise.all(names.map((n) => readEntry(dir, n)));
  const out: EmulatedPlatform[] = [];
  for (const e of entries) {
    if (!e || !e.enabled || e.offset !== 0) continue;
    const platform = elfMagicPlatform(e.magic);
    if (!platform) continue;
    const fixBinary = e.flags.includes('F');
    out.push({ platform, name: e.name, interpreter: e.interpreter, fixBinary });
    if (platform.architecture === 'arm' && platform.variant === 'v7') {
      out.push({ platform: { os: 'linux', architecture: 'arm', variant: 'v6' }, name: e.name, interpreter: e.interpreter, fixBinary });
    }
  }
  return out;
}

/** BuildKit's order of emulated platforms (util/archutil/detect.go), as platform IDs. */
const EMULATED_ORDER = [
  'linux/amd64',
  'linux/arm64',
  'linux/riscv64',
  'linux/ppc64le',
  'linux/s390x',
  'linux/386',
  'linux/mips64le',
  'linux/loong64',
  'linux/arm/v7',
  'linux/arm/v6',
];

/**
 * The platforms a RUN step can execute on this worker, in BuildKit's order: the host first
 * (and linux/386 on amd64, which runs 32-bit x86 natively), then emulated ones in a fixed order,
 * each once. Only handlers with the F flag count, since steps run in a container whose root
 * does not have the interpreter's path (see EmulatedPlatform.fixBinary). Unlike BuildKit, which
 * runs a tiny test binary per architecture, this trusts the registration; arm on an arm64 host
 * is listed only when a handler for it is registered.
 */
export function runnablePlatforms(host: Platform, emulated: readonly EmulatedPlatform[]): Platform[] {
  const native = normalizePlatform(host);
  const ids = new Set<string>();
  const out: Platform[] = [];
  const add = (p: Platform): void => {
    const id = platformId(p);
    if (ids.has(id)) return;
    ids.add(id);
    out.push(normalizePlatform(p));
  };
  add(native);
  if (native.os === 'linux' && native.architecture === 'amd64') add({ os: 'linux', architecture: '386' });
  const usable = emulated.filter((e) => e.fixBinary).map((e) => normalizePlatform(e.platform));
  const order = (p: Platform): number => {
    const i = EMULATED_ORDER.indexOf(formatPlatform(p));
    return i < 0 ? EMULATED_ORDER.length : i;
  };
  for (const p of [...usable].sort((a, b) => order(a) - order(b))) add(p);
  return out;
}

/** qemu-user's name for each architecture (the `qemu-<name>-static` binary, `qemu-<name>` handler). */
const QEMU_ARCH: Readonly<Record<string, string>> = {
  amd64: 'x86_64',
  arm64: 'aarch64',
  arm: 'arm',
  '386': 'i386',
  riscv64: 'riscv64',
  ppc64le: 'ppc64le',
  s390x: 's390x',
  mips64le: 'mips64el',
  loong64: 'loongarch64',
};

/** Options of missingEmulatorMessage. */
export interface MissingEmulatorOptions {
  /** What emulatedPlatforms found, to tell a handler without the F flag from none. */
  registered?: readonly EmulatedPlatform[];
  /** The binfmt_misc folder that was read. */
  dir?: string;
}

/**
 * Why a build for `wanted` cannot run its steps here, and what to install or register so it
 * can: the Debian package, the qemu binary and the registration line it ships. Debian's
 * qemu-user-static registers its handlers itself, but not when installed inside a container.
 */
export function missingEmulatorMessage(wanted: Platform, host: Platform, options: MissingEmulatorOptions = {}): string {
  const dir = options.dir ?? BINFMT_DIR;
  const head = `Cannot build for ${platformId(wanted)} on this ${platformId(host)} machine`;
  const want = normalizePlatform(wanted);
  if (want.os !== 'linux') return `${head}: buildd runs steps as linux processes only`;
  const qemu = QEMU_ARCH[want.architecture];
  if (!qemu) return `${head}: no emulator is registered for it in ${dir}, and buildd knows no qemu-user emulator for ${want.architecture}`;
  const conf = `/usr/lib/binfmt.d/qemu-${qemu}.conf`;
  const id = platformId(want);
  const withoutF = options.registered?.find((e) => !e.fixBinary && platformId(e.platform) === id);
  if (withoutF) {
    return (
      `${head}: the emulator ${withoutF.name} in ${dir} is registered without the F (fix binary) flag, so steps, ` +
      `which run in their own root, cannot find ${withoutF.interpreter} (re-register it with flags OPF: ` +
      `echo -1 > ${dir}/${withoutF.name}; cat ${conf} > ${dir}/register)`
    );
  }
  return (
    `${head}: no emulator registered for it in ${dir} (install Debian's qemu-user-static, ` +
    `which provides qemu-${qemu}-static, and register it with the F flag: cat ${conf} > ${dir}/register)`
  );
}
