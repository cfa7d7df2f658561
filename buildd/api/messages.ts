import { z } from 'zod/v4';
import { ENTITLEMENTS } from '../../solver/entitlements';
import { CAPABILITY_XATTR_NAME, MAX_ENTRY_XATTR_BYTES, MAX_ENTRY_XATTRS, xattrBytes, xattrNameProblem } from './entry-xattrs';
export { describeZodError } from '../../solver/describe-zod-error';
import { MAX_SECRET_BYTES, MAX_SSH_CHUNK_BYTES } from './session-limits';

/**
 * zod schemas for what the daemon receives on Control.Build, with the shapes produced by
 * load-proto.ts (snake_case, int64 as number, enums as names, `msg` naming the oneof field).
 * Limits are checked here, before anything touches the disk.
 */

/** Largest FileData chunk a client may send. */
export const MAX_CHUNK_BYTES = 1024 * 1024;
/** Largest single file of a local. */
export const MAX_FILE_BYTES = 64 * 1024 ** 3;
/** Most entries in one FileEntries message. */
export const MAX_BATCH_ENTRIES = 1024;
/** Longest entry path and symlink target (Linux PATH_MAX). */
export const MAX_PATH_CHARS = 4096;

const nameSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'Expected letters, digits, ".", "_", "-"');

const attrsSchema = z
  .record(z.string().max(256), z.string().max(64 * 1024))
  .refine((r) => Object.keys(r).length <= 1024, 'Too many attributes');

const u32 = z.number().int().min(0).max(0xffffffff);

export const exportSpecSchema = z.object({
  type: z.enum(['image', 'oci', 'docker', 'tar', 'local']),
  attrs: attrsSchema,
});


/** One --export-cache or --import-cache (BuildStart.cache_exports, cache_imports). */
export const cacheOptionsSchema = z.object({
  type: z.string().min(1).max(64),
  attrs: attrsSchema,
  present: z.array(z.string().regex(/^sha256:[a-f0-9]{64}$/)).max(10_000).default([]),
});

/** The key of a kept copy of a local (BuildStart.local_keys): also a directory name on the daemon. */
export const localKeySchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'Expected letters, digits, ".", "_", "-"');

export const buildStartSchema = z
  .object({
    // absent in clients that forward no ssh agent
    ssh_ids: z.array(nameSchema).max(64).default([]),
    frontend: z.string().min(1).max(256),
    frontend_attrs: attrsSchema,
    local_names: z.array(nameSchema).max(64),
    exports: z.array(exportSpecSchema).max(16),
    no_cache: z.boolean(),
    // what buildctl --allow grants; absent from an older client means none
    entitlements: z.array(z.enum(ENTITLEMENTS)).max(ENTITLEMENTS.length * 4).default([]),
    // locals sent incrementally against the daemon's kept copy; absent from an older client: none
    local_keys: z.record(nameSchema, localKeySchema).default({}),
    // an older client forwards no credentials
    forward_credentials: z.boolean().default(false),
    // an older client exports and imports no cache
    cache_exports: z.array(cacheOptionsSchema).max(16).default([]),
    cache_imports: z.array(cacheOptionsSchema).max(16).default([]),
  })
  .refine((s) => new Set(s.local_names).size === s.local_names.length, 'Local names must be unique')
  .refine((s) => Object.keys(s.local_keys).every((n) => s.local_names.includes(n)), 'A local key names a local that is not in local_names')
  .refine((s) => s.exports.filter((e) => e.type !== 'image').length <= 1, 'At most one oci/docker/tar/local export');

/**
 * A relative path of a local: '/'-separated, no '.', '..' or empty component, no NUL. This is
 * the first of two guards; the writer also refuses to go through symlinks.
 */
export const entryPathSchema = z
  .string()
  .min(1)
  .max(MAX_PATH_CHARS)
  // one refinement reporting each problem in turn: a context lists every entry, and a chain of
  // zod refinements cost more per path than the rest of the entry together
  .superRefine((p, ctx) => {
    if (p.includes('\0')) ctx.addIssue({ code: 'custom', message: 'Path contains NUL' });
    if (p.startsWith('/')) ctx.addIssue({ code: 'custom', message: 'Path is absolute' });
    if (!p.split('/').every((c) => c !== '' && c !== '.' && c !== '..')) {
      ctx.addIssue({ code: 'custom', message: 'Path has an empty, "." or ".." component' });
    }
  });

