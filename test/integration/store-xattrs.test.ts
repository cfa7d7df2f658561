import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { getAttribute, setAttribute } from '@napi-rs/xattr';
import { BuildError } from '../../solver/build-error';
import { copyXattrs, readXattrs, writeXattrs } from '../../store/xattrs';

/** Root only: security.* and trusted.* attributes need CAP_SETFCAP and CAP_SYS_ADMIN. */
let tmp: string;
const CAP = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'buildd-xattrs-'));
});

afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('readXattrs', () => {
  it('reads every attribute as bytes, names in byte order, and only the wanted ones when asked', async () => {
    const f = path.join(tmp, 'f');
    await fsp.writeFile(f, 'f');
    await setAttribute(f, 'user.b', Buffer.from([0xff, 0x00]));
    await setAttribute(f, 'user.a', '');
    await setAttribute(f, 'security.capability', CAP);
    const all = await readXattrs(f);
    expect([...all.keys()]).toEqual(['security.capability', 'user.a', 'user.b']);
    expect(all.get('user.b')).toEqual(Buffer.from([0xff, 0x00]));
    expect(all.get('user.a')).toEqual(Buffer.alloc(0));
    expect(await readXattrs(f, (n) => n === 'security.capability')).toEqual(new Map([['security.capability', CAP]]));
  });

  it("never reads through a symlink: a symlink's own attributes, not its target's", async () => {
    const target = path.join(tmp, 'target');
    await fsp.writeFile(target, 't');
    await setAttribute(target, 'user.secret', 'x');
    await fsp.symlink(target, path.join(tmp, 'link'));
    expect(await readXattrs(path.join(tmp, 'link'))).toEqual(new Map());
  });

  it('fails on a path it cannot read, where getAttribute alone would answer null', async () => {
    const missing = path.join(tmp, 'missing');
    expect(await getAttribute(missing, 'user.a')).toBeNull();
    const err: unknown = await readXattrs(missing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect(err).toMatchObject({ code: 'internal', message: `Cannot read extended attributes of ${missing}: No such file or directory (os error 2)` });
  });
});

describe('writeXattrs and copyXattrs', () => {
  it('never writes trusted.overlay.* or user.overlay.* (a rootless mount reads those), skips what the kernel refuses on a symlink, sets the rest exactly', async () => {
    const d = path.join(tmp, 'd');
    await fsp.mkdir(d);
    await writeXattrs(d, new Map([['trusted.overlay.opaque', Buffer.from('y')], ['user.a', Buffer.from('1')], ['user.overlay.opaque', Buffer.from('y')], ['user.overlay.redirect', Buffer.from('/x')]]));
    expect(await readXattrs(d)).toEqual(new Map([['user.a', Buffer.from('1')]]));
    const skipped: string[] = [];
    await fsp.symlink('d', path.join(tmp, 'sym'));
    await writeXattrs(path.join(tmp, 'sym'), new Map([['user.a', Buffer.from('1')]]), { onSkipped: (name, code) => skipped.push(`${name} ${code}`) });
    expect(skipped).toEqual(['user.a EPERM']);
  });

  it('fails rather than drop a security.capability the kernel refuses', async () => {
    const f = path.join(tmp, 'badcap');
    await fsp.writeFile(f, 'f');
    await expect(writeXattrs(f, new Map([['security.capability', Buffer.from('bad')]]))).rejects.toThrow(
      `Cannot set extended attribute security.capability of ${f}: Invalid argument (os error 22)`,
    );
  });

  it('copies all attributes but overlayfs own ones', async () => {
    const src = path.join(tmp, 'src');
    const dest = path.join(tmp, 'dest');
    await fsp.writeFile(src, 's');
    await fsp.writeFile(dest, 's');
    await setAttribute(src, 'security.capability', CAP);
    await setAttribute(src, 'user.note', 'hello');
    await setAttribute(src, 'trusted.overlay.origin', 'x');
    await setAttribute(src, 'user.overlay.opaque', 'y');
    await copyXattrs(src, dest);
    expect(await readXattrs(dest)).toEqual(new Map([['security.capability', CAP], ['user.note', Buffer.from('hello')]]));
  });
});
