import * as path from 'node:path';
import { PathPatterns } from '../store/path-pattern';

/**
 * A .dockerignore file, read the way moby/patternmatcher's ignorefile.ReadAll reads it; the
 * matching itself is store's PathPatterns, the same matcher as COPY --exclude, so a context
 * and a COPY never disagree on what a pattern means.
 */
export class DockerIgnore {
  private readonly patterns: PathPatterns;
  /** whether any `!` pattern exists: if not, an ignored directory need not be walked at all */
  readonly hasExceptions: boolean;

  /** Throws a BuildError for a malformed pattern (unclosed `[`, trailing `\`, a bare `!`). */
  constructor(lines: readonly string[]) {
    const patterns: string[] = [];
    for (const [index, raw] of lines.entries()) {
      // ReadAll drops a UTF-8 BOM, and tests for `#` before trimming: ` # x` is a pattern
      const line = index === 0 ? raw.replace(/^\uFEFF/, '') : raw;
      if (line.startsWith('#')) continue;
      let pattern = line.trim();
      if (pattern === '') continue;
      const exclusion = pattern.startsWith('!');
      if (exclusion) pattern = pattern.slice(1).trim();
      if (pattern !== '') pattern = path.posix.normalize(pattern).replace(/^\/+/, '').replace(/\/+$/, '');
      // `/` and `.` name the context itself, never a walked path, so they match nothing here
      // (PathPatterns would read them as "everything", their COPY --parents meaning). A bare
      // `!` or `!/` is passed on for PathPatterns to reject, as patternmatcher.New does.
      if (pattern === '.' || (pattern === '' && !exclusion)) continue;
      patterns.push(exclusion ? `!${pattern}` : pattern);
    }
    this.patterns = new PathPatterns(patterns);
    this.hasExceptions = this.patterns.hasExclusions;
  }

  static parse(text: string): DockerIgnore {
    return new DockerIgnore(text.split(/\r?\n/));
  }

  /** Whether something below the ignored directory `rel` may be re-included (see PathPatterns.mayReincludeBelow). */
  mayReincludeBelow(rel: string): boolean {
    return this.hasExceptions && this.patterns.mayReincludeBelow(rel);
  }

  /** Whether `rel` ('/'-separated, relative to the context) is ignored. */
  ignores(rel: string): boolean {
    return this.patterns.matches(rel);
  }
}
