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
    await this.follower.poll();
    const line = this.latestProgressLine();
    if (line === null || line === this.lastLine) return;
    this.lastLine = line;
    const at = this.now();
    this.firstProgressMs ??= at;
    this.lastProgressMs = at;
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
