import { dockerfileError, LineRange } from './dockerfile-error';
import { splitWords, unquote } from './split-words';

/**
 * The first pass over a Dockerfile, as BuildKit's parser.Parse: parser directives at the top,
 * then logical lines (comments dropped, continuation lines joined, also across comments and
 * blank lines), each split into keyword and arguments, with the bodies of its heredocs.
 */

/** `<<EOF` (or `<<-EOF`, `<<"EOF"`) and the lines up to its delimiter. */
export interface Heredoc {
  name: string;
  /** false when the delimiter was quoted: the body is taken literally */
  expand: boolean;
  /** `<<-`: leading tabs are removed from the body's lines */
  chomp: boolean;
  /** the body, each line with its newline */
  content: string;
}

/** One instruction as written. */
export interface RawInstruction {
  /** uppercase keyword */
  keyword: string;
  /** the keyword as written */
  written: string;
  /** the arguments: continuation lines joined, leading whitespace removed */
  rest: string;
  at: LineRange;
  heredocs: Heredoc[];
}

/** One parser directive: `# name=value`. */
export interface Directive {
  value: string;
  at: LineRange;
}

/** The file after the first pass. */
export interface DockerfileLines {
  escape: string;
  directives: Map<'syntax' | 'escape' | 'check', Directive>;
  instructions: RawInstruction[];
  /** blank lines inside continuations, which BuildKit warns about */
  emptyContinuations: LineRange[];
}

const DIRECTIVE = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/;
const HEREDOC = /^(\d*)<<(-?)\s*([^<]*)$/;
const HEREDOC_KEYWORDS = new Set(['RUN', 'COPY', 'ADD']);

/** Splits `text`; throws a BuildError for a bad directive or an unterminated heredoc. */
export function splitDockerfile(text: string, filename: string): DockerfileLines {
  const lines = text.replace(/^\uFEFF/, '').split('\n').map((l) => l.replace(/\r$/, ''));
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const out: DockerfileLines = { escape: '\\', directives: new Map(), instructions: [], emptyContinuations: [] };
  const at = (start: number, end: number, column = 1): LineRange => ({ startLine: start + 1, endLine: end + 1, column, source: lines.slice(start, end + 1) });

  let i = 0;
  for (; i < lines.length; i++) {
    const m = DIRECTIVE.exec(lines[i].trimStart());
    const name = m?.[1].toLowerCase();
    if (!m || (name !== 'syntax' && name !== 'escape' && name !== 'check')) break;
    if (out.directives.has(name)) throw dockerfileError(filename, at(i, i), `only one ${name} parser directive can be used`);
    out.directives.set(name, { value: m[2], at: at(i, i) });
    if (name === 'escape') {
      if (m[2] !== '`' && m[2] !== '\\') throw dockerfileError(filename, at(i, i), `invalid escape token '${m[2]}' does not match \` or \\`);
      out.escape = m[2];
    }
  }

  const esc = out.escape.replace(/[\\`]/g, '\\$&');
  const continuation = new RegExp(`(^|[^${esc}])${esc}[ \\t]*$`);
  const isComment = (l: string): boolean => l.trimStart().startsWith('#');
  for (; i < lines.length; i++) {
    const first = lines[i].trimStart();
    if (first === '' || isComment(first)) continue;
    const start = i;
    let joined = '';
    let line = first;
    let empty = false;
    for (;;) {
      const m = continuation.exec(line);
      if (!m) {
        joined += line;
        break;
      }
      joined += line.slice(0, m.index + m[1].length);
      // A continuation on the last line simply ends the instruction.
      if (i + 1 >= lines.length) break;
      i++;
      while (i < lines.length && (isComment(lines[i]) || lines[i].trim() === '')) {
        if (lines[i].trim() === '') empty = true;
        i++;
      }
      if (i >= lines.length) {
        i--;
        break;
      }
      line = lines[i];
    }
    if (joined.trim() === '') continue;
    if (empty) out.emptyContinuations.push(at(start, i));
    const kw = /^(\S+)\s*([\s\S]*)$/.exec(joined) as RegExpExecArray;
    const keyword = kw[1].toUpperCase();
    const ins: RawInstruction = { keyword, written: kw[1], rest: kw[2].trim(), at: at(start, i), heredocs: [] };
    const heredocHost = keyword === 'ONBUILD' ? (/^\s*(\S+)/.exec(ins.rest)?.[1] ?? '').toUpperCase() : keyword;
    if (HEREDOC_KEYWORDS.has(heredocHost) && joined.includes('<<')) {
      for (const doc of heredocsOf(joined)) {
        let content = '';
        let terminated = false;
        while (++i < lines.length) {
          const candidate = doc.chomp ? lines[i].replace(/^\t+/, '') : lines[i];
          if (candidate === doc.name) {
            terminated = true;
            break;
          }
          content += lines[i] + '\n';
        }
        if (!terminated) throw dockerfileError(filename, at(start, lines.length - 1), `unterminated heredoc: no line "${doc.name}" ends it`);
        ins.heredocs.push({ ...doc, content });
      }
      ins.at = at(start, Math.min(i, lines.length - 1));
    }
    out.instructions.push(ins);
  }
  return out;
}

/** The heredocs a line opens, in order; a word such as `<<` alone or `a<<b` opens none. */
export function heredocsOf(line: string): Array<Omit<Heredoc, 'content'>> {
  const docs: Array<Omit<Heredoc, 'content'>> = [];
  // BuildKit lexes heredoc words with `\` whatever the escape directive says.
  for (const word of splitWords(line, '\\')) {
    const doc = parseHeredocWord(word);
    if (doc) docs.push(doc);
  }
  return docs;
}

/** `<<EOF` → {name EOF, expand, chomp}; undefined when the word is not a heredoc. */
export function parseHeredocWord(word: string): Omit<Heredoc, 'content'> | undefined {
  const m = HEREDOC.exec(word);
  if (!m || m[3] === '') return undefined;
  const words = splitWords(m[3], '\\');
  if (words.length !== 1) return undefined;
  const name = unquote(words[0]).replace(/\\(.)/g, '$1');
  if (name === '') return undefined;
  return { name, expand: !/["'\\]/.test(words[0]), chomp: m[2] === '-' };
}
