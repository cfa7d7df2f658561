import { BuildError } from '../../../solver/build-error';
import {
  Platform,
  formatPlatform,
  hostPlatform,
  normalizePlatform,
  parsePlatform,
  parsePlatformList,
  pickManifest,
  platformDirName,
  platformId,
  platformMatcher,
} from '../../../store/platforms';

const p = (os: string, architecture: string, variant?: string): Platform =>
  variant === undefined ? { os, architecture } : { os, architecture, variant };
const ids = (list: readonly Platform[]): string[] => list.map(formatPlatform);

describe('parsePlatform', () => {
  it('splits os/arch[/variant] and lower-cases, without normalizing', () => {
    expect(parsePlatform('linux/arm64')).toEqual(p('linux', 'arm64'));
    expect(parsePlatform('linux/arm/v7')).toEqual(p('linux', 'arm', 'v7'));
    expect(parsePlatform('Linux/AMD64')).toEqual(p('linux', 'amd64'));
    expect(parsePlatform('linux/aarch64/v8')).toEqual(p('linux', 'aarch64', 'v8'));
    expect(parsePlatform('linux/x86_64')).toEqual(p('linux', 'x86_64'));
  });

  it('takes a known architecture alone as linux/<arch>', () => {
    expect(parsePlatform('arm64')).toEqual(p('linux', 'arm64'));
    expect(parsePlatform('aarch64')).toEqual(p('linux', 'aarch64'));
    expect(parsePlatform('armhf')).toEqual(p('linux', 'armhf'));
  });

  it("takes a known OS alone with the host's architecture", () => {
    expect(parsePlatform('linux', p('linux', 'arm', 'v7'))).toEqual(p('linux', 'arm', 'v7'));
    expect(parsePlatform('windows', p('linux', 'amd64'))).toEqual(p('windows', 'amd64'));
  });

  it.each([
    ['', /it is empty/],
    ['linux/', /empty part/],
    ['/amd64', /empty part/],
    ['linux//v7', /empty part/],
    ['linux/arm/v7/extra', /more than 3 parts/],
    ['linux/arm 64', /characters other than/],
    ['linux/*', /characters other than/],
    ['windows(10.0.17763)/amd64', /characters other than/],
    ['frobnicator', /not a known operating system or architecture/],
  ])('refuses %j naming it', (spec, why) => {
    let err: unknown;
    try {
      parsePlatform(spec);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BuildError);
    expect((err as BuildError).code).toBe('invalid-argument');
    expect((err as BuildError).message).toContain(`Cannot parse platform ${JSON.stringify(spec)}`);
    expect((err as BuildError).message).toMatch(why);
  });
});

describe('normalizePlatform', () => {
  it.each([
    [p('linux', 'i386'), 'linux/386'],
    [p('linux', 'i386', 'v6'), 'linux/386'],
    [p('linux', 'x86_64'), 'linux/amd64'],
    [p('linux', 'x86-64', 'v1'), 'linux/amd64'],
    [p('linux', 'amd64', 'v1'), 'linux/amd64'],
    [p('linux', 'amd64', 'v3'), 'linux/amd64/v3'],
    [p('linux', 'aarch64'), 'linux/arm64'],
    [p('linux', 'arm64', '8'), 'linux/arm64'],
    [p('linux', 'arm64', 'v8'), 'linux/arm64'],
    [p('linux', 'arm64', 'v8.0'), 'linux/arm64'],
    [p('linux', 'arm64', 'v8.2'), 'linux/arm64/v8.2'],
    [p('linux', 'arm64', '9'), 'linux/arm64/v9'],
    [p('linux', 'arm64', '9.0'), 'linux/arm64/v9'],
    [p('linux', 'arm64', 'v9.0'), 'linux/arm64/v9'],
    [p('linux', 'armhf'), 'linux/arm/v7'],
    [p('linux', 'armhf', 'v6'), 'linux/arm/v7'],
    [p('linux', 'armel'), 'linux/arm/v6'],
    [p('linux', 'arm'), 'linux/arm/v7'],
    [p('linux', 'arm', ''), 'linux/arm/v7'],
    [p('linux', 'arm', '7'), 'linux/arm/v7'],
    [p('linux', 'arm', '5'), 'linux/arm/v5'],
    [p('linux', 'arm', '6'), 'linux/arm/v6'],
    [p('linux', 'arm', '8'), 'linux/arm/v8'],
    [p('linux', 'arm', 'V6'), 'linux/arm/v6'],
    [p('Linux', 'AMD64'), 'linux/amd64'],
    [p('macos', 'arm64'), 'darwin/arm64'],
    [p('linux', 'riscv64', ''), 'linux/riscv64'],
    [p('linux', 'ppc64le'), 'linux/ppc64le'],
  ])('%j is %s', (given, want) => {
    expect(formatPlatform(normalizePlatform(given))).toBe(want);
  });

  it('leaves no empty variant behind', () => {
    expect(normalizePlatform(p('linux', 'amd64', ''))).toEqual({ os: 'linux', architecture: 'amd64' });
    expect('variant' in normalizePlatform(p('linux', 'arm64', 'v8'))).toBe(false);
  });

  it('keeps only os, architecture and variant of an index platform', () => {
    const indexPlatform = { os: 'linux', architecture: 'arm', variant: 'v7', 'os.version': '1', 'os.features': ['x'] };
    expect(normalizePlatform(indexPlatform)).toEqual(p('linux', 'arm', 'v7'));
  });
});

