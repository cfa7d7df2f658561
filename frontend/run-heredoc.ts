import { Heredoc, parseHeredocWord } from './heredoc-words';
import { DEFAULT_SHELL } from './dispatch-helpers';

/**
 * `RUN <<EOF` as BuildKit's dispatchRun runs it:
 * - a RUN that is only one heredoc runs the body as the shell's script (`sh -c BODY`);
 * - such a body that starts with `#!` is a program for that interpreter. BuildKit writes it
 *   to a file on an extra read-only mount (/dev/pipes/NAME) and executes the file. Our exec
 *   op has only the root mount and a file in the rootfs would end up in the image, so the
 *   body goes to the interpreter as a file descriptor instead:
 *   `/bin/sh -c "exec INTERP [ARG] /dev/fd/3 3<<'DELIM' ... DELIM"`. The interpreter reads
 *   its program from /dev/fd/3 as it would from a file; stdin stays what it was. What
 *   differs: the image needs /bin/sh, and the script sees `/dev/fd/3` as its own path;
 * - anything else (`RUN python3 <<EOF`, several heredocs) is the command line followed by the
 *   heredoc bodies and delimiters, handed to the shell, which does the redirections itself.
 */

/** The process arguments, and the summary BuildKit appends to the step name. */
export interface HeredocRun {
  args: string[];
  summary?: string;
}

export function heredocScript(command: string, heredocs: readonly Heredoc[], shell: readonly string[]): HeredocRun {
  const single = heredocs.length === 1 ? parseHeredocWord(command.trim()) : undefined;
  if (single) {
    const doc = heredocs[0];
    const data = doc.chomp ? doc.content.replace(/^\t+/gm, '') : doc.content;
    const summary = summarize(doc.content);
    if (data.startsWith('#!')) return { args: [...DEFAULT_SHELL, shebangCommand(data)], summary };
    return { args: [...shell, data], summary };
  }
  let script = command;
  for (const doc of heredocs) script += `\n${doc.content}${doc.name}`;
  return { args: [...shell, script] };
}

/** `exec '/usr/bin/env' 'python3' /dev/fd/3 3<<'DELIM'` + body + DELIM. */
function shebangCommand(data: string): string {
  const firstLine = data.slice(2, data.includes('\n') ? data.indexOf('\n') : undefined).trim();
  // The kernel passes the interpreter at most one argument: the rest of the line, as is.
  const m = /^(\S+)\s*(.*)$/.exec(firstLine);
  const interpreter = m ? [m[1], ...(m[2] !== '' ? [m[2]] : [])] : ['/bin/sh'];
  let delimiter = 'BUILDD_HEREDOC';
  const lines = new Set(data.split('\n'));
  for (let n = 1; lines.has(delimiter); n++) delimiter = `BUILDD_HEREDOC_${n}`;
  const body = data.endsWith('\n') ? data : data + '\n';
  return `exec ${interpreter.map(shellQuote).join(' ')} /dev/fd/3 3<<'${delimiter}'\n${body}${delimiter}`;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The first line of the body, with `...` when there are more, as in BuildKit's step names. */
function summarize(content: string): string {
  const lines = content.trim().split(/\r?\n/);
  return lines[0] + (lines.length > 1 ? '...' : '');
}
