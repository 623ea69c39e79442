import fs from 'node:fs/promises';

/** Reads a growing log file incrementally and keeps its last lines (for progress and the tail). */
export class LogFollower {
  private offset = 0;
  private partial = '';
  private lines: string[] = [];

  constructor(
    private readonly file: string,
    private readonly keepLines = 200,
  ) {}

  async poll(): Promise<void> {
    let handle;
    try {
      handle = await fs.open(this.file, 'r');
    } catch {
      return;
    }
    try {
      const { size } = await handle.stat();
      while (this.offset < size) {
        const length = Math.min(1 << 20, size - this.offset);
        const buffer = Buffer.alloc(length);
        const { bytesRead } = await handle.read(buffer, 0, length, this.offset);
        if (bytesRead === 0) break;
        this.offset += bytesRead;
        const text = this.partial + buffer.subarray(0, bytesRead).toString('utf8');
        const parts = text.split(/\r?\n|\r/);
        this.partial = parts.pop() ?? '';
        this.lines.push(...parts);
        if (this.lines.length > this.keepLines) this.lines.splice(0, this.lines.length - this.keepLines);
      }
    } finally {
      await handle.close();
    }
  }

  /** Complete lines seen so far, plus an unterminated last line if any. */
  tailLines(): string[] {
    return this.partial ? [...this.lines, this.partial] : [...this.lines];
  }
}
