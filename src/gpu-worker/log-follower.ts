import fs from 'node:fs/promises';
import { LOG_TAIL_BYTES } from '../domain/limits.js';

export interface LogFollowerLimits {
  /** Lines kept (the most recent). */
  keepLines: number;
  /** Bytes kept in all lines together. */
  keepBytes: number;
  /** Bytes kept of one line: longer lines keep their start and end around a visible marker. */
  maxLineBytes: number;
}

export const DEFAULT_FOLLOWER_LIMITS: LogFollowerLimits = { keepLines: 200, keepBytes: 256 * 1024, maxLineBytes: 4096 };

const NEWLINE = 0x0a;
const RETURN = 0x0d;

/** Text of raw bytes: invalid UTF-8 becomes U+FFFD, control characters other than tab become visible. */
function decode(bytes: Buffer): string {
  // eslint-disable-next-line no-control-regex
  return bytes.toString('utf8').replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '\uFFFD');
}

/**
 * One line in the making, bounded: it keeps the first and last `half` bytes and counts the rest,
 * so a 100 MB line costs a few KiB and still shows how it began and ended.
 */
class BoundedLine {
  private head: Buffer[] = [];
  private headBytes = 0;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  private dropped = 0;

  constructor(private readonly half: number) {}

  get empty(): boolean {
    return this.headBytes === 0 && this.tailBytes === 0 && this.dropped === 0;
  }

  add(bytes: Buffer): void {
    if (this.headBytes < this.half) {
      const take = Math.min(bytes.length, this.half - this.headBytes);
      this.head.push(Buffer.from(bytes.subarray(0, take)));
      this.headBytes += take;
      bytes = bytes.subarray(take);
    }
    if (bytes.length === 0) return;
    this.tail.push(Buffer.from(bytes.subarray(-this.half)));
    this.tailBytes += Math.min(bytes.length, this.half);
    this.dropped += Math.max(0, bytes.length - this.half);
    if (this.tailBytes > this.half) {
      const joined = Buffer.concat(this.tail);
      this.dropped += joined.length - this.half;
      this.tail = [joined.subarray(-this.half)];
      this.tailBytes = this.half;
    }
  }

  text(): string {
    const head = decode(Buffer.concat(this.head));
    const tail = decode(Buffer.concat(this.tail));
    return this.dropped > 0 ? `${head} [… ${this.dropped} bytes cut by expctl …] ${tail}` : head + tail;
  }
}

/**
 * Reads a growing log file incrementally and keeps a bounded tail of its lines (for progress, the
 * metric block and the outcome's log tail). Memory stays bounded whatever the run prints: huge
 * lines keep their ends only, binary bytes are made printable, and only recent lines are kept.
 */
export class LogFollower {
  private offset = 0;
  private lines: string[] = [];
  private linesBytes = 0;
  private partial: BoundedLine;
  private lastWasReturn = false;
  private readonly limits: LogFollowerLimits;

  constructor(
    private readonly file: string,
    limits: Partial<LogFollowerLimits> = {},
  ) {
    this.limits = { ...DEFAULT_FOLLOWER_LIMITS, ...limits };
    this.partial = new BoundedLine(this.limits.maxLineBytes >> 1);
  }

  /**
   * When the file was last written, as of the last poll that read new bytes (its mtime, from the
   * same stat as the size read up to): the time the last byte read was written, however late the
   * poll itself ran. Null before any bytes were read.
   */
  lastWriteMs: number | null = null;

  /** Bytes of the file read so far. */
  get bytesRead(): number {
    return this.offset;
  }

  /**
   * Reads what was appended since the last poll. Polls run one at a time: two overlapping reads
   * from one offset would take the same bytes twice and then skip as many (a loaded host's
   * heartbeats overlap), which duplicated progress lines and lost the `---` block.
   */
  poll(): Promise<void> {
    const next = this.polling.then(() => this.readAppended());
    this.polling = next.catch(() => undefined);
    return next;
  }

  private polling: Promise<void> = Promise.resolve();

  private async readAppended(): Promise<void> {
    // Most polls find nothing new (a run prints now and then; several readers poll each log): one
    // stat answers them, without opening, reading and closing the file.
    const grown = await fs.stat(this.file).then(
      (stats) => stats.size > this.offset,
      () => false,
    );
    if (!grown) return;
    let handle;
    try {
      handle = await fs.open(this.file, 'r');
    } catch {
      return;
    }
    try {
      const { size, mtimeMs } = await handle.stat();
      if (size > this.offset) this.lastWriteMs = mtimeMs;
      const buffer = Buffer.alloc(Math.min(1 << 20, Math.max(1, size - this.offset)));
      while (this.offset < size) {
        const length = Math.min(buffer.length, size - this.offset);
        const { bytesRead } = await handle.read(buffer, 0, length, this.offset);
        if (bytesRead === 0) break;
        this.offset += bytesRead;
        this.consume(buffer.subarray(0, bytesRead));
      }
    } finally {
      await handle.close();
    }
  }

  /** Splits on \n, \r\n and \r (progress bars redraw with \r). */
  private consume(chunk: Buffer): void {
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i];
      if (byte !== NEWLINE && byte !== RETURN) {
        this.lastWasReturn = false;
        continue;
      }
      const skip = byte === NEWLINE && this.lastWasReturn && i === start;
      this.lastWasReturn = byte === RETURN;
      if (skip) {
        start = i + 1;
        continue;
      }
      this.partial.add(chunk.subarray(start, i));
      this.pushLine(this.partial.text());
      this.partial = new BoundedLine(this.limits.maxLineBytes >> 1);
      start = i + 1;
    }
    if (start < chunk.length) this.partial.add(chunk.subarray(start));
  }

  private pushLine(line: string): void {
    this.lines.push(line);
    this.linesBytes += Buffer.byteLength(line) + 1;
    while (
      this.lines.length > this.limits.keepLines ||
      (this.linesBytes > this.limits.keepBytes && this.lines.length > 1)
    ) {
      this.linesBytes -= Buffer.byteLength(this.lines.shift()!) + 1;
    }
  }

  /** Complete lines kept so far, plus an unterminated last line if any. */
  tailLines(): string[] {
    return this.partial.empty ? [...this.lines] : [...this.lines, this.partial.text()];
  }

  /** The most recent `maxLines` lines, at most `maxBytes` bytes of UTF-8 together (default 64 KiB). */
  tailText(maxBytes = LOG_TAIL_BYTES, maxLines = this.limits.keepLines): string {
    return capTailBytes(this.tailLines().slice(-maxLines).join('\n'), maxBytes);
  }
}

/** The end of `text` within `maxBytes` bytes of UTF-8, cut at a line start where it was cut at all. */
export function capTailBytes(text: string, maxBytes = LOG_TAIL_BYTES): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return text;
  const marker = '[… earlier output cut by expctl …]\n';
  let tail = bytes.subarray(bytes.length - (maxBytes - Buffer.byteLength(marker))).toString('utf8');
  const newline = tail.indexOf('\n');
  if (newline >= 0) tail = tail.slice(newline + 1);
  else tail = tail.replace(/^\uFFFD+/, '');
  return marker + tail;
}

/** A metric block as the record keeps it: at most 64 keys, string values cut at 256 characters. */
export function boundMetrics(metrics: Record<string, number | string> | null): Record<string, number | string> | null {
  if (!metrics) return null;
  const entries = Object.entries(metrics).slice(0, 64);
  return Object.fromEntries(
    entries.map(([key, value]) => [
      key.slice(0, 128),
      typeof value === 'string' && value.length > 256 ? `${value.slice(0, 256)}…` : value,
    ]),
  );
}
