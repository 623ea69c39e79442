import { parseProgressLine } from '../domain/metrics.js';
import { LogFollower } from './log-follower.js';

/** How often the log is read for progress-line times: fine enough for startup/evaluation spans. */
export const PROGRESS_POLL_MS = 250;

/**
 * Notes when a run's first progress line appears and when its progress last changed, reading the
 * log on its own schedule (independent of heartbeats, with its own reader so the two never race).
 */
export class ProgressClock {
  firstProgressMs: number | null = null;
  lastProgressMs: number | null = null;
  private lastLine: string | null = null;
  /** When the previous read began: a line first seen now was written after it. */
  private previousReadMs: number | null = null;
  private readonly follower: LogFollower;
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> = Promise.resolve();

  constructor(
    logFile: string,
    private readonly now: () => number = Date.now,
  ) {
    this.follower = new LogFollower(logFile, { keepLines: 20 });
  }

  /** Starts from the log's current end, so lines written before (setup output) are not progress. */
  async start(): Promise<void> {
    this.previousReadMs = this.now();
    await this.follower.poll();
    this.lastLine = this.latestProgressLine();
    this.timer = setInterval(() => {
      this.polling = this.polling.then(() => this.observe()).catch(() => undefined);
    }, PROGRESS_POLL_MS);
  }

  /** Stops the schedule after one last read. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.polling;
    await this.observe().catch(() => undefined);
  }

  private async observe(): Promise<void> {
    const readAt = this.now();
    await this.follower.poll();
    const since = this.previousReadMs;
    this.previousReadMs = readAt;
    const line = this.latestProgressLine();
    if (line === null || line === this.lastLine) return;
    this.lastLine = line;
    const at = this.writtenAt(line, since);
    this.firstProgressMs ??= at;
    this.lastProgressMs = at;
  }

  /**
   * When the progress line was written. A loaded host runs this poll late, so "now" would shorten
   * the evaluation span (last progress line → exit); when the line is the last one in the file,
   * the file's mtime is when it was written, held between the previous read and now (a file
   * system with coarse timestamps cannot move it before the previous read).
   */
  private writtenAt(line: string, previousReadMs: number | null): number {
    const now = this.now();
    const written = this.follower.lastWriteMs;
    if (written === null || this.follower.tailLines().at(-1)?.trim() !== line) return now;
    return Math.min(now, Math.max(previousReadMs ?? written, written));
  }

  private latestProgressLine(): string | null {
    const lines = this.follower.tailLines();
    for (let i = lines.length - 1; i >= 0; i--) {
      const line = lines[i]!.trim();
      if (line === '---') return null; // the summary block: training is over
      if (parseProgressLine(line).step !== undefined) return line;
    }
    return null;
  }
}
