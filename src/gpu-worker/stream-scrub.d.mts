export interface StreamScrubber {
  /** What may be written now; an end that could begin a secret is held back for the next chunk. */
  push(chunk: Buffer): Buffer;
  /** What is held back, at the stream's end. */
  end(): Buffer;
}

export function createStreamScrubber(forms: readonly string[]): StreamScrubber;
