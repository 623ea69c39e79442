/**
 * Drill rows that act on the stack as an operator (or an intruder) does, with the real Temporal
 * CLI: a terminate from outside expctl, and signals whose payloads the codec refuses.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { defaultPayloadConverter } from '@temporalio/common';
import { execa } from 'execa';
import { CatalogReader } from '../../src/catalog/catalog.js';
import { EncryptionCodec } from '../../src/security/codec.js';
import { createKeyring, loadKeyring } from '../../src/security/keyring.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { ensureTemporalCli } from '../../src/temporal/temporal-cli.js';
import { poolStateQuery, refusedMessagesQuery } from '../../src/workflows/definitions.js';
import { tagWorkflowId } from '../../src/workflows/tag.js';
import type { DrillContext, Row } from './row.js';
import type { RowSpec } from './rows.js';
import { runProcesses } from './runs.js';
import { waitUntil, holdsWithin } from './wait.js';

/** A terminated run's processes still alive this long after its slot served the next run are orphans. */
const ORPHAN_WAIT_MS = 15_000;

/** The Temporal CLI against the drills' stack, as an operator who reaches the server runs it. */
async function temporal(ctx: DrillContext, args: string[]) {
  return execa(
    await ensureTemporalCli(),
    [...args, '--address', ctx.stack.address, '--namespace', ctx.stack.options.namespace, '--identity', 'drills'],
    { reject: false, all: true },
  );
}

async function fileExists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

/** Counts the processes of a run that outlive it, and leaves none behind. */
async function orphansOf(row: Row, experimentId: string, pidFiles: string[], label: string): Promise<void> {
  const cleared = await holdsWithin(
    async () => (await runProcesses(experimentId, pidFiles)).length === 0,
    ORPHAN_WAIT_MS,
  );
  if (cleared) return;
  const left = await runProcesses(experimentId, pidFiles);
  row.orphaned += left.length;
  row.notes.push(`${label}: pids ${left.join(', ')} still alive ${ORPHAN_WAIT_MS / 1000} s after its slot was freed`);
  for (const pid of left) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}

/** A signal's input sealed under a keyring of another fleet: what a holder of a leaked, foreign or old key sends. */
async function foreignSealer(dir: string): Promise<(...values: unknown[]) => Promise<string[]>> {
  const { file } = await createKeyring(path.join(dir, 'foreign-keys', 'payload-keys.json'));
  const codec = EncryptionCodec.fromKeyring(await loadKeyring({ EXPCTL_KEY_FILE: file }));
  // One key seals every input alike, so one set of metadata serves them all.
  return async (...values) => {
    const sealed = await codec.encode(values.map((value) => defaultPayloadConverter.toPayload(value)));
    const meta = Object.entries(sealed[0]!.metadata!).flatMap(([key, bytes]) => [
      '--input-meta',
      `${key}=${Buffer.from(bytes).toString('utf8')}`,
    ]);
    const inputs = sealed.flatMap((payload) => ['--input', Buffer.from(payload.data!).toString('base64')]);
    return [...meta, '--input-base64', ...inputs];
  };
}

/**
 * A workflow is stalled when its workflow task fails again and again (a message it cannot decode
 * used to do that) or it no longer answers a query.
 */
async function stalled(ctx: DrillContext, workflowId: string): Promise<string | null> {
  const handle = ctx.stack.client.workflow.getHandle(workflowId);
  try {
    await handle.query(refusedMessagesQuery);
  } catch (error) {
    return `does not answer a query: ${(error as Error).message}`;
  }
  const { raw } = await handle.describe();
  const attempt = raw.pendingWorkflowTask?.attempt ?? 0;
  return attempt > 1 ? `its workflow task is on attempt ${attempt}` : null;
}

