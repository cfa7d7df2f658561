import { getAttribute, getAttributeSync, listAttributes, listAttributesSync, setAttribute } from '@napi-rs/xattr';
import { BuildError } from '../solver/build-error';

/** Extended attributes of one path: name → raw value bytes, names in byte order. */
export type Xattrs = Map<string, Buffer>;

/** overlayfs keeps its own bookkeeping (opaque, redirect, origin, ...) under this prefix. */
export const OVERLAY_XATTR_PREFIX = 'trusted.overlay.';

/** where a rootless overlay mount (userxattr) keeps the same bookkeeping */
export const USER_OVERLAY_XATTR_PREFIX = 'user.overlay.';

/**
 * overlayfs' own attributes in either namespace. A layer, a context file or a COPY source that
 * carries one must not pass it on: in an upper or lower dir it would be read as a real marker
 * (an opaque directory hiding its lower files, a redirect), by the root mount (trusted.*) or a
 * rootless one (user.*).
 */
export function isOverlayXattr(name: string): boolean {
  return name.startsWith(OVERLAY_XATTR_PREFIX) || name.startsWith(USER_OVERLAY_XATTR_PREFIX);
}

/** The one attribute a layer tar carries, as containerd's and Docker's archive writers do. */
export const CAPABILITY_XATTR = 'security.capability';

/**
 * Reads the extended attributes of `file` that `wanted` accepts (all by default), without
 * following a symlink (a symlink in a snapshot may point anywhere on the host).
 * @napi-rs/xattr's getAttribute answers null both for a missing attribute and for any error,
 * so names are listed first (a failure to list is an error) and a listed name that then reads
 * as null is a failure too, never "absent".
 */
export async function readXattrs(file: string, wanted: (name: string) => boolean = () => true): Promise<Xattrs> {
  const out: Xattrs = new Map();
  let names: string[];
  try {
    names = await listAttributes(file);
  } catch (err) {
    throw readError(file, err);
  }
  for (const name of names.filter(wanted).sort(compareBytes)) {
    const value = await getAttribute(file, name).catch((err: unknown) => {
      throw readError(file, err);
    });
    if (value === null) throw readError(file, new Error(`${name} was listed but could not be read`));
    out.set(name, value);
  }
  return out;
}

/**
 * {@link readXattrs} in one synchronous pass: for a walk over many entries whose metadata is
 * cached, where a thread-pool round trip per call costs more than the call (a listxattr of
 * a file without attributes takes microseconds).
 */
export function readXattrsSync(file: string, wanted: (name: string) => boolean = () => true): Xattrs {
  const out: Xattrs = new Map();
  let names: string[];
  try {
    names = listAttributesSync(file);
  } catch (err) {
    throw readError(file, err);
  }
  for (const name of names.filter(wanted).sort(compareBytes)) {
    let value: Buffer | null;
    try {
      value = getAttributeSync(file, name);
    } catch (err) {
      throw readError(file, err);
    }
    if (value === null) throw readError(file, new Error(`${name} was listed but could not be read`));
    out.set(name, value);
  }
  return out;
}

/** Why {@link writeXattrs} may leave an attribute out instead of failing. */
export interface XattrWriteOptions {
  /**
   * Called for an attribute the file system or the kernel refused with ENOTSUP or EPERM (no
   * user.* on a symlink, no trusted.* without CAP_SYS_ADMIN, a file system without that
   * namespace): Docker's and containerd's unpackers skip those. Never called for
   * security.capability, whose loss would silently change what a program may do: that fails.
   */
  onSkipped?: (name: string, code: string) => void;
  /** Makes the error for an attribute that could not be set (default: a BuildError naming `file`). */
  fail?: (name: string, reason: string) => Error;
}

/**
 * Sets each attribute on `file` without following a symlink. overlayfs' own attributes
 * (trusted.overlay.*, user.overlay.*: isOverlayXattr) are never written: in an upper or lower
 * dir they would forge opaque markers or redirects.
 * Call it after the owner is set: chown drops security.capability.
 */
export async function writeXattrs(file: string, xattrs: Xattrs, options: XattrWriteOptions = {}): Promise<void> {
  for (const [name, value] of xattrs) {
    if (isOverlayXattr(name)) continue;
    try {
      await setAttribute(file, name, value);
    } catch (err) {
      const code = errnoCode(err);
      if (name !== CAPABILITY_XATTR && (code === 'ENOTSUP' || code === 'EPERM')) {
        options.onSkipped?.(name, code);
        continue;
      }
      if (options.fail) throw options.fail(name, message(err));
      throw new BuildError('internal', `Cannot set extended attribute ${name} of ${file}: ${message(err)}`, { cause: err });
    }
  }
}

/** The attributes to copy from `src` to a new file at `dest` (COPY): all but overlayfs' own. */
export async function copyXattrs(src: string, dest: string): Promise<void> {
  const xattrs = await readXattrs(src);
  if (xattrs.size > 0) await writeXattrs(dest, xattrs);
}

/** @napi-rs/xattr errors end in "(os error N)"; the errno names the few codes callers decide on. */
function errnoCode(err: unknown): string | undefined {
  const m = /\(os error (\d+)\)\s*$/.exec(message(err));
  if (!m) return undefined;
  switch (Number(m[1])) {
    case 1:
      return 'EPERM';
    case 95:
      return 'ENOTSUP';
    default:
      return `errno ${m[1]}`;
  }
}

function readError(file: string, err: unknown): BuildError {
  return new BuildError('internal', `Cannot read extended attributes of ${file}: ${message(err)}`, { cause: err });
}

/** The native addon's errors may come from another realm (jest), so no instanceof Error. */
function message(err: unknown): string {
  if (typeof err === 'object' && err !== null && typeof (err as { message?: unknown }).message === 'string') return (err as { message: string }).message;
  return String(err);
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
