import { Dockerfile } from 'dockerfile-ast';
import { dockerfileError, LineRange } from './dockerfile-error';

/**
 * Parser directives (`# syntax=`, `# escape=`, `# check=`): dockerfile-ast finds the
 * directive lines at the top of the file; BuildKit's DirectiveParser decides which count.
 * They differ, so each line dockerfile-ast offers is checked against BuildKit's rules:
 * - BuildKit stops at the first directive it does not know (`# foo=bar`); dockerfile-ast goes
 *   on, and would apply an `# escape=` that BuildKit reads as a comment;
 * - BuildKit's value is the rest of the line, trimmed; dockerfile-ast's ends at a blank;
 * - BuildKit's name is one word (`# syntax x=y` is a comment); dockerfile-ast takes `syntax`;
 * - BuildKit rejects a repeated directive and an escape other than `\` or `` ` ``;
 *   dockerfile-ast keeps the first and falls back to `\`.
 */

/** One parser directive: `# name=value`. */
export interface Directive {
  value: string;
  at: LineRange;
}

/** The names BuildKit reads; any other name ends the directives. */
export type DirectiveName = 'syntax' | 'escape' | 'check';

/** The directives BuildKit honours, the escape character they set, and the lines they take. */
export interface Directives {
  escape: string;
  directives: Map<DirectiveName, Directive>;
  /** how many lines at the top of the file are directives */
  count: number;
}

const DIRECTIVE = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/;

function isName(name: string): name is DirectiveName {
  return name === 'syntax' || name === 'escape' || name === 'check';
}

/** Throws a BuildError for a repeated directive or an invalid escape token, as BuildKit does. */
export function readDirectives(ast: Dockerfile, lines: readonly string[], filename: string): Directives {
  const out: Directives = { escape: '\\', directives: new Map(), count: 0 };
  for (const d of ast.getDirectives()) {
    const i = d.getRange().start.line;
    // BuildKit's directives are the first lines, one after the other.
    if (i !== out.count) break;
    const m = DIRECTIVE.exec(lines[i].trimStart());
    const name = m?.[1].toLowerCase() ?? '';
    if (!m || !isName(name)) break;
    const at: LineRange = { startLine: i + 1, endLine: i + 1, column: 1, source: [lines[i]] };
    if (out.directives.has(name)) throw dockerfileError(filename, at, `only one ${name} parser directive can be used`);
    out.directives.set(name, { value: m[2], at });
    if (name === 'escape') {
      if (m[2] !== '`' && m[2] !== '\\') throw dockerfileError(filename, at, `invalid escape token '${m[2]}' does not match \` or \\`);
      out.escape = m[2];
    }
    out.count++;
  }
  return out;
}
