/**
 * BuildKit's parseWords: splits an instruction's arguments on whitespace that is outside
 * quotes and not escaped, keeping quotes and escape characters in the words (expansion,
 * which removes them, comes later with the stage's environment).
 */
export function splitWords(text: string, escape: string): string[] {
  const words: string[] = [];
  let word = '';
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === escape && quote !== "'" && i + 1 < text.length) {
      word += ch + text[++i];
      continue;
    }
    if (quote !== undefined) {
      if (ch === quote) quote = undefined;
      word += ch;
      continue;
    }
    if (ch === '"' || ch === "'") {
      quote = ch;
      word += ch;
      continue;
    }
    if (/\s/.test(ch)) {
      if (word !== '') words.push(word);
      word = '';
      continue;
    }
    word += ch;
  }
  if (word !== '') words.push(word);
  return words;
}

/** The word with its quotes removed (escapes kept): the name of a heredoc delimiter. */
export function unquote(word: string): string {
  return word.replace(/["']/g, '');
}
