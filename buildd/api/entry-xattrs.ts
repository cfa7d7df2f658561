/**
 * Which extended attributes of a local's entry cross the wire (FileEntry.xattrs), shared by
 * the client that reads them (buildctl/context-walk.ts) and the daemon that validates them
 * (messages.ts) so both draw the same line.
 *
 * BuildKit's client (fsutil) sends every attribute but `com.apple.*`, and its receiver sets
 * them all as root, errors ignored. Here only what a build may carry is accepted:
 * - `user.*`: plain data a program or a later RUN may read;
 * - `security.capability`: a file capability, the one attribute a layer keeps.
 * Refused are `trusted.*` (only CAP_SYS_ADMIN may set them, and trusted.overlay.* written by
 * the daemon would forge overlayfs whiteouts, opaque directories and redirects in a snapshot),
 * the other `security.*` names (LSM labels and IMA/EVM signatures are the policy of the
 * client's host, not content, and would act on the daemon's host), and `system.*` (POSIX ACLs
 * and file system internals, which BuildKit's content checksum ignores and no layer keeps).
 */

/** The one security.* attribute that is content: a file capability (regular files only). */
export const CAPABILITY_XATTR_NAME = 'security.capability';
/** Longest attribute name in bytes (Linux XATTR_NAME_MAX). */
export const MAX_XATTR_NAME_BYTES = 255;
/** Most bytes of names and values together on one entry (Linux XATTR_SIZE_MAX, 64 KiB). */
export const MAX_ENTRY_XATTR_BYTES = 64 * 1024;
/** Most attributes on one entry. */
export const MAX_ENTRY_XATTRS = 256;

/**
 * Why the daemon refuses an attribute name, or undefined when it is accepted. The reasons
 * are written to be read by a person in `Cannot accept a message: ...`.
 */
export function xattrNameProblem(name: string): string | undefined {
  if (Buffer.byteLength(name) > MAX_XATTR_NAME_BYTES) return `extended attribute name longer than ${MAX_XATTR_NAME_BYTES} bytes`;
  if (name.includes('\0')) return 'extended attribute name contains NUL';
  if (name.startsWith('trusted.')) return `extended attribute ${name} refused: trusted.* attributes are never taken from a client`;
  if (name === CAPABILITY_XATTR_NAME) return undefined;
  if (name.startsWith('user.') && name.length > 'user.'.length) return undefined;
  return `extended attribute ${name} refused: only user.* and ${CAPABILITY_XATTR_NAME} are accepted`;
}

/** Whether the client sends an attribute it found on an entry: exactly what the daemon accepts. */
export function isSentXattr(name: string): boolean {
  return xattrNameProblem(name) === undefined;
}

/** Bytes an entry's attributes count against {@link MAX_ENTRY_XATTR_BYTES}: names and values. */
export function xattrBytes(xattrs: Iterable<[string, Uint8Array]>): number {
  let total = 0;
  for (const [name, value] of xattrs) total += Buffer.byteLength(name) + value.length;
  return total;
}
