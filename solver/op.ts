import { z } from 'zod';
import { canonicalJson, sha256Digest } from './canonical-json';

/**
 * The build graph, in the spirit of BuildKit's LLB. The frontend emits it and never runs it;
 * the solver validates it (re-deriving every digest, checking every input index) and runs it.
 *
 * Every op has one output (index 0): a filesystem. An input index of -1 means `scratch`
 * (an empty filesystem) wherever an op refers to one of its inputs by position.
 */

/** A reference to output `index` of the op whose digest is `digest`. */
export const opInputSchema = z.object({ digest: z.string().regex(/^sha256:[a-f0-9]{64}$/), index: z.number().int().min(0) }).strict();
export type OpInput = z.infer<typeof opInputSchema>;

/**
 * A filesystem from outside the graph:
 * - `docker-image://<ref>` with attrs.digest set to the manifest digest it was resolved to
 *   (and attrs.platform `os/arch[/variant]` when not linux/amd64);
 * - `local://<name>` a directory the client sends in the session (`--local name=DIR`);
 * - `https://...` or `http://...` one downloaded file (ADD URL): attrs.checksum
 *   (`sha256:...`, verified), attrs.filename (the name it gets in the result's root; default
 *   from the URL path), attrs.chmod (octal); its mtime is the response's Last-Modified;
 * - `git://<remote>`: a checkout of attrs.remote (the URL as written) at attrs.ref (branch, tag
 *   or commit; default HEAD), only attrs.subdir when set, with the .git directory when
 *   attrs.keepGitDir is `true`.
 */
export const sourceOpSchema = z.object({
  kind: z.literal('source'),
  identifier: z.string().min(1).max(4096),
  attrs: z.record(z.string()).default({}),
}).strict();

/** `user:group` names or numbers, resolved against /etc/passwd and /etc/group of the op's base. */
export const chownSchema = z.object({ user: z.string().min(1), group: z.string().min(1).optional() }).strict();
export type Chown = z.infer<typeof chownSchema>;

/** A cache mount's identity and how concurrent steps share it (BuildKit's CacheOpt). */
export const cacheMountOptSchema = z.object({
  /** the cache's name; with the input it seeds from, picks the persistent directory */
  id: z.string().min(1).max(1024),
  /** shared: used by all at once; private: a concurrent user gets another copy; locked: users take turns */
  sharing: z.enum(['shared', 'private', 'locked']),
}).strict();
export type CacheMountOpt = z.infer<typeof cacheMountOptSchema>;

/**
 * One filesystem a RUN sees, as LLB's ExecOp mounts: the root (`dest` `/`, type bind,
 * output 0) and any number of others, which produce no output (-1):
 * - bind: `selector` (default `/`) of input `input` (-1: an empty directory), read-only unless
 *   `readonly` is false, in which case the step's writes to it are thrown away;
 * - cache: a directory that outlives the build (`cache`), seeded on first use from `selector`
 *   of `input` (-1: empty, 0755 root); its content is never part of a cache key or a layer;
 * - tmpfs: a fresh tmpfs (`input` -1), `tmpfs.size` bytes at most (0: the kernel's default).
 */
export const execMountSchema = z.object({
  /** input position, -1 for scratch */
  input: z.number().int().min(-1),
  dest: z.string().startsWith('/').max(4096),
  /** output position this mount's result is published at, -1 when it produces none */
  output: z.number().int().min(-1),
  readonly: z.boolean().default(false),
  /** bind (the default), cache or tmpfs */
  type: z.enum(['bind', 'cache', 'tmpfs']).optional(),
  /** the path inside the input that is mounted (BuildKit's selector); `/` when absent */
  selector: z.string().startsWith('/').max(4096).optional(),
  cache: cacheMountOptSchema.optional(),
  tmpfs: z.object({ size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER) }).strict().optional(),
}).strict();
export type ExecMount = z.infer<typeof execMountSchema>;