export const OUTSIDE_ROWS: RowSpec[] = [
  {
    name: 'terminate-while-training',
    what: "`temporal workflow terminate` of a training run (as the Web UI's Terminate): its slot serves the next run within the heartbeat limit + 5 s, and none of its processes is left",
    async run(row, ctx) {
      const rounds = ctx.quick ? 1 : 3;
      await row.worker('a', 1);
      const pool = ctx.stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
      const limitMs = (await pool.query(poolStateQuery)).heartbeatLimitMs;
      const catalog = await CatalogReader.open(ctx.stack.catalogPath);
      try {
        for (let i = 1; i <= rounds; i++) {
          const label = `terminated${i}`;
          const victim = await row.submit({ label, env: { STEPS: '2000', STEP_SECONDS: '0.25' } });
          // A terminated workflow has no result: it is judged here, not among the row's runs.
          row.runs.splice(row.runs.indexOf(victim), 1);
          await waitUntil(() => fileExists(victim.pidFiles[0]!), 180_000);
          // The only slot is taken: this one waits for it.
          const next = await row.submit({ label: `after-terminate${i}`, env: { STEPS: '4', STEP_SECONDS: '0.25' } });
          const terminated = await temporal(ctx, [
            'workflow',
            'terminate',
            '--workflow-id',
            victim.experimentId,
            '--reason',
            'drill terminate-while-training',
          ]);
          if (terminated.exitCode !== 0) throw new Error(`temporal workflow terminate failed: ${terminated.all}`);
          const terminatedAt = Date.now();
          const placed = await holdsWithin(
            async () =>
              (await pool.query(poolStateQuery)).slots.some((slot) => slot.lease?.experimentId === next.experimentId),
            limitMs + 5_000,
          );
          const seconds = ((Date.now() - terminatedAt) / 1000).toFixed(1);
          if (placed) row.notes.push(`${label}: its slot served the next run ${seconds} s after the terminate`);
          else {
            row.wrong++;
            row.notes.push(
              `${label}: its slot was not free ${seconds} s after the terminate (limit ${limitMs / 1000} s + 5 s)`,
            );
          }
          await orphansOf(row, victim.experimentId, victim.pidFiles, label);
          const audited = await holdsWithin(
            async () =>
              (await catalog.auditTrail(victim.experimentId)).some((entry) => entry.action === 'lease_released'),
            10_000,
          );
          if (!audited) {
            row.wrong++;
            row.notes.push(`${label}: no lease_released line in its audit trail`);
          }
        }
      } finally {
        await catalog.close();
      }
      return 120_000;
    },
  },
  {
    name: 'plaintext-and-forged-signals',
    what: 'plaintext and foreign-key signals and updates to the pool, the tag and a training run: 0 stalled workflows, every run completes',
    async run(row, ctx) {
      const rounds = ctx.quick ? 1 : 3;
      await row.worker('a', 1);
      const foreign = await foreignSealer(ctx.dir);
      const tag = tagWorkflowId(row.tag);
      const expected = new Map<string, number>();
      const sentTo = (workflowId: string) => expected.set(workflowId, (expected.get(workflowId) ?? 0) + 1);
      // The tag's workflow starts with its first run's outcome.
      const first = await row.submit({ label: 'first', env: { STEPS: '1' } });
      await first.handle.result().catch(() => null);
      for (let i = 1; i <= rounds; i++) {
        const running = await row.submit({ label: `target${i}`, env: { STEPS: '40', STEP_SECONDS: '0.25' } });
        await waitUntil(() => fileExists(running.pidFiles[0]!), 180_000);
        const release = { experimentId: running.experimentId };
        const revoke = { leaseId: 'forged', reason: 'drill' };
        const signals: [string, string, string[]][] = [
          [POOL_WORKFLOW_ID, 'releaseLease', ['--input', JSON.stringify(release)]],
          [POOL_WORKFLOW_ID, 'releaseLease', await foreign(release)],
          [running.experimentId, 'leaseRevoked', ['--input', JSON.stringify(revoke)]],
          [running.experimentId, 'leaseRevoked', await foreign(revoke)],
        ];
        for (const [workflowId, name, input] of signals) {
          const sent = await temporal(ctx, [
            'workflow',
            'signal',
            '--workflow-id',
            workflowId,
            '--name',
            name,
            ...input,
          ]);
          if (sent.exitCode !== 0) throw new Error(`temporal workflow signal ${name} failed: ${sent.all}`);
          sentTo(workflowId);
        }
        // An update is answered: the caller hears that it was refused.
        const plaintext = ['--input', '{"patience":1}', '--input', '{}'];
        for (const input of [plaintext, await foreign({ patience: 1 }, {})]) {
          const update = await temporal(ctx, [
            'workflow',
            'update',
            'execute',
            '--workflow-id',
            tag,
            '--name',
            'configureTag',
            ...input,
          ]);
          if (!/payload_refused: the update configureTag could not be decoded/.test(update.all)) {
            row.wrong++;
            row.notes.push(`round ${i}: configureTag was not refused as undecodable: ${update.all.slice(-300)}`);
          }
          sentTo(tag);
        }
      }
      // Every run trains on to its real metric (the row's verdicts); here, no workflow is stalled.
      await Promise.all(row.runs.map((run) => run.handle.result().catch(() => null)));
      const after = await row.submit({ label: 'after', env: { STEPS: '2' } });
      await after.handle.result().catch(() => null);
      let stalledCount = 0;
      const catalog = await CatalogReader.open(ctx.stack.catalogPath);
      try {
        for (const [workflowId, count] of expected) {
          const why = await stalled(ctx, workflowId);
          if (why) {
            stalledCount++;
            row.wrong++;
            row.notes.push(`${workflowId} is stalled: ${why}`);
          }
          // Each refused message is dropped and audited once (no other row sends any).
          let audited = 0;
          const all = await holdsWithin(async () => {
            const trail = await catalog.auditTrail(workflowId);
            audited = trail.filter((entry) => entry.action === 'refused_message').length;
            return audited >= count;
          }, 30_000);
          if (!all || audited !== count) {
            row.wrong++;
            row.notes.push(`${workflowId}: ${audited} refused messages audited, ${count} were sent`);
          }
        }
      } finally {
        await catalog.close();
      }
      row.notes.push(
        `${[...expected.values()].reduce((a, b) => a + b, 0)} refused messages to ${expected.size} workflows; ${stalledCount} stalled`,
      );
      return 60_000;
    },
  },
];