describe('platformId and platformDirName', () => {
  it('are the normalized form, with / as _ for folder names', () => {
    expect(platformId(p('linux', 'arm'))).toBe('linux/arm/v7');
    expect(platformId(p('linux', 'aarch64', 'v8'))).toBe('linux/arm64');
    expect(platformDirName(p('linux', 'arm'))).toBe('linux_arm_v7');
    expect(platformDirName(p('linux', 'amd64'))).toBe('linux_amd64');
    expect(platformDirName(p('linux', 'arm64', 'v8'))).toBe('linux_arm64');
  });
});

describe('parsePlatformList', () => {
  it('parses, trims and normalizes each item, in order', () => {
    expect(ids(parsePlatformList('linux/amd64,linux/arm64'))).toEqual(['linux/amd64', 'linux/arm64']);
    expect(ids(parsePlatformList(' linux/arm , linux/aarch64/v8 ,linux/386'))).toEqual([
      'linux/arm/v7',
      'linux/arm64',
      'linux/386',
    ]);
    expect(ids(parsePlatformList('linux/arm64'))).toEqual(['linux/arm64']);
  });

  it('refuses two items that are the same platform once normalized', () => {
    expect(() => parsePlatformList('linux/arm64,linux/arm64/v8')).toThrow(
      'Cannot parse platform list "linux/arm64,linux/arm64/v8": linux/arm64 and linux/arm64/v8 are the same platform (linux/arm64)',
    );
    expect(() => parsePlatformList('linux/arm,linux/arm/v7')).toThrow(/same platform \(linux\/arm\/v7\)/);
    expect(() => parsePlatformList('linux/amd64,linux/amd64')).toThrow(BuildError);
  });

  it('refuses an empty list and an empty item', () => {
    expect(() => parsePlatformList('')).toThrow('Cannot parse platform list: it is empty');
    expect(() => parsePlatformList('  ')).toThrow('Cannot parse platform list: it is empty');
    expect(() => parsePlatformList('linux/amd64,')).toThrow(/it has an empty item/);
    expect(() => parsePlatformList('linux/amd64,,linux/arm64')).toThrow(/it has an empty item/);
  });

  it('passes on a malformed item as an invalid-argument error', () => {
    expect(() => parsePlatformList('linux/amd64,linux/a/b/c')).toThrow(/Cannot parse platform "linux\/a\/b\/c"/);
  });
});

describe('platformMatcher', () => {
  it('accepts arm/v7, then v6 and v5, in that order', () => {
    expect(ids(platformMatcher(p('linux', 'arm', 'v7')).platforms)).toEqual(['linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']);
    expect(ids(platformMatcher(p('linux', 'arm')).platforms)).toEqual(['linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']);
    expect(ids(platformMatcher(p('linux', 'arm', 'v6')).platforms)).toEqual(['linux/arm/v6', 'linux/arm/v5']);
    expect(ids(platformMatcher(p('linux', 'arm', 'v5')).platforms)).toEqual(['linux/arm/v5']);
    expect(ids(platformMatcher(p('linux', 'arm', 'v8')).platforms)).toEqual(['linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']);
  });

  it('accepts arm64, then arm/v8 down to arm/v5', () => {
    const want = ['linux/arm64', 'linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5'];
    expect(ids(platformMatcher(p('linux', 'arm64')).platforms)).toEqual(want);
    expect(ids(platformMatcher(p('linux', 'aarch64', 'v8')).platforms)).toEqual(want);
  });

  it('accepts older arm64 variants before arm for an arm64/v8.x or v9.x, as containerd does', () => {
    expect(ids(platformMatcher(p('linux', 'arm64', 'v8.2')).platforms).slice(0, 4)).toEqual([
      'linux/arm64/v8.2',
      'linux/arm64/v8.1',
      'linux/arm64',
      'linux/arm/v8',
    ]);
    expect(ids(platformMatcher(p('linux', 'arm64', 'v9.1')).platforms).slice(0, 9)).toEqual([
      'linux/arm64/v9.1',
      'linux/arm64/v9',
      'linux/arm64/v8.6',
      'linux/arm64/v8.5',
      'linux/arm64/v8.4',
      'linux/arm64/v8.3',
      'linux/arm64/v8.2',
      'linux/arm64/v8.1',
      'linux/arm64',
    ]);
  });

  it('accepts only itself for an arm64 variant containerd does not know', () => {
    expect(ids(platformMatcher(p('linux', 'arm64', 'v10')).platforms)).toEqual(['linux/arm64/v10']);
  });

  it('accepts amd64 and then 386, last', () => {
    expect(ids(platformMatcher(p('linux', 'amd64')).platforms)).toEqual(['linux/amd64', 'linux/386']);
    expect(ids(platformMatcher(p('linux', 'x86_64', 'v1')).platforms)).toEqual(['linux/amd64', 'linux/386']);
    expect(ids(platformMatcher(p('linux', 'amd64', 'v3')).platforms)).toEqual([
      'linux/amd64/v3',
      'linux/amd64/v2',
      'linux/amd64',
      'linux/386',
    ]);
  });

  it('accepts only itself for anything else', () => {
    expect(ids(platformMatcher(p('linux', '386')).platforms)).toEqual(['linux/386']);
    expect(ids(platformMatcher(p('linux', 'riscv64')).platforms)).toEqual(['linux/riscv64']);
    expect(ids(platformMatcher(p('windows', 'arm64')).platforms)).toEqual(['windows/arm64', 'windows/arm/v8', 'windows/arm/v7', 'windows/arm/v6', 'windows/arm/v5']);
  });

  it('normalizes the candidate and compares exactly', () => {
    const m = platformMatcher(p('linux', 'arm64'));
    expect(m.match(p('linux', 'arm64', 'v8'))).toBe(true);
    expect(m.match(p('linux', 'aarch64'))).toBe(true);
    expect(m.match(p('linux', 'arm'))).toBe(true);
    expect(m.match(p('linux', 'amd64'))).toBe(false);
    expect(m.match(p('windows', 'arm64'))).toBe(false);
    expect(m.rank(p('linux', 'arm64', 'v8'))).toBe(0);
    expect(m.rank(p('linux', 'arm', 'v7'))).toBe(2);
    expect(m.rank(p('linux', 'armel'))).toBe(3);
    expect(m.rank(p('linux', 's390x'))).toBe(Infinity);
    const arm7 = platformMatcher(p('linux', 'arm', 'v7'));
    expect(arm7.match(p('linux', 'arm'))).toBe(true);
    expect(arm7.match(p('linux', 'arm', 'v8'))).toBe(false);
    expect(arm7.match(p('linux', 'arm64'))).toBe(false);
    expect(platformMatcher(p('linux', '386')).match(p('linux', 'amd64'))).toBe(false);
  });
});

