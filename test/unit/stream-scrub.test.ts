import { describe, expect, it } from 'vitest';
import { REDACTED, secretForms } from '../../src/domain/redact.js';
import { createStreamScrubber } from '../../src/gpu-worker/stream-scrub.mjs';

const SECRET = 'tok-5f3a9c1e7b2d4a6f';
const OTHER = 'pässwört-ünïcode-42';
const forms = secretForms([SECRET, OTHER]);

/** Everything the scrubber lets through, chunk by chunk, then its end. */
function scrubInChunks(chunks: Buffer[]): { written: Buffer } {
  const scrubber = createStreamScrubber(forms);
  const out = chunks.map((chunk) => scrubber.push(chunk));
  out.push(scrubber.end());
  return { written: Buffer.concat(out) };
}

function expectClean(written: Buffer): void {
  for (const form of forms) expect(written.includes(Buffer.from(form)), `holds ${form}`).toBe(false);
}

describe('the streaming scrubber of the raw log', () => {
  const text = Buffer.from(
    `step 1 | loss 2.0 | ${SECRET}\nusing API_TOKEN=${SECRET}; url ${encodeURIComponent(OTHER)} and ${OTHER}${SECRET}\n`,
  );
  const whole = `step 1 | loss 2.0 | ${REDACTED}\nusing API_TOKEN=${REDACTED}; url ${REDACTED} and ${REDACTED}${REDACTED}\n`;

  it('replaces every form of every secret in one write', () => {
    expect(scrubInChunks([text]).written.toString('utf8')).toBe(whole);
  });

  it('replaces a secret split across two writes, at every split point (UTF-8 bytes included)', () => {
    for (let at = 0; at <= text.length; at++) {
      const { written } = scrubInChunks([text.subarray(0, at), text.subarray(at)]);
      expectClean(written);
      expect(written.toString('utf8'), `split at byte ${at}`).toBe(whole);
    }
  });

  it('replaces secrets written one byte at a time, and across three writes at every pair of split points', () => {
    const bytes = [...text].map((byte) => Buffer.from([byte]));
    expect(scrubInChunks(bytes).written.toString('utf8')).toBe(whole);
    const line = Buffer.from(`a${SECRET}b`);
    for (let i = 0; i <= line.length; i++)
      for (let j = i; j <= line.length; j++) {
        const { written } = scrubInChunks([line.subarray(0, i), line.subarray(i, j), line.subarray(j)]);
        expect(written.toString('utf8'), `splits at ${i} and ${j}`).toBe(`a${REDACTED}b`);
      }
  });

  it('holds back at most the longest secret less one byte, and only an end that could begin a secret', () => {
    const longest = Math.max(...forms.map((form) => Buffer.byteLength(form)));
    const scrubber = createStreamScrubber(forms);
    // An end that begins a secret is held back...
    const start = `progress 50%\n${SECRET.slice(0, 10)}`;
    expect(scrubber.push(Buffer.from(start)).toString()).toBe('progress 50%\n');
    // ...and let go once it turns out not to be one.
    expect(scrubber.push(Buffer.from('!\n')).toString()).toBe(`${SECRET.slice(0, 10)}!\n`);
    // Ordinary output passes at once (a progress line is read from the log while the run trains).
    expect(scrubber.push(Buffer.from('step 2\r')).toString()).toBe('step 2\r');
    // Never more than the longest form less one byte, whatever the chunk ends with.
    for (const form of forms) {
      const fresh = createStreamScrubber(forms);
      const bytes = Buffer.from(`x${form}`).subarray(0, -1);
      const passed = fresh.push(bytes);
      expect(bytes.length - passed.length).toBeLessThanOrEqual(longest - 1);
      expect(fresh.end().length).toBe(bytes.length - passed.length);
    }
  });

  it('passes everything through untouched without secrets', () => {
    const scrubber = createStreamScrubber([]);
    const chunk = Buffer.from('anything at all');
    expect(scrubber.push(chunk)).toBe(chunk);
    expect(scrubber.end().length).toBe(0);
  });
});
