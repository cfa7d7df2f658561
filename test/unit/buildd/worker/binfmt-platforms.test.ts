import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import {
  EmulatedPlatform,
  elfMagicPlatform,
  emulatedPlatforms,
  missingEmulatorMessage,
  parseBinfmtEntry,
  runnablePlatforms,
} from '../../../../buildd/worker/binfmt-platforms';
import { Platform, formatPlatform } from '../../../../store/platforms';

/** A handler file as the kernel prints it. */
function entry(state: string, interpreter: string, flags: string, magic: string, mask: string): string {
  return `${state}\ninterpreter ${interpreter}\nflags: ${flags}\noffset 0\nmagic ${magic}\nmask ${mask}\n`;
}

const ELF_MASK = 'ffffffffffffff00fffffffffffffffffeffffff';
const AARCH64 = entry('enabled', '/usr/libexec/qemu-binfmt/aarch64-binfmt-P', 'OPF', '7f454c460201010000000000000000000200b700', ELF_MASK);
const ARM = entry('enabled', '/usr/libexec/qemu-binfmt/arm-binfmt-P', 'OPF', '7f454c4601010100000000000000000002002800', ELF_MASK);
const RISCV64 = entry('enabled', '/usr/libexec/qemu-binfmt/riscv64-binfmt-P', 'OPF', '7f454c460201010000000000000000000200f300', ELF_MASK);
const S390X = entry('enabled', '/usr/libexec/qemu-binfmt/s390x-binfmt-P', 'OPF', '7f454c46020201000000000000000000000200' + '16', 'ffffffffffffff00fffffffffffffffffffeffff');
const PPC64LE_NO_F = entry('enabled', '/usr/bin/qemu-ppc64le', 'OC', '7f454c460201010000000000000000000200' + '1500', ELF_MASK);
const MIPS64EL_DISABLED = entry('disabled', '/usr/libexec/qemu-binfmt/mips64el-binfmt-P', 'OPF', '7f454c460201010000000000000000000200' + '0800', ELF_MASK);
const PYTHON_EXTENSION = 'enabled\ninterpreter /usr/bin/python3.11\nflags: \nextension .pyc\n';

const p = (os: string, architecture: string, variant?: string): Platform =>
  variant === undefined ? { os, architecture } : { os, architecture, variant };

describe('parseBinfmtEntry', () => {
  it("reads Debian's qemu-aarch64 handler", () => {
    expect(parseBinfmtEntry('qemu-aarch64', AARCH64)).toEqual({
      name: 'qemu-aarch64',
      enabled: true,
      interpreter: '/usr/libexec/qemu-binfmt/aarch64-binfmt-P',
      flags: 'OPF',
      offset: 0,
      magic: Buffer.from('7f454c460201010000000000000000000200b700', 'hex'),
      mask: Buffer.from(ELF_MASK, 'hex'),
    });
  });

  it('reads a disabled handler and one without flags or mask', () => {
    expect(parseBinfmtEntry('qemu-mips64el', MIPS64EL_DISABLED)?.enabled).toBe(false);
    const bare = parseBinfmtEntry('x', 'enabled\ninterpreter /bin/x\nflags: \noffset 2\nmagic 4142\n');
    expect(bare).toEqual({ name: 'x', enabled: true, interpreter: '/bin/x', flags: '', offset: 2, magic: Buffer.from('AB') });
  });

  it('ignores extension handlers, the status file and garbage', () => {
    expect(parseBinfmtEntry('python3.11', PYTHON_EXTENSION)).toBeUndefined();
    expect(parseBinfmtEntry('status', 'enabled\n')).toBeUndefined();
    expect(parseBinfmtEntry('x', '')).toBeUndefined();
    expect(parseBinfmtEntry('x', 'maybe\ninterpreter /bin/x\nmagic 41\n')).toBeUndefined();
    expect(parseBinfmtEntry('x', 'enabled\ninterpreter /bin/x\nmagic 4g\n')).toBeUndefined();
    expect(parseBinfmtEntry('x', 'enabled\ninterpreter /bin/x\noffset -1\nmagic 41\n')).toBeUndefined();
  });
});

