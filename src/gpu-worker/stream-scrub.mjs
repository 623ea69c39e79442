// Scrubs known secret values from a byte stream as it is written (the supervisor's raw log), so
// no secret reaches the disk even when the script printed it in pieces across several writes.
// Plain JavaScript: the supervisor imports it as it is.

const REDACTED = Buffer.from('[redacted]');

/**
 * A scrubber for one stream. `forms` are the secret values in every form they can take in text
 * (see secretForms in src/domain/redact.ts). `push` returns what may be written now: the chunk
 * (with whatever was held back before it), every whole secret replaced, less the shortest end that
 * could still be the start of a secret, which is held back for the next chunk (at most the longest
 * secret's length minus one bytes). `end` returns what is held back: never a whole secret.
 */
export function createStreamScrubber(forms) {
  const needles = [...new Set(forms.filter((form) => form.length > 0))]
    .map((form) => Buffer.from(form, 'utf8'))
    .sort((a, b) => b.length - a.length);
  const longest = needles[0]?.length ?? 0;
  let held = Buffer.alloc(0);

  function push(chunk) {
    if (needles.length === 0) return chunk;
    const text = held.length === 0 ? chunk : Buffer.concat([held, chunk]);
    const parts = [];
    const next = needles.map(() => -2);
    let from = 0;
    for (;;) {
      const match = firstMatch(text, from, next);
      if (!match) break;
      parts.push(text.subarray(from, match.at), REDACTED);
      from = match.at + match.length;
    }
    const hold = heldFrom(text, Math.max(from, text.length - (longest - 1)));
    parts.push(text.subarray(from, hold));
    held = Buffer.from(text.subarray(hold));
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  /**
   * The leftmost whole secret at or after `from` (the longest of those starting there). `next`
   * keeps each needle's next position (-1: none left), so the text is searched once per needle.
   */
  function firstMatch(text, from, next) {
    let best = null;
    needles.forEach((needle, i) => {
      if (next[i] !== -1 && next[i] < from) next[i] = text.indexOf(needle, from);
      const at = next[i];
      if (at >= 0 && (best === null || at < best.at)) best = { at, length: needle.length };
    });
    return best;
  }

  /** Where the end of `text` that could begin a secret starts (`text.length` when none could). */
  function heldFrom(text, from) {
    for (let at = Math.max(0, from); at < text.length; at++) {
      const rest = text.subarray(at);
      if (needles.some((needle) => needle.length > rest.length && needle.subarray(0, rest.length).equals(rest)))
        return at;
    }
    return text.length;
  }

  function end() {
    const rest = held;
    held = Buffer.alloc(0);
    return rest;
  }

  return { push, end };
}
