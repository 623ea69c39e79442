import type { Credential } from '../security/credentials.js';
import crypto from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Context } from '@temporalio/activity';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Slot } from '../domain/fleet.js';
import { matchGpuRows, type HealthQueryReading, type HostHealthReport } from '../domain/health.js';
import type { EnvironmentRecord } from '../catalog/record.js';
import { recordedVariables } from '../domain/environment.js';
import { READ_LOG_PAGE_BYTES } from '../domain/limits.js';
import { REDACTED, runSecretValues, scrubText, secretForms } from '../domain/redact.js';
import { heldRunSecrets, workerSecretValues } from '../gpu-worker/run-secrets.js';
import { queryHealth } from '../gpu-worker/health-query.js';
import { driverVersion, softwareVersions } from '../gpu-worker/software.js';
import { lockfileHashes } from '../gpu-worker/lockfiles.js';
import { ExperimentRequestSchema, formatIssues, type ExperimentRequest } from '../domain/request.js';
import { commitExists, commitPatch, localRepository } from '../gpu-worker/git.js';
import { checkOnHost, recheckOnLeasedHost } from './request-check.js';
import { runFiles } from '../gpu-worker/run-files.js';
import type { ValidationReport } from '../workflows/experiment-state.js';
import { PRIVATE_DIR_MODE, PRIVATE_FILE } from '../security/files.js';
import type { FleetStore } from '../store/store.js';
import { runDocument } from '../store/fence.js';

export interface HostDeps {
  host: string;
  workDir: string;
  slots: Slot[];
  /** The root dataset references resolve under (never outside it). */
  datasetsDir: string;
  /** The root checkpoints outside the commit's tree resolve under; default <workDir>/checkpoints. */
  checkpointsDir?: string;
  /** The host's credential, for the fleet remote's signed fetches. */
  credential?: Credential;
  /** The fleet store (patches, and artifacts fetched for evaluations on this host). */
  store?: FleetStore;
}

/** The most one readPatch page returns, whatever the caller asks for (activity results stay small). */
export const READ_PATCH_PAGE_BYTES = 256 * 1024;

/** The longest a readLog call waits for a log to grow (its activity heartbeats meanwhile). */
export const READ_LOG_MAX_WAIT_MS = 20_000;

/** Waits until the file is longer than `offset` or `waitMs` passed, heartbeating so a cancel reaches it. */
async function logGrowth(file: string, offset: number, waitMs: number): Promise<void> {
  const until = Date.now() + waitMs;
  for (;;) {
    const size = await fs.stat(file).then(
      (stat) => stat.size,
      () => 0,
    );
    if (size > offset || Date.now() >= until) return;
    Context.current().heartbeat();
    await sleep(Math.min(250, until - Date.now()), undefined, { signal: Context.current().cancellationSignal });
  }
}

/** `bytes` without a UTF-8 character cut at its end (when more follows, the next page starts with it). */
function wholeCharacters(bytes: Buffer, moreFollows: boolean): Buffer {
  if (!moreFollows) return bytes;
  for (let back = 1; back <= Math.min(3, bytes.length); back++) {
    const byte = bytes[bytes.length - back]!;
    if ((byte & 0xc0) !== 0x80) {
      // A lead byte: keep its character only if all of its continuation bytes are here.
      const need = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
      return need > back && bytes.length > back ? bytes.subarray(0, bytes.length - back) : bytes;
    }
  }
  return bytes;
}

/**
 * Bytes [start, start + length) of a log as scrubbed text. Secret values are found in a window
 * reaching the longest one beyond both ends, so a value cut by the page (or by the caller's offset)
 * is still replaced; the page never ends inside one, and ends at a line's end where a line fits, so
 * what only looks like a credential is judged whole. Returns the text and where the page ended.
 */