describe('elfMagicPlatform', () => {
  const magic = (cls: number, data: number, machine: [number, number]): Buffer => {
    const b = Buffer.alloc(20);
    Buffer.from('7f454c46', 'hex').copy(b);
    b[4] = cls;
    b[5] = data;
    b[6] = 1;
    b[16] = data === 1 ? 2 : 0;
    b[17] = data === 1 ? 0 : 2;
    b[18] = machine[0];
    b[19] = machine[1];
    return b;
  };

  it.each([
    [2, 1, [0xb7, 0], 'linux/arm64'],
    [1, 1, [0x28, 0], 'linux/arm/v7'],
    [2, 1, [0x3e, 0], 'linux/amd64'],
    [1, 1, [0x03, 0], 'linux/386'],
    [2, 1, [0xf3, 0], 'linux/riscv64'],
    [2, 1, [0x15, 0], 'linux/ppc64le'],
    [2, 2, [0, 0x16], 'linux/s390x'],
    [2, 1, [0x08, 0], 'linux/mips64le'],
    [2, 1, [0x02, 0x01], 'linux/loong64'],
  ] as const)('class %d data %d machine %j is %s', (cls, data, machine, want) => {
    const got = elfMagicPlatform(magic(cls, data, [machine[0], machine[1]]));
    expect(got && formatPlatform(got)).toBe(want);
  });

  it.each([
    ['aarch64_be', magic(2, 2, [0, 0xb7])],
    ['armeb', magic(1, 2, [0, 0x28])],
    ['riscv32', magic(1, 1, [0xf3, 0])],
    ['ppc64 (big-endian)', magic(2, 2, [0, 0x15])],
    ['mipsn32el', magic(1, 1, [0x08, 0])],
    ['sparc64', magic(2, 2, [0, 0x2b])],
    ['a bad class', magic(3, 1, [0xb7, 0])],
    ['a short magic', magic(2, 1, [0xb7, 0]).subarray(0, 19)],
    ['not ELF', Buffer.from('4d5a900003000000040000000000000000000000', 'hex')],
  ])('knows no platform for %s', (_what, m) => {
    expect(elfMagicPlatform(m)).toBeUndefined();
  });
});

describe('emulatedPlatforms', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'binfmt-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('lists enabled ELF handlers, arm as v7 and v6, sorted by name', async () => {
    writeFileSync(path.join(dir, 'status'), 'enabled\n');
    writeFileSync(path.join(dir, 'register'), '');
    chmodSync(path.join(dir, 'register'), 0o200);
    writeFileSync(path.join(dir, 'qemu-aarch64'), AARCH64);
    writeFileSync(path.join(dir, 'qemu-arm'), ARM);
    writeFileSync(path.join(dir, 'qemu-ppc64le'), PPC64LE_NO_F);
    writeFileSync(path.join(dir, 'qemu-mips64el'), MIPS64EL_DISABLED);
    writeFileSync(path.join(dir, 'python3.11'), PYTHON_EXTENSION);
    writeFileSync(path.join(dir, 'qemu-s390x'), S390X);
    writeFileSync(path.join(dir, 'qemu-riscv64'), RISCV64.replace('offset 0', 'offset 4'));
    mkdirSync(path.join(dir, 'a-folder'));
    const got = await emulatedPlatforms(dir);
    expect(got.map((e) => [formatPlatform(e.platform), e.name, e.fixBinary])).toEqual([
      ['linux/arm64', 'qemu-aarch64', true],
      ['linux/arm/v7', 'qemu-arm', true],
      ['linux/arm/v6', 'qemu-arm', true],
      ['linux/ppc64le', 'qemu-ppc64le', false],
      ['linux/s390x', 'qemu-s390x', true],
    ]);
    expect(got[0].interpreter).toBe('/usr/libexec/qemu-binfmt/aarch64-binfmt-P');
  });

  it('finds none in a folder with only the control files, or no folder', async () => {
    writeFileSync(path.join(dir, 'status'), 'enabled\n');
    expect(await emulatedPlatforms(dir)).toEqual([]);
    expect(await emulatedPlatforms(path.join(dir, 'missing'))).toEqual([]);
    expect(await emulatedPlatforms(path.join(dir, 'status'))).toEqual([]);
  });
});

