import { clientMessageSchema, describeZodError } from '../../../buildd/api/messages';

/** A FileEntry as load-proto.ts decodes it, with the given xattrs (bytes as Buffer). */
function entry(xattrs: Record<string, Buffer> | undefined, type: 'FILE' | 'DIR' | 'SYMLINK' = 'FILE'): unknown {
  return {
    msg: 'entry',
    entry: {
      local: 'context',
      path: 'bin/ping',
      type,
      mode: 0o755,
      uid: 0,
      gid: 0,
      mtime_ms: 1_700_000_000_000,
      link_target: type === 'SYMLINK' ? 'x' : '',
      size: 0,
      ...(xattrs === undefined ? {} : { xattrs }),
    },
  };
}

/** The error the daemon answers with, or the parsed xattrs. */
function check(msg: unknown): string | Record<string, Buffer> {
  const parsed = clientMessageSchema.safeParse(msg);
  if (!parsed.success) return `Cannot accept a message: ${describeZodError(parsed.error)}`;
  if (parsed.data.msg !== 'entry') throw new Error('not an entry');
  return parsed.data.entry.xattrs;
}

/** v2 file capability (effective, cap_setuid + cap_net_raw): binary, bytes >= 0x80. */
const CAP = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

describe('FileEntry.xattrs validation', () => {
  test('user.* and security.capability of a file are accepted byte for byte', () => {
    const xattrs = { 'security.capability': CAP, 'user.note': Buffer.from('hello') };
    expect(check(entry(xattrs))).toEqual(xattrs);
  });

  test('an entry without the field has no attributes (a client that predates it)', () => {
    expect(check(entry(undefined))).toEqual({});
  });

  test('trusted.* is refused: a client must not forge overlayfs whiteouts or opaque directories', () => {
    expect(check(entry({ 'trusted.overlay.opaque': Buffer.from('y') }, 'DIR'))).toBe(
      'Cannot accept a message: entry.xattrs: extended attribute trusted.overlay.opaque refused: trusted.* attributes are never taken from a client',
    );
    expect(check(entry({ 'user.ok': Buffer.from('1'), 'trusted.x': Buffer.from('1') }))).toBe(
      'Cannot accept a message: entry.xattrs: extended attribute trusted.x refused: trusted.* attributes are never taken from a client',
    );
  });

  test('other security.* and system.* names are refused', () => {
    for (const name of ['security.selinux', 'security.ima', 'system.posix_acl_access', 'com.apple.quarantine', 'user.']) {
      expect(check(entry({ [name]: Buffer.from('v') }))).toBe(
        `Cannot accept a message: entry.xattrs: extended attribute ${name} refused: only user.* and security.capability are accepted`,
      );
    }
  });

  test('security.capability only on a file, as the kernel takes it', () => {
    expect(check(entry({ 'security.capability': CAP }, 'DIR'))).toBe('Cannot accept a message: entry: Only a file has security.capability');
    expect(check(entry({ 'security.capability': CAP }, 'SYMLINK'))).toBe('Cannot accept a message: entry: Only a file has security.capability');
  });

  test('sizes are capped: 64 KiB of names and values, 256 attributes, names of 255 bytes', () => {
    expect(check(entry({ 'user.big': Buffer.alloc(64 * 1024 - 'user.big'.length) }))).toEqual({ 'user.big': Buffer.alloc(64 * 1024 - 8) });
    expect(check(entry({ 'user.big': Buffer.alloc(64 * 1024) }))).toBe('Cannot accept a message: entry.xattrs: Extended attributes larger than 65536 bytes');
    const many = Object.fromEntries(Array.from({ length: 257 }, (_, i) => [`user.a${i}`, Buffer.from('v')]));
    expect(check(entry(many))).toBe('Cannot accept a message: entry.xattrs: More than 256 extended attributes');
    expect(Object.keys(check(entry({ [`user.${'n'.repeat(250)}`]: Buffer.from('v') })))).toEqual([`user.${'n'.repeat(250)}`]);
    expect(check(entry({ [`user.${'n'.repeat(251)}`]: Buffer.from('v') }))).toBe(
      'Cannot accept a message: entry.xattrs: extended attribute name longer than 255 bytes',
    );
  });

  test('a value must be bytes', () => {
    expect(check(entry({ 'user.note': 'text' as unknown as Buffer }))).toMatch(/^Cannot accept a message: entry\.xattrs\.user\.note: /);
  });
});
