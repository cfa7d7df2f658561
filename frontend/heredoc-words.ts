import { splitWords, unquote } from './split-words';

/**
 * Heredoc words (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`) read with BuildKit's rules
 * (parser.heredocsFromLine and ParseHeredoc). dockerfile-ast finds heredocs too, but not as
 * BuildKit does: it keeps quotes inside a name (`<<E"O"F` waits for a line `E"O"F`), ignores a
 * file-descriptor prefix (`3<<EOF`), and strips tabs before every delimiter as soon as one
 * heredoc of the line is `<<-`. These words decide which delimiters end which bodies and
 * whether a body is expanded, so they stay ours.
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

/** A heredoc word before its body is read. */
export type HeredocWord = Omit<Heredoc, 'content'>;

const HEREDOC = /^(\d*)<<(-?)\s*([^<]*)$/;

/** The heredocs a line opens, in order; a word such as `<<` alone or `a<<b` opens none. */
export function heredocsOf(line: string): HeredocWord[] {
  const docs: HeredocWord[] = [];
  // BuildKit lexes heredoc words with `\` whatever the escape directive says.
  for (const word of splitWords(line, '\\')) {
    const doc = parseHeredocWord(word);
    if (doc) docs.push(doc);
  }
  return docs;
}

/** `<<EOF` → {name EOF, expand, chomp}; undefined when the word is not a heredoc. */
export function parseHeredocWord(word: string): HeredocWord | undefined {
  const m = HEREDOC.exec(word);
  if (!m || m[3] === '') return undefined;
  const words = splitWords(m[3], '\\');
  if (words.length !== 1) return undefined;
  const name = unquote(words[0]).replace(/\\(.)/g, '$1');
  if (name === '') return undefined;
  return { name, expand: !/["'\\]/.test(words[0]), chomp: m[2] === '-' };
}