async function readScrubbedPage(
  handle: fs.FileHandle,
  size: number,
  start: number,
  length: number,
  values: readonly string[],
): Promise<{ text: string; end: number }> {
  const needles = secretForms(values).map((value) => Buffer.from(value, 'utf8'));
  const reach = needles.reduce((most, needle) => Math.max(most, needle.length), 0);
  const from = Math.max(0, start - reach);
  const buffer = Buffer.alloc(Math.min(size, start + length + reach) - from);
  const { bytesRead } = await handle.read(buffer, 0, buffer.length, from);
  const window = buffer.subarray(0, bytesRead);
  const found: [number, number][] = [];
  for (const needle of needles) {
    for (let i = window.indexOf(needle); i >= 0; i = window.indexOf(needle, i + 1))
      found.push([from + i, from + i + needle.length]);
  }
  found.sort((a, b) => a[0] - b[0]);
  const ranges: [number, number][] = [];
  for (const range of found) {
    const last = ranges.at(-1);
    if (last && range[0] < last[1]) last[1] = Math.max(last[1], range[1]);
    else ranges.push([...range]);
  }
  let end = Math.min(start + length, from + bytesRead);
  const outOfSecrets = () => {
    const inside = ranges.find(([a, b]) => a < end && end < b);
    if (inside) end = inside[0] > start ? inside[0] : inside[1];
  };
  outOfSecrets();
  if (end < size) {
    const newline = window.lastIndexOf(0x0a, end - 1 - from);
    if (newline >= 0 && from + newline + 1 > start) end = from + newline + 1;
    outOfSecrets();
  }
  end = start + wholeCharacters(window.subarray(start - from, end - from), end < size).length;
  const parts: Buffer[] = [];
  let at = start;
  for (const [a, b] of ranges) {
    if (b <= at || a >= end) continue;
    if (a > at) parts.push(window.subarray(at - from, a - from));
    parts.push(Buffer.from(REDACTED));
    at = Math.min(b, end);
  }
  parts.push(window.subarray(at - from, end - from));
  return { text: scrubText(Buffer.concat(parts).toString('utf8')), end };
}

/** Activities on a worker's host queue: validation, log reads, host description. */
/**
 * Where and with what a run trains: this host's software and driver, the commit's lockfiles, the
 * variables the run sees (secret values redacted). `repo` is the host's copy of the run's repository.
 */
export async function environmentRecord(
  host: string,
  slots: Slot[],
  repo: string,
  request: ExperimentRequest,
): Promise<EnvironmentRecord> {
  const lockfiles = await lockfileHashes(repo, request.commit);
  const hasGpus = slots.some((slot) => slot.acceleratorClass !== 'cpu');
  return {
    host,
    software: await softwareVersions(),
    driverVersion: hasGpus ? await driverVersion() : null,
    lockfiles,
    variables: recordedVariables(process.env, request, [...runSecretValues(request), ...workerSecretValues()]),
  };
}