/**
 * A secret the client lends one RUN (BuildKit's SecretOpt and SecretEnv): mounted read-only as
 * a file at `target`, and/or given to the process as the variable `env`. Only the id is part of
 * the op (and so of its digest and cache key); the value never is. `required: false` and no
 * such secret on the client: nothing is mounted and the variable is not set.
 */
export const secretMountSchema = z.object({
  id: z.string().min(1).max(256),
  target: z.string().startsWith('/').optional(),
  env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional(),
  required: z.boolean(),
  mode: z.number().int().min(0).max(0o7777),
  uid: z.number().int().min(0).max(0xffffffff),
  gid: z.number().int().min(0).max(0xffffffff),
}).strict().refine((m) => m.target !== undefined || m.env !== undefined, 'A secret mount needs a target or an env');
export type SecretMount = z.infer<typeof secretMountSchema>;

/**
 * The client's ssh agent `id` (BuildKit's SSHOpt), as a unix socket at `target` in the step.
 * `required: false` and no such agent on the client: nothing is mounted.
 */
export const sshMountSchema = z.object({
  id: z.string().min(1).max(256),
  target: z.string().startsWith('/'),
  required: z.boolean(),
  mode: z.number().int().min(0).max(0o7777),
  uid: z.number().int().min(0).max(0xffffffff),
  gid: z.number().int().min(0).max(0xffffffff),
}).strict();
export type SshMount = z.infer<typeof sshMountSchema>;

/**
 * A hostname runc can set (sethostname takes at most 64 bytes) that /etc/hosts can carry: RFC 1123
 * labels of letters, digits and hyphens, separated by dots.
 */
export const hostnameSchema = z
  .string()
  .max(64, 'expected a hostname of at most 64 characters')
  .regex(/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/, 'expected a hostname: letters, digits, hyphens and dots, at most 64 characters');

export const execOpSchema = z.object({
  kind: z.literal('exec'),
  inputs: z.array(opInputSchema),
  meta: z.object({
    args: z.array(z.string()).min(1),
    env: z.array(z.string()),
    cwd: z.string().startsWith('/'),
    /** `user[:group]` as written in USER, resolved inside the rootfs at run time */
    user: z.string(),
    /** BuildKit's Meta.hostname: the step's UTS hostname; absent: buildkitsandbox */
    hostname: hostnameSchema.optional(),
  }).strict(),
  mounts: z.array(execMountSchema).min(1).max(64),
  /**
   * BuildKit's NetMode: `sandbox` the daemon's CNI network, `none` loopback only, `host` the
   * daemon's own network namespace (needs the network.host entitlement)
   */
  network: z.enum(['none', 'sandbox', 'host']).default('sandbox'),
  /**
   * BuildKit's SecurityMode; absent means `sandbox` (so that the digests of ordinary steps do
   * not change), `insecure` runs the step privileged (needs the security.insecure entitlement)
   */
  security: z.enum(['sandbox', 'insecure']).optional(),
  /** RUN --mount=type=secret: values come from the client at run time, never from the graph */
  secrets: z.array(secretMountSchema).max(64).optional(),
  /** RUN --mount=type=ssh: the client's ssh agents, relayed into the step */
  ssh: z.array(sshMountSchema).max(16).optional(),
  /**
   * The platform the process runs as, `os/arch[/variant]` normalized (containerd's rules);
   * absent means linux/amd64, so that the digests of ordinary steps do not change. Part of the
   * step's cache key, as in BuildKit's ExecOp: the same command gives another result on
   * another platform. A platform the worker cannot run (natively or through binfmt_misc)
   * fails the build before any step runs.
   */
  platform: z.string().regex(/^[a-z0-9._-]+\/[a-z0-9._-]+(\/[a-z0-9._-]+)?$/).optional(),
}).strict();
export type ExecOp = z.infer<typeof execOpSchema>;

