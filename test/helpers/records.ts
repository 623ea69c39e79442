import Database from 'better-sqlite3';
import type { Catalog } from '../../src/catalog/catalog.js';
import type { TagDecision } from '../../src/domain/decision.js';
import { NO_TIMINGS, type TerminalStatus } from '../../src/domain/experiment.js';
import { parseExperimentRequest, type ExperimentRequestInput } from '../../src/domain/request.js';

export interface RecordedRun {
  id: string;
  description?: string;
  status: TerminalStatus;
  metrics?: Record<string, number | string> | null;
  acceleratorClass?: string;
  commit?: string;
  request?: Partial<ExperimentRequestInput>;
}

/** Writes one finished run into a real catalog the way the workflow's activities do: request, placement, training, decision. */
export async function recordRun(
  catalog: Catalog,
  run: RecordedRun,
  decision: TagDecision,
  metric: { name: string; direction: 'minimize' | 'maximize' },
): Promise<void> {
  const commit =
    run.commit ??
    run.id
      .replace(/[^0-9a-f]/g, '')
      .padEnd(40, 'a')
      .slice(0, 40);
  const request = parseExperimentRequest({
    tag: 'mixed',
    hypothesis: `try ${run.id}`,
    category: 'other',
    repo: '/repo',
    commit,
    description: run.description ?? run.id,
    ...run.request,
  });
  await catalog.apply({
    experimentId: run.id,
    request,
    submittedAt: new Date(Date.UTC(2026, 0, 1, 0, 0, decision.sequence)).toISOString(),
    metric,
  });
  if (run.status !== 'validation_failed') {
    await catalog.apply({
      experimentId: run.id,
      placement: {
        slotId: `host/${run.acceleratorClass ?? 'h100'}0`,
        host: 'host',
        acceleratorClass: run.acceleratorClass ?? 'h100',
        why: 'test',
        policy: 'test',
        candidates: [],
        queuedMs: 0,
      },
      training: {
        phase: 'training',
        exitCode: 0,
        signal: null,
        timedOut: false,
        canceled: false,
        supervisorKilled: false,
        oomKills: null,
        peakMemoryBytes: null,
        timings: NO_TIMINGS,
        metrics: run.metrics ?? null,
        logTail: '',
        logPath: '/log',
        startedAt: '2026-01-01T00:00:00.000Z',
        endedAt: '2026-01-01T00:05:00.000Z',
        artifacts: [],
        heartbeats: { count: 1, firstAt: null, lastAt: null, intervalSeconds: 2 },
      },
    });
  }
  await catalog.apply({ experimentId: run.id, status: run.status, decision, reason: run.status });
}

/** Moves a SQLite catalog's write-ahead log into its main file, so a test can read every byte it holds. */
export function checkpoint(file: string): void {
  const db = new Database(file);
  try {
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
}