export function createHostActivities(deps: HostDeps) {
  const checkpointsDir = deps.checkpointsDir ?? path.join(deps.workDir, 'checkpoints');
  const roots = { host: deps.host, datasetsDir: deps.datasetsDir, checkpointsDir, store: deps.store };

  /**
   * The patch as a fleet store object, so it outlives this host. A store that cannot take it now
   * costs nothing but that: the orchestrator reads the patch from this host instead (storePatch).
   */
  async function patchToStore(experimentId: string, patch: string): Promise<string | null> {
    const store = deps.store;
    if (!store) return null;
    try {
      const stored = await store.putBytes(Buffer.from(patch, 'utf8'));
      // Named by the run's documents too, so the store's own usage counts it as the run's patch.
      await store.putDocument(runDocument(experimentId, 'patch'), { sha256: stored.sha256, bytes: stored.bytes });
      return stored.uri;
    } catch {
      return null;
    }
  }

  async function check(
    experimentId: string,
    request: ExperimentRequest,
  ): Promise<Omit<ValidationReport, 'ok' | 'reason' | 'host'>> {
    // The client checked it too, but a request may come from any client holding a credential.
    const parsed = ExperimentRequestSchema.safeParse(request);
    if (!parsed.success) throw new Error(`invalid experiment request: ${formatIssues(parsed.error).join('; ')}`);
    const repo = await localRepository(request.repo, deps.workDir, request.commit, deps.credential);
    if (!(await commitExists(repo, request.commit)))
      throw new Error(`commit ${request.commit} does not exist in ${request.repo}`);
    const { resolvedConfig, interpreter } = await checkOnHost(roots, repo, request);

    const files = runFiles(deps.workDir, experimentId);
    await fs.mkdir(files.dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    const { patch, files: changed } = await commitPatch(repo, request.commit);
    await fs.writeFile(files.patch, patch, PRIVATE_FILE);
    const bytes = Buffer.byteLength(patch);
    const uri = await patchToStore(experimentId, patch);
    return {
      resolvedConfig,
      interpreter,
      patch: {
        path: files.patch,
        sha256: crypto.createHash('sha256').update(patch).digest('hex'),
        bytes,
        files: changed,
        ...(uri ? { uri } : {}),
      },
    };
  }

  return {
    /** Everything that can be checked before a GPU is touched. Problems are results, not errors. */
    async validateRequest(experimentId: string, request: ExperimentRequest): Promise<ValidationReport> {
      try {
        return { ok: true, reason: null, host: deps.host, ...(await check(experimentId, request)) };
      } catch (error) {
        return {
          ok: false,
          reason: (error as Error).message,
          host: deps.host,
          resolvedConfig: null,
          patch: null,
          interpreter: null,
        };
      }
    },

    /**
     * The environment a run trains in on this host: versions, lockfile hashes, and variables (the
     * worker's allowlisted ones, the request's own; secrets redacted by name and scrubbed by value).
     */
    async captureEnvironment(request: ExperimentRequest): Promise<EnvironmentRecord> {
      const repo = await localRepository(request.repo, deps.workDir, request.commit, deps.credential);
      // Asked of the leased host before the run is `running`: what validation found elsewhere must hold here.
      await recheckOnLeasedHost(roots, repo, request);
      return environmentRecord(deps.host, deps.slots, repo, request);
    },

    /**
     * One page of a run's raw log: at most READ_LOG_PAGE_BYTES from `offset` (a little more where a
     * secret crosses the end), ending on a whole UTF-8 character, so any log is read in bounded
     * pieces (`nextOffset` is where the next starts). Scrubbed: the supervisor replaces the run's
     * secret values as it writes the raw log; a page is scrubbed again of the values this worker
     * holds (output it wrote itself) and of whatever looks like a credential.
     */
    async readLog(
      experimentId: string,
      offset: number,
      maxBytes: number,
      waitMs = 0,
    ): Promise<{ text: string; nextOffset: number; size: number }> {
      const files = runFiles(deps.workDir, experimentId);
      // A follower (`logs -f`) long-polls: the call returns once the log has grown past its offset,
      // or after the wait, so one read per growth replaces one read per second.
      await logGrowth(files.log, offset, Math.min(Math.max(0, waitMs), READ_LOG_MAX_WAIT_MS));
      let handle;
      try {
        handle = await fs.open(files.log, 'r');
      } catch {
        return { text: '', nextOffset: offset, size: 0 };
      }
      try {
        const { size } = await handle.stat();
        const start = Math.min(Math.max(0, Math.floor(offset) || 0), size);
        const length = Math.max(0, Math.min(Math.floor(maxBytes) || 0, READ_LOG_PAGE_BYTES, size - start));
        const values = [...heldRunSecrets(experimentId), ...workerSecretValues()];
        const page = await readScrubbedPage(handle, size, start, length, values);
        return { text: page.text, nextOffset: page.end, size };
      } finally {
        await handle.close();
      }
    },

    /**
     * One page of the patch validation kept for a run: at most READ_PATCH_PAGE_BYTES from `offset`,
     * base64 (the orchestrator joins the pages and checks the whole against its sha256).
     */
    async readPatch(experimentId: string, offset: number, maxBytes: number): Promise<{ data: string; size: number }> {
      const handle = await fs.open(runFiles(deps.workDir, experimentId).patch, 'r');
      try {
        const { size } = await handle.stat();
        const start = Math.min(Math.max(0, Math.floor(offset) || 0), size);
        const buffer = Buffer.alloc(
          Math.max(0, Math.min(Math.floor(maxBytes) || 0, READ_PATCH_PAGE_BYTES, size - start)),
        );
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, start);
        return { data: buffer.subarray(0, bytesRead).toString('base64'), size };
      } finally {
        await handle.close();
      }
    },

    /** Measures what the scheduled health check judges: GPU temperature, memory, ECC, free disk. */
    async checkHealth(): Promise<HostHealthReport> {
      const expectedGpus = deps.slots
        .filter((slot) => slot.acceleratorClass !== 'cpu')
        .map(({ slotId, index, uuid }) => ({ slotId, index, uuid }));
      let reading: HealthQueryReading = { rows: [], lostGpus: [], said: [] };
      let error: string | null = null;
      try {
        if (expectedGpus.length > 0) reading = (await queryHealth()) ?? reading;
      } catch (failure) {
        error = (failure as Error).message;
      }
      const stats = await fs.statfs(deps.workDir).catch(() => undefined);
      return {
        host: deps.host,
        checkedAt: new Date().toISOString(),
        gpus: matchGpuRows(expectedGpus, reading.rows),
        expectedGpus,
        lostGpus: reading.lostGpus,
        nvidiaSmiSaid: reading.said,
        slotIds: deps.slots.map((slot) => slot.slotId),
        diskFreeMb: stats ? Math.floor((stats.bavail * stats.bsize) / 1024 / 1024) : null,
        error,
      };
    },

    async describeHost(): Promise<{ host: string; slots: Slot[]; pid: number }> {
      return { host: deps.host, slots: deps.slots, pid: process.pid };
    },
  };
}
