import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { getAttribute, setAttribute } from '@napi-rs/xattr';
import { walkContext, type WalkEntry } from '../../buildctl/context-walk';
import { clientMessageSchema, type FileEntryMessage } from '../../buildd/api/messages';
import { LocalsReceiver } from '../../buildd/locals-receiver';
import { BuildError } from '../../solver/build-error';
import { checksumPaths } from '../../store/content-checksum';
import { readXattrs } from '../../store/xattrs';

/** Root only: security.capability needs CAP_SETFCAP, trusted.* needs CAP_SYS_ADMIN. */
const CAP = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
const CAP_NET_RAW = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

let tmp: string;

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-ctx-xattrs-'));
});

afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function walk(dir: string): Promise<Record<string, WalkEntry>> {
  const out: Record<string, WalkEntry> = {};
  for await (const e of walkContext(dir)) out[e.rel] = e;
  return out;
}

describe('the context walk reads the attributes it sends', () => {
  test('user.* and security.capability of files and dirs, of a symlink itself; never trusted.* or an SELinux label', async () => {
    const ctx = path.join(tmp, 'walk');
    await fsp.mkdir(path.join(ctx, 'dir'), { recursive: true });
    await fsp.writeFile(path.join(ctx, 'dir', 'ping'), 'p');
    await setAttribute(path.join(ctx, 'dir', 'ping'), 'security.capability', CAP);
    await setAttribute(path.join(ctx, 'dir', 'ping'), 'user.note', 'hello');
    await setAttribute(path.join(ctx, 'dir', 'ping'), 'trusted.overlay.opaque', 'y');
    await setAttribute(path.join(ctx, 'dir', 'ping'), 'security.selinux', 'system_u:object_r:bin_t:s0');
    await setAttribute(path.join(ctx, 'dir'), 'user.dir', 'd');
    await fsp.writeFile(path.join(ctx, 'plain'), 'x');
    // a symlink to an attributed file: the link itself has no user.* (the kernel allows none)
    await fsp.symlink('dir/ping', path.join(ctx, 'link'));
    await setAttribute(path.join(ctx, 'link'), 'trusted.mark', 'm');

    const entries = await walk(ctx);
    expect(entries['dir/ping'].xattrs).toEqual(new Map([['security.capability', CAP], ['user.note', Buffer.from('hello')]]));
    expect(entries['dir'].xattrs).toEqual(new Map([['user.dir', Buffer.from('d')]]));
    expect(entries['plain'].xattrs).toEqual(new Map());
    expect(entries['link'].xattrs).toEqual(new Map());
    // what the walk yields is what the daemon accepts
    for (const e of Object.values(entries)) {
      const msg = { msg: 'entry', entry: { local: 'context', path: e.rel, type: e.type, mode: e.mode, uid: 0, gid: 0, mtime_ms: e.mtimeMs, link_target: e.linkTarget, size: e.size, xattrs: Object.fromEntries(e.xattrs) } };
      expect(clientMessageSchema.safeParse(msg).success).toBe(true);
    }
  });
});

describe('the receiver sets the attributes of what it writes', () => {
  function entry(p: string, type: FileEntryMessage['type'], xattrs: Record<string, Buffer>, extra: Partial<FileEntryMessage> = {}): FileEntryMessage {
    return { local: 'context', path: p, type, mode: type === 'DIR' ? 0o755 : 0o644, uid: 1000, gid: 1000, mtime_ms: 1_700_000_000_000, link_target: '', size: 0, xattrs, ...extra };
  }

  test('a file keeps its capability through the chown to its owner; a dir its user.*; a symlink drops user.* silently', async () => {
    const session = path.join(tmp, 'session');
    const rx = new LocalsReceiver(session, ['context']);
    await rx.prepare();
    await rx.entry(entry('bin', 'DIR', { 'user.dir': Buffer.from('d') }, { mode: 0o555 }));
    await rx.entry(entry('bin/ping', 'FILE', { 'security.capability': CAP, 'user.note': Buffer.from('hello') }, { mode: 0o444, size: 1 }));
    await rx.data(Buffer.from('p'));
    await rx.entry(entry('bin/empty', 'FILE', { 'security.capability': CAP_NET_RAW }, { mode: 0o755 }));
    await rx.entry(entry('bin/sym', 'SYMLINK', { 'user.x': Buffer.from('x') }, { link_target: 'ping' }));
    await rx.finish();

    const root = path.join(session, 'context');
    expect(await readXattrs(path.join(root, 'bin/ping'))).toEqual(new Map([['security.capability', CAP], ['user.note', Buffer.from('hello')]]));
    expect(await getAttribute(path.join(root, 'bin/empty'), 'security.capability')).toEqual(CAP_NET_RAW);
    expect(await readXattrs(path.join(root, 'bin'))).toEqual(new Map([['user.dir', Buffer.from('d')]]));
    expect(await readXattrs(path.join(root, 'bin/sym'))).toEqual(new Map());
    const st = await fsp.stat(path.join(root, 'bin/ping'));
    expect([st.uid, st.gid, (st.mode & 0o7777).toString(8)]).toEqual([1000, 1000, '444']);
  });

  test('a capability the kernel refuses fails the build naming the entry', async () => {
    const rx = new LocalsReceiver(path.join(tmp, 'session-bad'), ['context']);
    await rx.prepare();
    const err: unknown = await rx.entry(entry('bad', 'FILE', { 'security.capability': Buffer.from('bad') })).catch((e: unknown) => e);
    await rx.abort();
    expect(err).toBeInstanceOf(BuildError);
    expect((err as BuildError).code).toBe('invalid-argument');
    expect((err as BuildError).message).toMatch(/^Cannot receive context\/bad: its extended attribute security\.capability cannot be set: /);
  });
});

describe("COPY's content checksum covers the attributes BuildKit's checksum covers", () => {
  test('a change of security.capability or user.* alone changes the key; trusted.overlay.* and other security.* do not', async () => {
    const root = path.join(tmp, 'sum');
    await fsp.mkdir(path.join(root, 'd'), { recursive: true });
    await fsp.writeFile(path.join(root, 'f'), 'f');
    await fsp.writeFile(path.join(root, 'd', 'inner'), 'i');
    const key = async (): Promise<string[]> => [await checksumPaths(root, ['f']), await checksumPaths(root, ['d'])];

    const plain = await key();
    await setAttribute(path.join(root, 'f'), 'security.capability', CAP);
    await setAttribute(path.join(root, 'd', 'inner'), 'security.capability', CAP);
    const capped = await key();
    expect(capped[0]).not.toBe(plain[0]);
    expect(capped[1]).not.toBe(plain[1]);

    await setAttribute(path.join(root, 'f'), 'security.capability', CAP_NET_RAW);
    await setAttribute(path.join(root, 'd', 'inner'), 'security.capability', CAP_NET_RAW);
    const netRaw = await key();
    expect(netRaw[0]).not.toBe(capped[0]);
    expect(netRaw[1]).not.toBe(capped[1]);

    await setAttribute(path.join(root, 'f'), 'user.note', 'a');
    await setAttribute(path.join(root, 'd', 'inner'), 'user.note', 'a');
    const noted = await key();
    expect(noted[0]).not.toBe(netRaw[0]);
    expect(noted[1]).not.toBe(netRaw[1]);

    for (const f of ['f', 'd/inner']) {
      await setAttribute(path.join(root, f), 'trusted.overlay.origin', 'o');
      await setAttribute(path.join(root, f), 'security.selinux', 'system_u:object_r:bin_t:s0');
    }
    expect(await key()).toEqual(noted);
  });
});
