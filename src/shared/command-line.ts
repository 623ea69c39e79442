import { safeText } from './safe-text.js';

/** One malformed flag: the message names it and says what was expected. */
export class FlagError extends Error {}

/** A value as a message quotes it: escaped, and cut after 60 characters when long (a 10 KB value is not repeated). */
export const shown = (raw: string) => {
  const text = safeText(raw);
  return text.length <= 100 ? JSON.stringify(text) : `${JSON.stringify(text.slice(0, 60))}… (${raw.length} characters)`;
};

/**
 * `--setup "uv sync --frozen"` as an argv array, split without a shell: words are separated by
 * whitespace; '...' is literal; "..." is literal except \" and \\; a backslash outside quotes
 * escapes the next character. Nothing is expanded ($VAR, globs, ~). Unquoted shell operators
 * (| & ; < > ( ) ` $) are refused: they would be passed as plain arguments, which is never what
 * was meant; write a script in the repository and name it instead.
 */
export function splitCommandLine(flag: string, raw: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < raw.length; i++) {
    const char = raw[i]!;
    if (quote === "'") {
      if (char === "'") quote = null;
      else word += char;
    } else if (quote === '"') {
      if (char === '"') quote = null;
      else if (char === '\\' && (raw[i + 1] === '"' || raw[i + 1] === '\\')) word += raw[++i];
      else word += char;
    } else if (/\s/.test(char)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else if (char === "'" || char === '"') {
      quote = char;
      inWord = true;
    } else if (char === '\\') {
      if (i + 1 >= raw.length) throw new FlagError(`${flag} ${shown(raw)}: ends with a lone backslash`);
      word += raw[++i];
      inWord = true;
    } else if ('|&;<>()`$'.includes(char)) {
      throw new FlagError(
        `${flag} ${shown(raw)}: runs one command without a shell, so "${char}" is not allowed unquoted; put the steps in a script in the repository and run that`,
      );
    } else {
      word += char;
      inWord = true;
    }
  }
  if (quote) throw new FlagError(`${flag} ${shown(raw)}: unterminated ${quote} quote`);
  if (inWord) words.push(word);
  if (words.length === 0) throw new FlagError(`${flag} ${shown(raw)}: expected a command, such as "uv sync --frozen"`);
  return words;
}
