import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Slot } from '../domain/fleet.js';
import type { HostHealthReport } from '../domain/health.js';
import type { EnvironmentRecord } from '../catalog/record.js';
import { redactEnv } from '../domain/redact.js';
import { queryGpus } from '../gpu-worker/discover.js';
import { softwareVersions } from '../gpu-worker/software.js';
import type { ExperimentRequest } from '../domain/request.js';
import { commitExists, commitPatch, fileInCommit, localRepository, readFileAtCommit, whichProgram } from '../gpu-worker/git.js';
import { runFiles } from '../gpu-worker/run-files.js';
import type { ValidationReport } from '../workflows/experiment-state.js';

export interface HostDeps {
  host: string;
  workDir: string;
  slots: Slot[];
  /** Where dataset references without an absolute path are looked up. */
  datasetsDir: string;
}

/** Patches above this size are recorded truncated (Temporal payloads stay well under their limit). */
const PATCH_RECORD_LIMIT = 1 << 20;
const LOCKFILES = ['uv.lock', 'requirements.txt', 'poetry.lock', 'pyproject.toml', 'Pipfile.lock', 'environment.yml', 'package-lock.json'];

/** The most one readLog page returns, whatever the caller asks for (activity results stay small). */
export const READ_LOG_PAGE_BYTES = 256 * 1024;

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

/** Arguments that name files in the repository (scripts, configs), as opposed to flags and values. */
const FILE_ARGUMENT = /^[^-][^=]*\.(py|sh|js|mjs|ts|json|yaml|yml|toml|cfg|ini)$/;