describe('pickManifest', () => {
  type Entry = { digest: string; platform?: { os: string; architecture: string; variant?: string } };
  const index: Entry[] = [
    { digest: 'none' },
    { digest: 'arm5', platform: p('linux', 'arm', 'v5') },
    { digest: 'arm6', platform: p('linux', 'arm', 'v6') },
    { digest: '386', platform: p('linux', '386') },
    { digest: 'amd64', platform: p('linux', 'amd64') },
    { digest: 'arm64', platform: p('linux', 'arm64', 'v8') },
    { digest: 'arm64-again', platform: p('linux', 'aarch64') },
  ];

  it('picks the best-ranked entry, the first in index order among equals', () => {
    expect(pickManifest(index, p('linux', 'amd64'))?.digest).toBe('amd64');
    expect(pickManifest(index, p('linux', 'arm64'))?.digest).toBe('arm64');
    expect(pickManifest(index, p('linux', 'arm', 'v7'))?.digest).toBe('arm6');
    expect(pickManifest(index, p('linux', 'arm', 'v5'))?.digest).toBe('arm5');
    expect(pickManifest(index, p('linux', '386'))?.digest).toBe('386');
  });

  it('falls back to 386 for amd64 and to arm for arm64', () => {
    expect(pickManifest(index.filter((e) => e.digest !== 'amd64'), p('linux', 'amd64'))?.digest).toBe('386');
    expect(pickManifest(index.filter((e) => !e.digest.startsWith('arm64')), p('linux', 'arm64'))?.digest).toBe('arm6');
  });

  it('ignores entries without a platform and returns undefined when none matches', () => {
    expect(pickManifest(index, p('linux', 's390x'))).toBeUndefined();
    expect(pickManifest<Entry>([{ digest: 'none' }], p('linux', 'amd64'))).toBeUndefined();
    expect(pickManifest([], p('linux', 'amd64'))).toBeUndefined();
  });
});

describe('hostPlatform', () => {
  it.each([
    ['x64', 'LE', 'linux/amd64'],
    ['arm64', 'LE', 'linux/arm64'],
    ['arm', 'LE', 'linux/arm/v7'],
    ['ia32', 'LE', 'linux/386'],
    ['ppc64', 'LE', 'linux/ppc64le'],
    ['ppc64', 'BE', 'linux/ppc64'],
    ['s390x', 'BE', 'linux/s390x'],
    ['riscv64', 'LE', 'linux/riscv64'],
    ['loong64', 'LE', 'linux/loong64'],
    ['mips64el', 'LE', 'linux/mips64le'],
  ] as const)('maps Node arch %s (%s) to %s', (arch, order, want) => {
    expect(formatPlatform(hostPlatform(arch, order))).toBe(want);
  });

  it('defaults to this process, already normalized', () => {
    const host = hostPlatform();
    expect(host.os).toBe('linux');
    expect(normalizePlatform(host)).toEqual(host);
  });
});