/**
 * An entry's extended attributes (FileEntry.xattrs): which names are accepted is decided in
 * entry-xattrs.ts (never trusted.*); the count and bytes are capped before anything is set.
 * Absent means none, so a client that predates the field still works.
 */
const entryXattrsSchema = z
  .record(z.string(), z.instanceof(Buffer))
  .default({})
  .superRefine((x, ctx) => {
    const entries = Object.entries(x);
    if (entries.length > MAX_ENTRY_XATTRS) ctx.addIssue({ code: 'custom', message: `More than ${MAX_ENTRY_XATTRS} extended attributes` });
    for (const [name] of entries) {
      const problem = xattrNameProblem(name);
      if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
    }
    if (xattrBytes(entries) > MAX_ENTRY_XATTR_BYTES) ctx.addIssue({ code: 'custom', message: `Extended attributes larger than ${MAX_ENTRY_XATTR_BYTES} bytes` });
  });

const fileTypeSchema = z.enum(['FILE', 'DIR', 'SYMLINK']);
const modeSchema = z.number().int().min(0).max(0o7777);
const mtimeSchema = z.number().int().safe();
const sizeSchema = z.number().int().min(0).max(MAX_FILE_BYTES);
const linkTargetSchema = z
  .string()
  .max(MAX_PATH_CHARS)
  .superRefine((t, ctx) => {
    if (t.includes('\0')) ctx.addIssue({ code: 'custom', message: 'Link target contains NUL' });
  });

/** What makes an entry's fields contradict each other, if anything (each entry, either message). */
function entryProblem(e: { type: string; size: number; link_target: string; xattrs: Record<string, Buffer> }): string | undefined {
  if (e.type !== 'FILE' && e.size !== 0) return 'Only files have a size';
  if ((e.type === 'SYMLINK') !== (e.link_target !== '')) return 'A symlink, and only a symlink, has a link target';
  // the kernel takes a file capability on regular files only
  if (e.type !== 'FILE' && Object.hasOwn(e.xattrs, CAPABILITY_XATTR_NAME)) return `Only a file has ${CAPABILITY_XATTR_NAME}`;
  return undefined;
}

export const fileEntrySchema = z
  .object({
    local: nameSchema,
    path: entryPathSchema,
    type: fileTypeSchema,
    mode: modeSchema,
    uid: u32,
    gid: u32,
    mtime_ms: mtimeSchema,
    link_target: linkTargetSchema,
    size: sizeSchema,
    xattrs: entryXattrsSchema,
  })
  .superRefine((e, ctx) => {
    const problem = entryProblem(e);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  });

/**
 * A FileListing, checked column by column (each column as long as `paths`, the attributes'
 * indexes increasing and in range), then as entries: the same FileEntryMessage values, under
 * the same rules, as the FileEntries that list the same entries.
 */
export const fileListingSchema = z
  .object({
    local: nameSchema,
    paths: z.array(entryPathSchema).max(MAX_BATCH_ENTRIES),
    types: z.array(fileTypeSchema).max(MAX_BATCH_ENTRIES),
    modes: z.array(modeSchema).max(MAX_BATCH_ENTRIES),
    uids: z.array(u32).max(MAX_BATCH_ENTRIES),
    gids: z.array(u32).max(MAX_BATCH_ENTRIES),
    mtimes_ms: z.array(mtimeSchema).max(MAX_BATCH_ENTRIES),
    sizes: z.array(sizeSchema).max(MAX_BATCH_ENTRIES),
    link_targets: z.array(linkTargetSchema).max(MAX_BATCH_ENTRIES),
    xattrs: z.array(z.object({ index: u32, attrs: entryXattrsSchema })).max(MAX_BATCH_ENTRIES),
  })
  .transform((l, ctx) => {
    const n = l.paths.length;
    for (const column of ['types', 'modes', 'uids', 'gids', 'mtimes_ms', 'sizes', 'link_targets'] as const) {
      if (l[column].length !== n) {
        ctx.addIssue({ code: 'custom', message: `Listing column ${column} has ${l[column].length} values for ${n} paths` });
        return z.NEVER;
      }
    }
    const attrs = new Map<number, Record<string, Buffer>>();
    let last = -1;
    for (const x of l.xattrs) {
      if (x.index >= n || x.index <= last) {
        ctx.addIssue({ code: 'custom', message: `Listing attributes for entry ${x.index}: out of range or out of order` });
        return z.NEVER;
      }
      attrs.set(x.index, x.attrs);
      last = x.index;
    }
    const entries: FileEntryMessage[] = [];
    for (let i = 0; i < n; i++) {
      const e = {
        local: l.local,
        path: l.paths[i] as string,
        type: l.types[i] as FileEntryMessage['type'],
        mode: l.modes[i] as number,
        uid: l.uids[i] as number,
        gid: l.gids[i] as number,
        mtime_ms: l.mtimes_ms[i] as number,
        link_target: l.link_targets[i] as string,
        size: l.sizes[i] as number,
        xattrs: attrs.get(i) ?? {},
      };
      const problem = entryProblem(e);
      if (problem !== undefined) {
        ctx.addIssue({ code: 'custom', message: `${problem} (${e.path})` });
        return z.NEVER;
      }
      entries.push(e);
    }
    return { local: l.local, entries };
  });