/** Activities on a worker's host queue: validation, log reads, host description. */
export function createHostActivities(deps: HostDeps) {
  async function check(experimentId: string, request: ExperimentRequest): Promise<Omit<ValidationReport, 'ok' | 'reason' | 'host'>> {
    const repo = await localRepository(request.repo, deps.workDir, request.commit);
    if (!(await commitExists(repo, request.commit))) throw new Error(`commit ${request.commit} does not exist in ${request.repo}`);

    const [program, ...args] = request.command as [string, ...string[]];
    let interpreter: string | null;
    if (program.includes('/')) {
      const inTree = await fileInCommit(repo, request.commit, program);
      interpreter = inTree ? program : (await fs.access(program).then(() => program, () => null));
      if (!interpreter) throw new Error(`command ${program} is neither in the commit's tree nor on this host`);
    } else {
      interpreter = await whichProgram(program);
      if (!interpreter) throw new Error(`command "${program}" is not installed on ${deps.host} (not found on PATH)`);
    }
    for (const arg of args.filter((a) => FILE_ARGUMENT.test(a))) {
      if (!(await fileInCommit(repo, request.commit, arg))) throw new Error(`${arg} (named in the command) does not exist in commit ${request.commit.slice(0, 12)}`);
    }

    let resolvedConfig: unknown = null;
    if (request.configPath) {
      if (!(await fileInCommit(repo, request.commit, request.configPath))) throw new Error(`config ${request.configPath} does not exist in commit ${request.commit.slice(0, 12)}`);
      const text = await readFileAtCommit(repo, request.commit, request.configPath);
      try {
        resolvedConfig = JSON.parse(text);
      } catch (error) {
        throw new Error(`config ${request.configPath} is not valid JSON: ${(error as Error).message}`);
      }
    }
    if (request.checkpoint) {
      const inTree = await fileInCommit(repo, request.commit, request.checkpoint);
      const onHost = await fs.access(path.resolve(request.checkpoint)).then(() => true, () => false);
      if (!inTree && !onHost) throw new Error(`checkpoint ${request.checkpoint} was not found in the commit or on ${deps.host}`);
    }
    for (const dataset of request.datasets) {
      const location = path.isAbsolute(dataset) ? dataset : path.join(deps.datasetsDir, dataset);
      const present = await fs.access(location).then(() => true, () => false);
      if (!present) throw new Error(`dataset ${dataset} is not present on ${deps.host} (looked at ${location})`);
    }

    const files = runFiles(deps.workDir, experimentId);
    await fs.mkdir(files.dir, { recursive: true });
    const { patch, files: changed } = await commitPatch(repo, request.commit);
    await fs.writeFile(files.patch, patch);
    const bytes = Buffer.byteLength(patch);
    return {
      resolvedConfig,
      interpreter,
      patch: { path: files.patch, sha256: crypto.createHash('sha256').update(patch).digest('hex'), bytes, files: changed },
      patchText: bytes <= PATCH_RECORD_LIMIT ? patch : `${patch.slice(0, PATCH_RECORD_LIMIT)}\n[patch truncated at ${PATCH_RECORD_LIMIT} bytes; the full patch is ${files.patch} on ${deps.host}]\n`,
    };
  }

  return {
    /** Everything that can be checked before a GPU is touched. Problems are results, not errors. */
    async validateRequest(experimentId: string, request: ExperimentRequest): Promise<ValidationReport> {
      try {
        return { ok: true, reason: null, host: deps.host, ...(await check(experimentId, request)) };
      } catch (error) {
        return { ok: false, reason: (error as Error).message, host: deps.host, resolvedConfig: null, patch: null, interpreter: null };
      }
    },

    /** The environment a run trains in on this host: versions, lockfile hashes, variables (secrets redacted). */
    async captureEnvironment(request: ExperimentRequest): Promise<EnvironmentRecord> {
      const repo = await localRepository(request.repo, deps.workDir, request.commit);
      const lockfiles: Record<string, string> = {};
      for (const name of LOCKFILES) {
        if (await fileInCommit(repo, request.commit, name)) {
          lockfiles[name] = crypto.createHash('sha256').update(await readFileAtCommit(repo, request.commit, name)).digest('hex');
        }
      }
      const gpus = deps.slots.some((slot) => slot.acceleratorClass !== 'cpu') ? ((await queryGpus().catch(() => undefined)) ?? []) : [];
      return {
        host: deps.host,
        software: await softwareVersions(),
        driverVersion: gpus[0]?.driverVersion ?? null,
        lockfiles,
        variables: redactEnv({ ...process.env, ...request.env }),
      };
    },

    /**
     * One page of a run's raw log: at most READ_LOG_PAGE_BYTES from `offset`, ending on a whole
     * UTF-8 character, so any log is read in bounded pieces (`nextOffset` is where the next starts).
     */
    async readLog(experimentId: string, offset: number, maxBytes: number): Promise<{ text: string; nextOffset: number; size: number }> {
      const file = runFiles(deps.workDir, experimentId).log;
      let handle;
      try {
        handle = await fs.open(file, 'r');
      } catch {
        return { text: '', nextOffset: offset, size: 0 };
      }
      try {
        const { size } = await handle.stat();
        const start = Math.min(Math.max(0, Math.floor(offset) || 0), size);
        const length = Math.max(0, Math.min(Math.floor(maxBytes) || 0, READ_LOG_PAGE_BYTES, size - start));
        const buffer = Buffer.alloc(length);
        const { bytesRead } = await handle.read(buffer, 0, length, start);
        const whole = wholeCharacters(buffer.subarray(0, bytesRead), start + bytesRead < size);
        return { text: whole.toString('utf8'), nextOffset: start + whole.length, size };
      } finally {
        await handle.close();
      }
    },

    /** Measures what the scheduled health check judges: GPU temperature, memory, ECC, free disk. */
    async checkHealth(): Promise<HostHealthReport> {
      const gpuSlots = deps.slots.filter((slot) => slot.acceleratorClass !== 'cpu');
      let gpus: HostHealthReport['gpus'] = [];
      let error: string | null = null;
      try {
        const rows = gpuSlots.length > 0 ? ((await queryGpus()) ?? []) : [];
        gpus = rows.flatMap((row) => {
          const slot = gpuSlots.find((s) => s.index === row.index);
          return slot ? [{ ...row, slotId: slot.slotId }] : [];
        });
      } catch (failure) {
        error = (failure as Error).message;
      }
      const stats = await fs.statfs(deps.workDir).catch(() => undefined);
      return {
        host: deps.host,
        checkedAt: new Date().toISOString(),
        gpus,
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
