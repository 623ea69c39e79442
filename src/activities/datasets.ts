import crypto from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { execa } from 'execa';
import { z } from 'zod';
import type { Catalog } from '../catalog/catalog.js';
import type { AlertInput, LateShardRow } from '../catalog/datasets.js';
import {
  shardObjectPath,
  SHARD_UPLOAD_MISMATCH,
  uploadSpoolPath,
  type IngestedShard,
  type SealReason,
  type ShardEntry,
  type ShardUpload,
} from '../domain/datasets.js';
import { formatOf, inspectContent, parquetFooterLength, ShardFormatError } from '../domain/dataset-formats.js';
import { gateHistory, runGate, type Gate, type GateHistory, type GateOutcome } from '../domain/gates.js';
import { ensurePrivateDir, PRIVATE_FILE_MODE } from '../security/files.js';

export interface DatasetDeps {
  catalog: Catalog;
  /** The content-addressed store (settings.ts dataDir). */
  dataDir: string;
  /** The alert command's argv (EXPCTL_ALERT_COMMAND), read when an alert is raised; null: none. */
  alertCommand?: () => string[] | null;
}

const AlertCommand = z.array(z.string().min(1)).min(1);

/** EXPCTL_ALERT_COMMAND: a JSON argv array such as ["notify-send", "expctl"]; run without a shell. */
export function alertCommandFromEnv(env: NodeJS.ProcessEnv = process.env): string[] | null {
  const raw = env.EXPCTL_ALERT_COMMAND;
  if (raw === undefined || raw.trim() === '') return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new Error(
      'EXPCTL_ALERT_COMMAND must be a JSON array of strings, e.g. ["/usr/local/bin/page", "--team", "data"]',
    );
  }
  const argv = AlertCommand.safeParse(parsed);
  if (!argv.success)
    throw new Error(
      'EXPCTL_ALERT_COMMAND must be a non-empty JSON array of non-empty strings (an argv, never a shell line)',
    );
  return argv.data;
}

/** How long an alert command may run before it is killed (its exit is then recorded as failed). */
export const ALERT_COMMAND_TIMEOUT_MS = 30_000;

/**
 * Moves an upload's spool file into the store under its sha256, once its size and sha256 are the
 * ones the signed offer declares. The spool is the orchestrator's own (`<dataDir>/uploads/<id>`):
 * no path a client names is ever opened.
 */
async function storeUpload(
  dataDir: string,
  upload: ShardUpload,
): Promise<{ sha256: string; bytes: number; object: string }> {
  const spool = uploadSpoolPath(dataDir, upload.id);
  const mismatch = (what: string) =>
    ApplicationFailure.nonRetryable(
      `${SHARD_UPLOAD_MISMATCH}: upload ${upload.id} ${what}; the signed offer declares ${upload.bytes} bytes with sha256 ${upload.sha256} (send the shard again)`,
      SHARD_UPLOAD_MISMATCH,
    );
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(spool, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ELOOP')
      throw mismatch('holds no bytes on the orchestrator (never sent, or discarded)');
    throw error;
  }
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  try {
    if (!(await handle.stat()).isFile()) throw mismatch('is not a file');
    for await (const chunk of handle.createReadStream({ autoClose: false })) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
    // On disk before the catalog records it, as any object of the store.
    await handle.sync();
  } finally {
    await handle.close();
  }
  const sha256 = hash.digest('hex');
  if (bytes !== upload.bytes || sha256 !== upload.sha256) throw mismatch(`holds ${bytes} bytes with sha256 ${sha256}`);
  await ensurePrivateDir(path.join(dataDir, 'objects'));
  const object = shardObjectPath(dataDir, sha256);
  await fs.rename(spool, object);
  return { sha256, bytes, object };
}

/** A Parquet file's footer: its last bytes, as many as the footer says (the data pages are never read). */
async function readTail(file: string): Promise<Buffer> {
  const handle = await fs.open(file, 'r');
  try {
    const { size } = await handle.stat();
    const read = async (length: number) => {
      const buffer = Buffer.alloc(Math.min(length, size));
      await handle.read(buffer, 0, buffer.length, size - buffer.length);
      return buffer;
    };
    const last8 = await read(8);
    if (last8.length < 8) throw new ShardFormatError('not a Parquet file (shorter than 8 bytes)');
    return await read(parquetFooterLength(last8));
  } finally {
    await handle.close();
  }
}

