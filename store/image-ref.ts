import { BuildError } from '../solver/build-error';

/** Docker Hub's canonical name; `index.docker.io` and a missing registry both mean it. */
export const DOCKER_HUB = 'docker.io';
const DEFAULT_TAG = 'latest';
const MAX_NAME = 255;

// The grammar of github.com/distribution/reference, written out piece by piece.
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const IPV6 = '\\[(?:[a-fA-F0-9:]+)\\]';
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|${IPV6})(?::[0-9]+)?$`);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

/**
 * A parsed, normalized image reference (`registry/repository[:tag][@digest]`).
 *
 * Lifecycle: an immutable value made by `parseImageRef`; derive new ones with `withDigest` /
 * `withTag` rather than mutating. A reference with neither tag nor digest gets `latest`.
 */
export interface ImageRef {
  /** Host[:port] as written, with Docker Hub spelled `docker.io`. */
  readonly registry: string;
  /** Path inside the registry; Docker Hub's official images get the `library/` prefix. */
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: string;
  /** `registry/repository`, the name without tag or digest. */
  readonly name: string;
  /** The short form Docker prints: `busybox:latest`, `foo/bar@sha256:…`, `localhost:5000/x:1`. */
  readonly familiar: string;
  /** The same reference pinned to a digest (the tag is kept, as Docker does). */
  withDigest(digest: string): ImageRef;
  withTag(tag: string): ImageRef;
  /** The same name without its tag (a pinned digest stays): what a push by digest names. */
  withoutTag(): ImageRef;
  /** The same repository, tag and digest on another registry (host[:port]): a mirror's. */
  withRegistry(registry: string): ImageRef;
  /** The fully qualified form: `docker.io/library/busybox:latest`. */
  toString(): string;
}

class ParsedImageRef implements ImageRef {
  constructor(
    readonly registry: string,
    readonly repository: string,
    readonly tag: string | undefined,
    readonly digest: string | undefined,
  ) {}

  get name(): string {
    return `${this.registry}/${this.repository}`;
  }

  get familiar(): string {
    let name = this.name;
    if (this.registry === DOCKER_HUB) {
      name = this.repository.startsWith('library/') && this.repository.split('/').length === 2
        ? this.repository.slice('library/'.length)
        : this.repository;
    }
    return name + suffix(this.tag, this.digest);
  }

  withDigest(digest: string): ImageRef {
    if (!DIGEST_RE.test(digest)) throw invalid(`${this.name}@${digest}`, 'the digest is not sha256:<64 lowercase hex digits>');
    return new ParsedImageRef(this.registry, this.repository, this.tag, digest);
  }

  withTag(tag: string): ImageRef {
    if (!TAG_RE.test(tag)) throw invalid(`${this.name}:${tag}`, 'the tag is not [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}');
    return new ParsedImageRef(this.registry, this.repository, tag, undefined);
  }

  withoutTag(): ImageRef {
    return new ParsedImageRef(this.registry, this.repository, undefined, this.digest);
  }

  withRegistry(registry: string): ImageRef {
    return parseImageRef(`${registry}/${this.repository}${suffix(this.tag, this.digest)}`);
  }

  toString(): string {
    return this.name + suffix(this.tag, this.digest);
  }
}

function suffix(tag: string | undefined, digest: string | undefined): string {
  return (tag ? `:${tag}` : '') + (digest ? `@${digest}` : '');
}

function invalid(s: string, why: string): BuildError {
  return new BuildError('invalid-argument', `Cannot parse image reference ${JSON.stringify(s.slice(0, 300))}: ${why}`);
}

/**
 * Parses a reference the way Docker does: `busybox` → `docker.io/library/busybox:latest`;
 * the first path component is a registry only if it has a `.` or `:`, is `localhost`, or has
 * upper-case letters (which a repository may not).
 */
export function parseImageRef(s: string): ImageRef {
  if (s.length === 0) throw invalid(s, 'it is empty');
  if (s.length > 1024) throw invalid(s, 'it is too long');
  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_RE.test(digest)) throw invalid(s, 'the digest is not sha256:<64 lowercase hex digits>');
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  // A colon after the last slash is a tag; one before it belongs to the registry's port.
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw invalid(s, 'the tag is not [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}');
  }
  let registry = DOCKER_HUB;
  let repository = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase()) {
      registry = first;
      repository = rest.slice(slash + 1);
      if (!DOMAIN_RE.test(registry)) throw invalid(s, `${JSON.stringify(registry)} is not a registry host[:port]`);
    }
  }
  if (registry === 'index.docker.io') registry = DOCKER_HUB;
  if (repository.length === 0) throw invalid(s, 'the repository is empty');
  for (const part of repository.split('/')) {
    if (!PATH_COMPONENT_RE.test(part)) {
      throw invalid(s, `${JSON.stringify(part)} is not a repository component (lowercase letters, digits, separators . _ __ -)`);
    }
  }
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;
  if (registry.length + 1 + repository.length > MAX_NAME) throw invalid(s, `the name is longer than ${MAX_NAME} characters`);
  if (tag === undefined && digest === undefined) tag = DEFAULT_TAG;
  return new ParsedImageRef(registry, repository, tag, digest);
}