/** The answer to a SecretRequest; the size is capped before anything keeps the value. */
export const secretValueSchema = z
  .object({
    id: z.string().min(1).max(256),
    data: z.instanceof(Buffer).refine((b) => b.length <= MAX_SECRET_BYTES, 'Secret is larger than 500 KiB'),
    not_found: z.boolean(),
  })
  .refine((v) => !v.not_found || v.data.length === 0, 'A secret that is not found has no data');

/** The answer to a CredentialsRequest: found, not found, or why the lookup failed; nothing else. */
export const credentialsValueSchema = z
  .object({
    id: z.string().min(1).max(64),
    username: z.string().max(4096),
    secret: z.string().max(64 * 1024),
    not_found: z.boolean(),
    error: z.string().max(4096),
  })
  .refine((v) => (v.not_found || v.error !== '' ? v.username === '' && v.secret === '' : v.username !== '' || v.secret !== ''),
    'Credentials are either given, or not found, or an error');

export const sshDataSchema = z.object({
  channel: u32,
  data: z.instanceof(Buffer).refine((b) => b.length > 0 && b.length <= MAX_SSH_CHUNK_BYTES, 'Chunk must be 1 byte to 64 KiB'),
});

export const sshCloseSchema = z.object({ channel: u32, error: z.string().max(4096) });

export const clientMessageSchema = z.discriminatedUnion('msg', [
  z.object({ msg: z.literal('start'), start: buildStartSchema }),
  z.object({ msg: z.literal('entry'), entry: fileEntrySchema }),
  z.object({
    msg: z.literal('data'),
    data: z.object({ data: z.instanceof(Buffer).refine((b) => b.length > 0 && b.length <= MAX_CHUNK_BYTES, 'Chunk must be 1 byte to 1 MiB') }),
  }),
  z.object({ msg: z.literal('locals_done'), locals_done: z.object({}) }),
  z.object({ msg: z.literal('entries'), entries: z.object({ entries: z.array(fileEntrySchema).max(MAX_BATCH_ENTRIES) }) }),
  z.object({ msg: z.literal('listing'), listing: fileListingSchema }),
  z.object({ msg: z.literal('listing_done'), listing_done: z.object({ local: nameSchema }) }),
  z.object({ msg: z.literal('file'), file: z.object({ local: nameSchema, path: entryPathSchema }) }),
  z.object({ msg: z.literal('secret_value'), secret_value: secretValueSchema }),
  z.object({ msg: z.literal('credentials_value'), credentials_value: credentialsValueSchema }),
  z.object({ msg: z.literal('ssh_data'), ssh_data: sshDataSchema }),
  z.object({ msg: z.literal('ssh_close'), ssh_close: sshCloseSchema }),
  z.object({
    msg: z.literal('cache_blob'),
    cache_blob: z.object({
      id: u32,
      data: z.instanceof(Buffer).refine((b) => b.length <= MAX_CHUNK_BYTES, 'Chunk must be at most 1 MiB'),
      eof: z.boolean(),
      error: z.string().max(4096),
    }),
  }),
]);

export type BuildStartMessage = z.infer<typeof buildStartSchema>;
export type FileEntryMessage = z.output<typeof fileEntrySchema>;
export type ClientMessage = z.infer<typeof clientMessageSchema>;
/** The messages a client may send after locals_done: answers to what the daemon asked. */
export const SESSION_MESSAGES = ['secret_value', 'credentials_value', 'ssh_data', 'ssh_close', 'cache_blob'] as const;
export type SessionClientMessage = Extract<ClientMessage, { msg: (typeof SESSION_MESSAGES)[number] }>;

