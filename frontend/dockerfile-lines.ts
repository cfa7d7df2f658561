import { Copy, Dockerfile, DockerfileParser, Instruction, Onbuild, Run } from 'dockerfile-ast';
import { dockerfileError, LineRange } from './dockerfile-error';
import { Directive, DirectiveName, readDirectives } from './dockerfile-directives';
import { Heredoc, HeredocWord, heredocsOf } from './heredoc-words';
import { HeredocBody, heredocBody, isSkipped, LogicalLine, logicalLine, physicalLines } from './logical-line';

export type { Directive } from './dockerfile-directives';
export type { Heredoc } from './heredoc-words';

/**
 * The first pass over a Dockerfile, as BuildKit's parser.Parse: parser directives at the top,
 * then instructions, each with its keyword, its line range and its heredoc bodies.
 * dockerfile-ast does the splitting: where instructions start, their keyword, how far they
 * reach (continuations, comments and blank lines inside them, heredoc bodies) and the
 * directives. Each instruction is checked against BuildKit's rules while its lines are joined
 * (logical-line.ts); where dockerfile-ast splits differently, BuildKit's answer is used:
 * - an escaped escape character at the end of a line (`RUN echo \\`) is no continuation
 *   for BuildKit; dockerfile-ast joins the next line;
 * - a line holding only the escape character continues into the next for BuildKit;
 *   dockerfile-ast makes it an instruction named `\`;
 * - heredoc words BuildKit reads differently (see heredoc-words.ts), whose bodies end on
 *   other lines;
 * - ADD's heredoc bodies, which dockerfile-ast 0.7 finds but does not expose.
 * After such an instruction, dockerfile-ast picks up again at the next one.
 */

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

/** The file after the first pass. */
export interface DockerfileLines {
  escape: string;
  directives: Map<DirectiveName, Directive>;
  instructions: RawInstruction[];
  /** blank lines inside continuations, which BuildKit warns about */
  emptyContinuations: LineRange[];
}

const HEREDOC_KEYWORDS = new Set(['RUN', 'COPY', 'ADD']);

/** Splits `text`; throws a BuildError for a bad directive or an unterminated heredoc. */
export function splitDockerfile(text: string, filename: string): DockerfileLines {
  const lines = physicalLines(text);
  const first = DockerfileParser.parse(lines.join('\n'));
  const header = readDirectives(first, lines, filename);
  const index = new AstIndex(lines, header.escape);
  // An escape directive dockerfile-ast applies and BuildKit does not (after `# foo=bar`)
  // changes every continuation: then dockerfile-ast reads the file again with BuildKit's.
  if (first.getEscapeCharacter() === header.escape) index.add(first);
  const out: DockerfileLines = { escape: header.escape, directives: header.directives, instructions: [], emptyContinuations: [] };
  const at = (start: number, end: number): LineRange => ({ startLine: start + 1, endLine: end + 1, column: 1, source: lines.slice(start, end + 1) });

  let line = header.count;
  for (;;) {
    while (line < lines.length && isSkipped(lines[line])) line++;
    if (line >= lines.length) break;
    const start = line;
    const logical = logicalLine(lines, start, header.escape);
    line = logical.end + 1;
    const joined = logical.text.trim();
    if (joined === '') continue;
    if (logical.emptyContinuation) out.emptyContinuations.push(at(start, logical.end));
    const kw = /^(\S+)\s*([\s\S]*)$/.exec(joined) as RegExpExecArray;
    const rest = kw[2].trim();
    const upper = kw[1].toUpperCase();
    const host = upper === 'ONBUILD' ? (/^(\S+)/.exec(rest)?.[1] ?? '').toUpperCase() : upper;
    const words = HEREDOC_KEYWORDS.has(host) && joined.includes('<<') ? heredocsOf(joined) : [];
    const ast = agreeing(index.at(start), kw[1], logical, words.length > 0);
    const written = ast?.ins.getInstruction() ?? kw[1];
    const ins: RawInstruction = { keyword: written.toUpperCase(), written, rest, at: at(start, logical.end), heredocs: [] };
    if (words.length > 0) {
      const fromAst = astBodies(ast, words, lines, logical.end);
      let end = logical.end;
      for (const [i, word] of words.entries()) {
        const body = fromAst?.[i] ?? heredocBody(lines, end, word);
        if (!body) throw dockerfileError(filename, at(start, lines.length - 1), `unterminated heredoc: no line "${word.name}" ends it`);
        ins.heredocs.push({ ...word, content: body.content });
        end = body.end;
      }
      ins.at = at(start, end);
      line = end + 1;
    }
    out.instructions.push(ins);
  }
  return out;
}