describe('runnablePlatforms', () => {
  const emu = (platform: Platform, fixBinary = true, name = 'qemu-x'): EmulatedPlatform => ({
    platform,
    name,
    interpreter: '/usr/libexec/qemu-binfmt/x',
    fixBinary,
  });

  it('lists the host and 386 on amd64, then emulated ones in BuildKit order, each once', () => {
    const emulated = [
      emu(p('linux', 'arm', 'v7')),
      emu(p('linux', 'arm', 'v6')),
      emu(p('linux', 's390x')),
      emu(p('linux', 'loong64')),
      emu(p('linux', 'arm64')),
      emu(p('linux', '386')),
      emu(p('linux', 'amd64')),
      emu(p('linux', 'riscv64')),
      emu(p('linux', 'mips64le')),
      emu(p('linux', 'ppc64le')),
      emu(p('linux', 'arm64')),
    ];
    expect(runnablePlatforms(p('linux', 'amd64'), emulated).map(formatPlatform)).toEqual([
      'linux/amd64',
      'linux/386',
      'linux/arm64',
      'linux/riscv64',
      'linux/ppc64le',
      'linux/s390x',
      'linux/mips64le',
      'linux/loong64',
      'linux/arm/v7',
      'linux/arm/v6',
    ]);
  });

  it('counts only handlers with the F flag', () => {
    const emulated = [emu(p('linux', 'arm64'), false), emu(p('linux', 'riscv64'))];
    expect(runnablePlatforms(p('linux', 'amd64'), emulated).map(formatPlatform)).toEqual(['linux/amd64', 'linux/386', 'linux/riscv64']);
  });

  it('lists an arm64 host alone when nothing is registered, and amd64 first among emulated', () => {
    expect(runnablePlatforms(p('linux', 'aarch64'), []).map(formatPlatform)).toEqual(['linux/arm64']);
    const emulated = [emu(p('linux', '386')), emu(p('linux', 'amd64'))];
    expect(runnablePlatforms(p('linux', 'arm64'), emulated).map(formatPlatform)).toEqual(['linux/arm64', 'linux/amd64', 'linux/386']);
  });
});

describe('missingEmulatorMessage', () => {
  it('names the qemu binary and how to register it', () => {
    expect(missingEmulatorMessage(p('linux', 'arm64'), p('linux', 'amd64'))).toBe(
      'Cannot build for linux/arm64 on this linux/amd64 machine: no emulator registered for it in /proc/sys/fs/binfmt_misc ' +
        "(install Debian's qemu-user-static, which provides qemu-aarch64-static, and register it with the F flag: " +
        'cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register)',
    );
  });

  it.each([
    [p('linux', 'arm', 'v7'), 'qemu-arm-static'],
    [p('linux', 'arm', 'v6'), 'qemu-arm-static'],
    [p('linux', 'riscv64'), 'qemu-riscv64-static'],
    [p('linux', 'ppc64le'), 'qemu-ppc64le-static'],
    [p('linux', 's390x'), 'qemu-s390x-static'],
    [p('linux', '386'), 'qemu-i386-static'],
    [p('linux', 'x86_64'), 'qemu-x86_64-static'],
    [p('linux', 'mips64le'), 'qemu-mips64el-static'],
    [p('linux', 'loong64'), 'qemu-loongarch64-static'],
  ])('names the emulator of %j: %s', (wanted, binary) => {
    expect(missingEmulatorMessage(wanted, p('linux', 'arm64'))).toContain(`provides ${binary},`);
  });

  it('normalizes the platforms it names', () => {
    expect(missingEmulatorMessage(p('linux', 'arm'), p('linux', 'aarch64', 'v8'))).toMatch(
      /^Cannot build for linux\/arm\/v7 on this linux\/arm64 machine: .*qemu-arm\.conf/,
    );
  });

  it('tells a handler without the F flag from none', () => {
    const registered: EmulatedPlatform[] = [
      { platform: p('linux', 'arm64'), name: 'qemu-aarch64', interpreter: '/usr/bin/qemu-aarch64-static', fixBinary: false },
    ];
    const msg = missingEmulatorMessage(p('linux', 'arm64'), p('linux', 'amd64'), { registered, dir: '/tmp/binfmt' });
    expect(msg).toContain('the emulator qemu-aarch64 in /tmp/binfmt is registered without the F (fix binary) flag');
    expect(msg).toContain('cannot find /usr/bin/qemu-aarch64-static');
    expect(msg).toContain('echo -1 > /tmp/binfmt/qemu-aarch64; cat /usr/lib/binfmt.d/qemu-aarch64.conf > /tmp/binfmt/register');
  });

  it('says when no emulator can help', () => {
    expect(missingEmulatorMessage(p('windows', 'amd64'), p('linux', 'amd64'))).toBe(
      'Cannot build for windows/amd64 on this linux/amd64 machine: buildd runs steps as linux processes only',
    );
    expect(missingEmulatorMessage(p('linux', 'sparc64'), p('linux', 'amd64'))).toMatch(/knows no qemu-user emulator for sparc64$/);
  });
});