export function createDatasetActivities({ catalog, dataDir, alertCommand = () => alertCommandFromEnv() }: DatasetDeps) {
  const records = () => catalog.datasets;

  /** Records an alert once and runs the alert command for it; never fails for the command's sake. */
  async function raiseAlert(alert: AlertInput): Promise<{ id: number; commandExit: number | null }> {
    const at = alert.at ?? new Date().toISOString();
    const { id, fresh, commandExit } = await records().insertAlert({ ...alert, at });
    if (!fresh && commandExit !== null) return { id, commandExit };
    let argv: string[] | null;
    try {
      argv = alertCommand();
    } catch (error) {
      await records().setAlertCommandResult(id, null, (error as Error).message);
      return { id, commandExit: null };
    }
    if (!argv) return { id, commandExit: null };
    const payload = {
      id,
      at,
      kind: alert.kind,
      subject: alert.subject,
      code: alert.code,
      message: alert.message,
      details: alert.details ?? null,
    };
    const result = await execa(argv[0]!, argv.slice(1), {
      input: JSON.stringify(payload),
      env: {
        EXPCTL_ALERT_ID: String(id),
        EXPCTL_ALERT_AT: at,
        EXPCTL_ALERT_KIND: alert.kind,
        EXPCTL_ALERT_SUBJECT: alert.subject,
        EXPCTL_ALERT_CODE: alert.code ?? '',
        EXPCTL_ALERT_MESSAGE: alert.message,
        EXPCTL_ALERT_JSON: JSON.stringify(payload),
      },
      reject: false,
      timeout: ALERT_COMMAND_TIMEOUT_MS,
      stdout: 'ignore',
      stderr: 'pipe',
    });
    const exit = typeof result.exitCode === 'number' ? result.exitCode : null;
    const problem = result.failed
      ? (result.timedOut ? `timed out after ${ALERT_COMMAND_TIMEOUT_MS} ms` : (result.shortMessage ?? 'failed')).slice(
          0,
          500,
        )
      : null;
    await records().setAlertCommandResult(id, exit, problem);
    return { id, commandExit: exit };
  }

  return {
    raiseAlert,

    /** Writes one chunk of an upload into the spool at its offset (a retry writes the same bytes again). */
    async writeUploadChunk(id: string, offset: number, data: Uint8Array): Promise<void> {
      const spool = uploadSpoolPath(dataDir, id);
      await ensurePrivateDir(path.dirname(spool));
      const handle = await fs.open(
        spool,
        fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_NOFOLLOW,
        PRIVATE_FILE_MODE,
      );
      try {
        await handle.write(data, 0, data.length, offset);
        await handle.truncate(offset + data.length);
      } finally {
        await handle.close();
      }
    },

    /** Removes an upload's spool file, if its shard's offer did not take it into the store. */
    async discardUpload(id: string): Promise<void> {
      await fs.rm(uploadSpoolPath(dataDir, id), { force: true });
    },

    /** Takes an upload's bytes into the store (verified by size and sha256), reads records and schema by format. */
    async ingestShard(input: { upload: ShardUpload; fileName: string }): Promise<IngestedShard> {
      const stored = await storeUpload(dataDir, input.upload);
      const sha256 = stored.sha256;
      const format = formatOf(input.fileName);
      let facts: ReturnType<typeof inspectContent> = null;
      try {
        facts = inspectContent(
          format,
          format === 'parquet' ? await readTail(stored.object) : await fs.readFile(stored.object),
        );
      } catch (error) {
        if (!(error instanceof ShardFormatError)) throw error;
      }
      return { sha256, bytes: stored.bytes, format, records: facts?.records ?? null, schema: facts?.schema ?? null };
    },

    /** A shard new in its version (the version's row is made by its first shard), or another delivery of one. */
    async recordShard(input: {
      dataset: string;
      version: number;
      workflowId: string;
      expectedShards: number;
      openedAt: string;
      shard: ShardEntry;
      duplicate: boolean;
    }): Promise<void> {
      if (input.duplicate) return await records().countDelivery(input.dataset, input.version, input.shard.index);
      await records().openVersion({
        dataset: input.dataset,
        version: input.version,
        workflowId: input.workflowId,
        expectedShards: input.expectedShards,
        openedAt: input.openedAt,
      });
      await records().addShard(input.dataset, input.version, input.shard);
    },

    /** A shard after its version's seal: kept in late_shards, and an alert. */
    async recordLateShard(late: LateShardRow & { sealedAt: string | null }): Promise<void> {
      await records().recordLate(late);
      const what =
        late.action === 'next' ? `taken into version ${late.movedToVersion}` : 'refused (late policy refuse)';
      await raiseAlert({
        kind: 'late_shard',
        subject: `${late.dataset}@${late.version}`,
        code: 'late.after_seal',
        message: `shard ${late.shardIndex}/${late.shardCount} (${late.fileName}) arrived at ${late.arrivedAt}, after version ${late.version} sealed${late.sealedAt ? ` at ${late.sealedAt}` : ''}; ${what}`,
        details: { ...late },
        key: `late_shard:${late.dataset}@${late.version}:${late.shardIndex}:${late.sha256}:${late.arrivedAt}`,
        at: late.arrivedAt,
      });
    },

    async sealVersion(input: {
      dataset: string;
      version: number;
      reason: SealReason;
      sealedAt: string;
    }): Promise<void> {
      await records().sealVersion(input.dataset, input.version, input.reason, input.sealedAt);
    },

    /** One gate on a sealed version: recorded with its history; a failure raises an alert. */
    async runGate(input: {
      dataset: string;
      version: number;
      gate: Gate;
    }): Promise<GateOutcome & { history: GateHistory }> {
      const outcome = runGate(input.gate, await records().gateInput(input.dataset, input.version));
      const history = gateHistory(await records().earlierGateResults(input.dataset, input.gate, input.version));
      await records().recordGate(input.dataset, input.version, outcome, history, new Date().toISOString());
      if (!outcome.passed)
        await raiseAlert({
          kind: 'gate_failed',
          subject: `${input.dataset}@${input.version}`,
          code: outcome.code,
          message: `gate ${input.gate} failed for ${input.dataset}@${input.version}: ${outcome.message}`,
          details: { dataset: input.dataset, version: input.version, gate: input.gate, history },
        });
      return { ...outcome, history };
    },

    async decideVersion(input: { dataset: string; version: number }): Promise<'passed' | 'failed'> {
      return (await records().decideVersion(input.dataset, input.version, new Date().toISOString())) === 'passed'
        ? 'passed'
        : 'failed';
    },
  };
}