export const copyActionSchema = z.object({
  type: z.literal('copy'),
  /** input position of the source filesystem, -1 for scratch */
  src: z.number().int().min(-1),
  /** paths inside the source, may hold globs (`*`, `?`, `[...]`) */
  srcPaths: z.array(z.string().min(1)).min(1),
  /** destination; ending in `/` (or several sources) means "into this directory" */
  dest: z.string().startsWith('/'),
  chown: chownSchema.optional(),
  /** octal mode, or symbolic (`u+x`, `go-w,a+r`) applied to each copied entry's mode */
  chmod: z.union([z.number().int().min(0).max(0o7777), z.string().regex(/^[ugoa]*[-+=][rwxXst]*(,[ugoa]*[-+=][rwxXst]*)*$/)]).optional(),
  /** COPY --link: the copied files do not depend on the destination's content (own layer) */
  link: z.boolean().optional(),
  /** COPY --parents: keep each matched source's parent directories under dest */
  parents: z.boolean().optional(),
  /** COPY --exclude patterns (dockerignore syntax, relative to the source root) */
  exclude: z.array(z.string().min(1)).optional(),
  /** ADD: a local tar archive (plain, gzip, bzip2, xz) is unpacked into dest instead of copied */
  extract: z.boolean().optional(),
}).strict();
export type CopyAction = z.infer<typeof copyActionSchema>;

export const mkdirActionSchema = z.object({
  type: z.literal('mkdir'),
  path: z.string().startsWith('/'),
  mode: z.number().int().min(0).max(0o7777),
  makeParents: z.boolean(),
  chown: chownSchema.optional(),
}).strict();
export type MkdirAction = z.infer<typeof mkdirActionSchema>;

/**
 * Creates (or replaces) one regular file with `data` as its content (UTF-8), e.g. the body of
 * a `COPY <<EOF /dest` heredoc. Missing parent directories are created (0755, owned by root,
 * like the parents a copy makes); `chown` applies to the file only. mtime: as for copies.
 */
export const mkfileActionSchema = z.object({
  type: z.literal('mkfile'),
  path: z.string().startsWith('/'),
  data: z.string().max(16 * 1024 * 1024),
  mode: z.number().int().min(0).max(0o7777),
  chown: chownSchema.optional(),
}).strict();
export type MkfileAction = z.infer<typeof mkfileActionSchema>;

export const fileActionSchema = z.discriminatedUnion('type', [copyActionSchema, mkdirActionSchema, mkfileActionSchema]);
export type FileAction = z.infer<typeof fileActionSchema>;

export const fileOpSchema = z.object({
  kind: z.literal('file'),
  inputs: z.array(opInputSchema),
  /** input position the actions apply on top of, -1 for scratch */
  base: z.number().int().min(-1),
  actions: z.array(fileActionSchema).min(1),
}).strict();
export type FileOp = z.infer<typeof fileOpSchema>;

export type SourceOp = z.infer<typeof sourceOpSchema>;
export const opSchema = z.discriminatedUnion('kind', [sourceOpSchema, execOpSchema, fileOpSchema]);
export type Op = z.infer<typeof opSchema>;

/** What progress shows for an op; not part of its digest. */
export const opMetaSchema = z.object({
  /** e.g. `[build 2/3] RUN make` */
  name: z.string(),
  range: z.object({ file: z.string(), startLine: z.number().int(), endLine: z.number().int() }).strict().optional(),
  /** set by --no-cache: run even when a cache record exists */
  ignoreCache: z.boolean().optional(),
}).strict();
export type OpMeta = z.infer<typeof opMetaSchema>;

export const definitionSchema = z.object({
  ops: z.array(z.object({ digest: z.string(), op: opSchema, meta: opMetaSchema }).strict()).max(10000),
  /** the build's result; null means an empty (scratch) filesystem */
  result: opInputSchema.nullable(),
}).strict();
export type Definition = z.infer<typeof definitionSchema>;

/** The digest of an op: sha256 of its canonical JSON, which includes its inputs' digests. */
export function opDigest(op: Op): string {
  return sha256Digest(canonicalJson(op));
}

/** The inputs an op refers to by position. */
export function opInputs(op: Op): OpInput[] {
  return op.kind === 'source' ? [] : op.inputs;
}
