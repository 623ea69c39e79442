import type { Client } from '@temporalio/client';
import type { StoredLog } from '../../activities/store.js';
import { HostUnreachableError, LogReader } from '../../client/logs.js';
import { isTerminal } from '../../domain/experiment.js';
import { LOGS_DEFAULT_TAIL_BYTES } from '../../domain/limits.js';
import { connectClient } from '../../temporal/connection.js';
import type { LogPage } from '../../workflows/read-log.js';
import { CliError, safeText } from '../output.js';
import { snapshotOf } from './experiments.js';

/** How long a follower's read waits on the host for the log to grow. */
const FOLLOW_WAIT_MS = 10_000;
/** How often a follower whose host is gone looks for the run's next attempt. */
const REPLACEMENT_POLL_MS = 2000;

/**
 * A log chunk for a terminal: progress lines separated by a bare \r each get a line of their own,
 * and every other control character is shown escaped. Through a pipe the log stays byte-exact.
 */
function terminalLogText(text: string): string {
  return safeText(text.replace(/\r\n?/g, '\n'), { multiline: true });
}

const write = (text: string) => process.stdout.write(process.stdout.isTTY ? terminalLogText(text) : text);

/** One source of pages (the host, or the store's copy of one attempt), printed from a line start when tailed. */
interface PageSource {
  page(offset: number): Promise<LogPage>;
}

/**
 * Prints a log from `offset` (or, without --all, from its last MiB at a line start, said on
 * stderr) to its current end; returns where it stopped.
 */
async function printPages(
  source: PageSource,
  id: string,
  all: boolean | undefined,
  offset: number | undefined,
): Promise<number> {
  let skipToLineStart = false;
  if (offset === undefined) {
    offset = 0;
    if (!all) {
      const { size } = await source.page(Number.MAX_SAFE_INTEGER);
      if (size > LOGS_DEFAULT_TAIL_BYTES) {
        console.error(
          `expctl: ${id}: the log has ${size} bytes; showing its last ${LOGS_DEFAULT_TAIL_BYTES} (--all for everything)`,
        );
        skipToLineStart = true;
        offset = size - LOGS_DEFAULT_TAIL_BYTES;
      }
    }
  }
  for (;;) {
    const page = await source.page(offset);
    // A tail starts at the first whole line.
    if (skipToLineStart) {
      skipToLineStart = false;
      const newline = page.text.indexOf('\n');
      page.text = newline >= 0 ? page.text.slice(newline + 1) : '';
    }
    write(page.text);
    if (page.nextOffset <= offset && page.nextOffset < page.size)
      throw new CliError(`${id}: the log's page at byte ${offset} could not be read whole`);
    offset = page.nextOffset;
    if (page.nextOffset >= page.size) return offset;
  }
}

const storedSource = (reader: LogReader, attempt: number): PageSource => ({
  page: (offset) => reader.storedPage(attempt, offset),
});

/** The attempt being read: its host, the reader of that host, where the next page starts. */
interface Segment {
  attempt: number;
  host: string;
  reader: LogReader;
  offset: number | undefined;
}

/** What a shipped log's stderr line says of how whole it is. */
const wholeness = (log: StoredLog) =>
  log.complete ? 'complete' : `as last shipped ${log.updatedAt}: its last seconds may be missing`;

/**
 * `expctl logs ID`: the run's log from the host that runs it, while that host answers; from the
 * fleet store (the log the worker shipped every few seconds) when it does not. Earlier attempts
 * that ran on other hosts (the run was re-placed) come first, from the store. Each part is
 * announced on stderr with where it was read from.
 */