/**
 * dockerfile-ast's instruction when it splits as BuildKit does: the same keyword, and its
 * range ends where BuildKit's logical line does (with heredocs: after it, in the bodies,
 * which astBodies checks).
 */
function agreeing(ast: AstInstruction | undefined, keyword: string, logical: LogicalLine, heredocs: boolean): AstInstruction | undefined {
  if (!ast || ast.ins.getInstruction() !== keyword) return undefined;
  const { start, end } = ast.ins.getRange();
  // A range that stops at the start of a line ends with the line before.
  const last = (end.character === 0 && end.line > start.line ? end.line - 1 : end.line) + ast.shift;
  return last === logical.end || (heredocs && last > logical.end) ? ast : undefined;
}

/**
 * The heredoc bodies as dockerfile-ast found them, when it read the same heredoc words as
 * BuildKit and each body starts right after the previous one; else undefined and BuildKit's
 * reading is used. dockerfile-ast strips tabs before every delimiter once one word of the
 * line is `<<-`, so a line mixing `<<` and `<<-` is read our way.
 */
function astBodies(ast: AstInstruction | undefined, words: readonly HeredocWord[], lines: readonly string[], after: number): HeredocBody[] | undefined {
  if (!ast) return undefined;
  const host = ast.ins instanceof Onbuild ? ast.ins.getTriggerInstruction() : ast.ins;
  // dockerfile-ast 0.7 exposes heredocs on RUN and COPY only.
  if (!(host instanceof Run || host instanceof Copy)) return undefined;
  if (words.some((w) => w.chomp !== words[0].chomp)) return undefined;
  const docs = host.getHeredocs();
  if (docs.length !== words.length) return undefined;
  const bodies: HeredocBody[] = [];
  let prev = after;
  for (const [i, doc] of docs.entries()) {
    const delimiter = doc.getDelimiterRange();
    if (!delimiter || doc.getName() !== words[i].name) return undefined;
    const end = delimiter.start.line + ast.shift;
    const first = (doc.getContentRange()?.start.line ?? delimiter.start.line) + ast.shift;
    if (first !== prev + 1 || end <= prev) return undefined;
    bodies.push({ content: lines.slice(prev + 1, end).map((l) => l + '\n').join(''), end });
    prev = end;
  }
  return bodies;
}

/** How many lines dockerfile-ast reads again after an instruction it split differently. */
const WINDOW = 32;

/** An instruction of one of dockerfile-ast's parses, and what to add to its line numbers. */
interface AstInstruction {
  ins: Instruction;
  shift: number;
}

/**
 * dockerfile-ast's instructions by their first line in the file. Its parse of an instruction
 * depends only on the text from that line on (and the escape character), so an instruction
 * from any parse stays good. When BuildKit's next instruction starts on a line dockerfile-ast
 * had inside another one, dockerfile-ast reads a few lines from there again (a small window,
 * so that a file of such lines is not read again and again to its end).
 */
class AstIndex {
  private readonly byLine = new Map<number, AstInstruction>();
  private readonly parsedFrom = new Set<number>();

  constructor(private readonly lines: readonly string[], private readonly escape: string) {}

  add(ast: Dockerfile, shift = 0): void {
    for (const ins of ast.getInstructions()) {
      const line = ins.getRange().start.line + shift;
      if (!this.byLine.has(line)) this.byLine.set(line, { ins, shift });
    }
  }

  at(line: number): AstInstruction | undefined {
    const known = this.byLine.get(line);
    if (known || this.parsedFrom.has(line)) return known;
    this.parsedFrom.add(line);
    const window = this.lines.slice(line, line + WINDOW).join('\n');
    // The window's first line follows a line that sets BuildKit's escape character.
    if (this.escape === '`') this.add(DockerfileParser.parse(`# escape=\`\n${window}`), line - 1);
    else this.add(DockerfileParser.parse(window), line);
    return this.byLine.get(line);
  }
}
