import { describe, expect, it } from 'vitest';
import { MAX_SHARD_BYTES, SHARD_UPLOAD_CHUNK_BYTES, shardSizeProblem } from '../../src/domain/bounds.js';
import {
  SHARD_NAMES_PATH,
  SHARD_UPLOAD_INVALID,
  shardOfferProblem,
  uploadChunkProblem,
  uploadSpoolPath,
} from '../../src/domain/datasets.js';

// A shard's bytes come from the producer: what an offer and an upload's chunks may hold.
const sha = 'b'.repeat(64);
const offer = (extra: object = {}) => ({
  dataset: 'train',
  shardIndex: 0,
  shardCount: 1,
  fileName: 'train-0.jsonl',
  declaredSha256: sha,
  upload: { id: 'a'.repeat(32), sha256: sha, bytes: 10 },
  ...extra,
});

describe('shard offers', () => {
  it('a well-formed offer carries an upload and names no path', () => {
    expect(shardOfferProblem(offer())).toBeNull();
  });

  it('an offer naming a path is refused by the rule, whatever else it holds', () => {
    for (const named of [
      { path: '/home/expctl/.expctl/keys/issuer.key' },
      { path: '/etc/shadow', upload: undefined },
      { file: 'train.jsonl' },
    ]) {
      const problem = shardOfferProblem(offer(named));
      expect(problem).toMatchObject({ code: SHARD_NAMES_PATH });
      expect(problem!.message).toMatch(/the orchestrator never opens a path a client names/);
    }
  });

  it("an upload's id, sha256, size and the file's name are checked before anything is recorded", () => {
    const cases: [object, RegExp][] = [
      [{ upload: undefined }, /carries no upload/],
      [
        { upload: { id: '../../keys/issuer.key', sha256: sha, bytes: 1 } },
        /32 lowercase hex digits \(it names no path\)/,
      ],
      [{ upload: { id: 'A'.repeat(32), sha256: sha, bytes: 1 } }, /32 lowercase hex digits/],
      [{ upload: { id: 'a'.repeat(32), sha256: 'x', bytes: 1 } }, /sha256 must be 64 lowercase hex digits/],
      [{ upload: { id: 'a'.repeat(32), sha256: sha, bytes: MAX_SHARD_BYTES + 1 } }, /MAX_SHARD_BYTES/],
      [{ upload: { id: 'a'.repeat(32), sha256: sha, bytes: -1 } }, /whole number of bytes/],
      [{ upload: { id: 'a'.repeat(32), sha256: sha, bytes: '10' } }, /whole number of bytes/],
      [{ fileName: '../etc/passwd' }, /base name/],
      [{ fileName: '' }, /base name/],
    ];
    for (const [extra, message] of cases) {
      const problem = shardOfferProblem(offer(extra));
      expect(problem?.code, JSON.stringify(extra)).toBe(SHARD_UPLOAD_INVALID);
      expect(problem!.message).toMatch(message);
    }
  });

  it('the spool path comes from an id only', () => {
    expect(uploadSpoolPath('/store/', 'c'.repeat(32))).toBe(`/store/uploads/${'c'.repeat(32)}`);
    expect(() => uploadSpoolPath('/store', '../objects/x')).toThrow(/not an upload id/);
  });
});

describe('shard sizes and chunks', () => {
  it('a shard has at most MAX_SHARD_BYTES', () => {
    expect(shardSizeProblem(0)).toBeNull();
    expect(shardSizeProblem(MAX_SHARD_BYTES)).toBeNull();
    expect(shardSizeProblem(MAX_SHARD_BYTES + 1)).toBe(
      `the shard has 32.0 MiB (${MAX_SHARD_BYTES + 1} bytes); a shard has at most 32.0 MiB (MAX_SHARD_BYTES): split it into more shards`,
    );
    expect(shardSizeProblem(1.5)).toMatch(/whole number/);
  });

  it('chunks come in order, each bounded, never past the declared size', () => {
    const start = { dataset: 'train', id: 'a'.repeat(32), bytes: SHARD_UPLOAD_CHUNK_BYTES + 10 };
    const bytes = (n: number) => new Uint8Array(n);
    expect(uploadChunkProblem(start, 0, 0, bytes(SHARD_UPLOAD_CHUNK_BYTES))).toBeNull();
    expect(uploadChunkProblem(start, SHARD_UPLOAD_CHUNK_BYTES, SHARD_UPLOAD_CHUNK_BYTES, bytes(10))).toBeNull();
    expect(uploadChunkProblem(start, 0, 0, bytes(SHARD_UPLOAD_CHUNK_BYTES + 1))).toMatch(/at most/);
    expect(uploadChunkProblem(start, 0, 5, bytes(1))).toBe('the next chunk starts at byte 0, not 5');
    expect(uploadChunkProblem(start, SHARD_UPLOAD_CHUNK_BYTES, SHARD_UPLOAD_CHUNK_BYTES, bytes(11))).toMatch(
      /declared .* bytes; this chunk goes past them/,
    );
    expect(uploadChunkProblem(start, 0, 0, bytes(0))).toBe('a chunk has at least 1 byte');
    expect(uploadChunkProblem({ ...start, bytes: 0 }, 0, 0, bytes(0))).toBeNull();
    expect(uploadChunkProblem(start, 0, 0, 'text')).toBe('a chunk is bytes');
    expect(uploadChunkProblem(start, 0, 0, new Uint16Array(2))).toBe('a chunk is bytes');
  });
});