export async function logsCommand(id: string, options: { follow?: boolean; all?: boolean }): Promise<void> {
  const client = await connectClient();
  /** Attempts whose lines were printed (from their host or from the store). */
  const printed = new Set<number>();
  let current: (Segment & { announced: boolean }) | undefined;
  const readers: LogReader[] = [];
  try {
    for (;;) {
      const snapshot = await snapshotOf(client, id);
      const ended = isTerminal(snapshot.status);
      if (!snapshot.worker) {
        if (!options.follow || ended) {
          console.error(`expctl: ${id} has no log (status ${snapshot.status}: it never started training)`);
          return;
        }
        // Not placed yet: the experiment's state is a query, nothing is started while waiting.
        await new Promise((r) => setTimeout(r, 1000));
        continue;
      }
      const attempt = Math.max(1, snapshot.attempts);
      if (!current || current.attempt !== attempt || current.host !== snapshot.worker) {
        if (current) printed.add(current.attempt);
        const reader = current?.host === snapshot.worker ? current.reader : new LogReader(client, id, snapshot.worker);
        if (reader !== current?.reader) readers.push(reader);
        // Earlier attempts on other hosts: their lines are in the store only (a host's own log holds
        // every attempt it ran).
        for (const log of attempt > 1 ? await earlierAttempts(reader, id) : []) {
          if (log.attempt >= attempt || printed.has(log.attempt) || log.host === snapshot.worker) continue;
          console.error(
            `expctl: ${id}: attempt ${log.attempt} (on ${log.host}), read from the fleet store (${wholeness(log)})`,
          );
          await printPages(storedSource(reader, log.attempt), id, options.all, undefined);
          printed.add(log.attempt);
        }
        // A follower that moved on to the next attempt reads it from its start.
        const offset = current && current.host !== snapshot.worker ? 0 : current?.offset;
        current = { attempt, host: snapshot.worker, reader, offset, announced: false };
      }
      try {
        if (!current.announced) {
          // Said once the host has answered (a size-only read), not before.
          await current.reader.page(Number.MAX_SAFE_INTEGER);
          console.error(`expctl: ${id}: attempt ${current.attempt}, read from the host ${current.host}`);
          current.announced = true;
        }
        current.offset = await printPages(current.reader, id, options.all, current.offset);
        if (!options.follow || ended) return;
        // Following: the host holds the read until the log grows (or 10 s pass), then the state is checked again.
        const page = await current.reader.page(current.offset, FOLLOW_WAIT_MS);
        write(page.text);
        current.offset = page.nextOffset;
      } catch (error) {
        if (!(error instanceof HostUnreachableError)) throw error;
        for (const shown of await fromTheStore(current, id, printed, error, options.all)) printed.add(shown);
        printed.add(current.attempt);
        // The host is gone: a follower reads the run's next attempt (re-placed elsewhere), if there is one.
        if (!options.follow || ended || !(await replaced(client, id, current))) return;
      }
    }
  } finally {
    for (const reader of readers) await reader.close();
  }
}

/** The shipped logs of a re-placed run; a store that cannot be read is said, and the host's log still read. */
async function earlierAttempts(reader: LogReader, id: string): Promise<StoredLog[]> {
  return reader.storedLogs().catch((error: Error) => {
    console.error(`expctl: ${id}: the earlier attempts' logs could not be read from the fleet store: ${error.message}`);
    return [];
  });
}

/**
 * The log of every attempt the unanswering host ran that was not printed yet, from the store: the
 * current one, or (while a re-placed run waits for its next host) the one the host lost.
 * Refused when none was shipped.
 */
async function fromTheStore(
  current: Segment,
  id: string,
  printed: ReadonlySet<number>,
  unreachable: HostUnreachableError,
  all: boolean | undefined,
): Promise<number[]> {
  const stored = await current.reader.storedLogs().catch((error: Error) => {
    throw new CliError(`${id}: ${unreachable.message}; the fleet store could not be read either: ${error.message}`);
  });
  const logs = stored.filter(
    (shipped) => shipped.host === current.host && shipped.attempt <= current.attempt && !printed.has(shipped.attempt),
  );
  if (logs.length === 0)
    throw new CliError(
      `${id}: ${unreachable.message}; the fleet store has no shipped log of attempt ${current.attempt}`,
    );
  // Host offsets and shipped offsets differ (scrubbing, earlier attempts on the host): read whole.
  if (current.offset !== undefined)
    console.error(`expctl: ${id}: the store's copy starts again; lines already shown from the host come again`);
  for (const log of logs) {
    console.error(
      `expctl: ${id}: the worker host ${current.host} did not answer; attempt ${log.attempt}, read from the fleet store (${wholeness(log)})`,
    );
    await printPages(storedSource(current.reader, log.attempt), id, all, undefined);
  }
  return logs.map((log) => log.attempt);
}

/** Waits until the run has a next attempt (true) or ends on this one (false). */
async function replaced(client: Client, id: string, current: { attempt: number; host: string }): Promise<boolean> {
  for (;;) {
    await new Promise((r) => setTimeout(r, REPLACEMENT_POLL_MS));
    const next = await snapshotOf(client, id);
    if (next.attempts !== current.attempt || (next.worker !== null && next.worker !== current.host)) return true;
    if (isTerminal(next.status)) return false;
  }
}
