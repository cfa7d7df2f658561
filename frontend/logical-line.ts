import { HeredocWord } from './heredoc-words';

/**
 * BuildKit's line rules (parser.Parse), for what dockerfile-ast cannot be trusted with:
 * joining an instruction's physical lines into the one line BuildKit dispatches, and reading
 * a heredoc body when dockerfile-ast's heredoc parse differs from BuildKit's.
 */

/** One instruction's lines joined as BuildKit joins them. */
export interface LogicalLine {
  /** continuation characters removed, comment and blank lines dropped, not yet trimmed */
  text: string;
  /** 0-based index of the last physical line (before any heredoc body) */
  end: number;
  /** whether a blank line sat inside the continuation (BuildKit's NoEmptyContinuation) */
  emptyContinuation: boolean;
}

/**
 * The file's lines as BuildKit's scanner cuts them: on `\n` only, trailing `\r` removed, the
 * byte-order mark dropped. A lone `\r` stays inside its line (vscode's TextDocument, under
 * dockerfile-ast, would start a new line there and shift every later line number).
 */
export function physicalLines(text: string): string[] {
  const lines = text.replace(/^\uFEFF/, '').split('\n').map((l) => l.replace(/\r+$/, ''));
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** A line BuildKit skips between instructions and inside continuations. */
export function isComment(line: string): boolean {
  return line.trimStart().startsWith('#');
}

/** Blank (whitespace only) or a comment: no instruction starts here. */
export function isSkipped(line: string): boolean {
  const t = line.trimStart();
  return t === '' || t.startsWith('#');
}

/**
 * BuildKit's lineContinuationRegex: the escape character last on the line (trailing blanks
 * allowed), not itself escaped, or alone on its line.
 */
function continuation(escape: string): RegExp {
  const e = escape === '`' ? '`' : '\\\\';
  return new RegExp(`(^|[^${e}])${e}[ \\t]*$`);
}

/** The instruction starting at `start`: its first line left-trimmed, continuation lines as written. */
export function logicalLine(lines: readonly string[], start: number, escape: string): LogicalLine {
  const re = continuation(escape);
  const trim = (line: string): { text: string; more: boolean } => {
    const m = re.exec(line);
    return m ? { text: line.slice(0, m.index + m[1].length), more: true } : { text: line, more: false };
  };
  let { text, more } = trim(lines[start].trimStart());
  let end = start;
  let emptyContinuation = false;
  // A continuation on the last line simply ends the instruction.
  while (more && end + 1 < lines.length) {
    const line = lines[++end];
    if (isComment(line)) continue;
    if (line.trim() === '') {
      emptyContinuation = true;
      continue;
    }
    const next = trim(line);
    text += next.text;
    more = next.more;
  }
  return { text, end, emptyContinuation };
}

/** A heredoc body and the 0-based line of its delimiter. */
export interface HeredocBody {
  content: string;
  end: number;
}

/**
 * BuildKit's reading of a body: the lines after `after` up to one that is exactly the name
 * (after leading tabs are removed, for `<<-`). Undefined when no line ends it.
 */
export function heredocBody(lines: readonly string[], after: number, doc: HeredocWord): HeredocBody | undefined {
  let content = '';
  for (let i = after + 1; i < lines.length; i++) {
    const candidate = doc.chomp ? lines[i].replace(/^\t+/, '') : lines[i];
    if (candidate === doc.name) return { content, end: i };
    content += lines[i] + '\n';
  }
  return undefined;
}
