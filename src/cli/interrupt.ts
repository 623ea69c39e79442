import type { Client } from '@temporalio/client';
import { batchState } from '../client/batches.js';
import { experimentState } from '../client/experiments.js';
import { EXIT_CODES } from '../domain/exit-codes.js';
import { drained, printJson, safeText } from './output.js';

/** How long the report may take to ask for the state (a server that does not answer must not hold Ctrl-C). */
const STATE_TIMEOUT_MS = 5_000;
const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/** What a waiting command was waiting on: an experiment or a batch. */
export type Awaited = { kind: 'experiment'; id: string } | { kind: 'batch'; id: string };

/** The state of `awaited` right now, as the interruption reports it; null fields where it could not be asked. */
async function stateOf(client: Client, awaited: Awaited): Promise<Record<string, unknown>> {
  if (awaited.kind === 'experiment') {
    const snapshot = await experimentState(client, awaited.id);
    return { experiment_id: awaited.id, status: snapshot?.status ?? null };
  }
  const batch = await batchState(client, awaited.id);
  if (!batch) return { batch_id: awaited.id, status: null };
  const children = await Promise.all(
    batch.members.map(async (member) => ({
      experiment_id: member.experimentId,
      status: member.ended ?? (await experimentState(client, member.experimentId))?.status ?? null,
    })),
  );
  return { batch_id: awaited.id, status: batch.status, children };
}

/** The one object an interrupted `run`, `batch` or `wait` prints (pure, for the tests). */
export function interruptedReport(awaited: Awaited, state: Record<string, unknown> | Error): Record<string, unknown> {
  const resume = `expctl wait ${awaited.id}`;
  const idKey = awaited.kind === 'experiment' ? 'experiment_id' : 'batch_id';
  const known = state instanceof Error ? { [idKey]: awaited.id, status: null } : state;
  const status = known.status ?? 'unknown';
  const asked = state instanceof Error ? ` (its state could not be read: ${state.message})` : '';
  return {
    error: 'interrupted',
    message: `interrupted; ${awaited.kind} ${awaited.id} goes on (${status})${asked}: \`${resume}\` picks it up again`,
    ...known,
    resume,
  };
}

/**
 * Until the returned function is called, Ctrl-C (SIGINT) or SIGTERM ends the command with one
 * object that names what it waited on, its state at that moment and the command that picks it up
 * again, and exit code 130 (EXIT_CODES.interrupted). The run itself goes on: it lives in Temporal,
 * not in this process. A second signal while the state is being read exits at once.
 */
export function reportOnInterrupt(
  client: Client,
  awaited: Awaited,
  options: { json: boolean; before?: () => void },
): () => void {
  let reporting = false;
  const onSignal = () => {
    if (reporting) process.exit(EXIT_CODES.interrupted);
    reporting = true;
    options.before?.();
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`no answer within ${STATE_TIMEOUT_MS / 1000} s`)), STATE_TIMEOUT_MS).unref(),
    );
    void Promise.race([stateOf(client, awaited), timeout])
      .catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))))
      .then(async (state) => {
        const report = interruptedReport(awaited, state);
        if (options.json) printJson(report);
        console.error(`expctl: ${safeText(report.message)}`);
        await Promise.all([drained(process.stdout), drained(process.stderr)]);
        process.exit(EXIT_CODES.interrupted);
      });
  };
  for (const signal of SIGNALS) process.on(signal, onSignal);
  return () => {
    for (const signal of SIGNALS) process.removeListener(signal, onSignal);
  };
}
