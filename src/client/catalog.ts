import crypto from 'node:crypto';
import fs from 'node:fs';
import { WorkflowFailedError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { ApplicationFailure, TimeoutFailure } from '@temporalio/common';
import { CatalogReader } from '../catalog/catalog.js';
import {
  answerCatalogQuery,
  BLOB_PAGE_CHARS,
  CATALOG_PAGE_ROWS,
  type CatalogAnswers,
  type CatalogQueryKind,
  type CatalogQueryOf,
  type ExperimentFilter,
  type ExperimentRow,
  type StrategyRow,
} from '../catalog/queries.js';
import type { StrategyChange } from '../domain/strategy.js';
import { CATALOG_QUERY_REFUSED, CONTROL_TASK_QUEUE } from '../shared/constants.js';
import { catalogLocation } from '../shared/settings.js';
import { isPostgresUrl } from '../catalog/sql.js';
import { catalogQueryWorkflow } from '../workflows/catalog-query.js';
import { setStrategyUpdate } from '../workflows/definitions.js';
import { tagWorkflowId } from '../workflows/tag.js';
import { signAs } from './sign.js';

/** How long a remote read waits for an orchestrator to answer before it says none is there. */
export const CATALOG_ANSWER_SECONDS = 30;

/** No orchestrator took the read: the control queue has no worker, or this host cannot reach it. */
export class CatalogUnreachableError extends Error {
  constructor() {
    super(
      `no orchestrator answered within ${CATALOG_ANSWER_SECONDS} s: start \`expctl dev\` or \`expctl orchestrator\` ` +
        'where the catalog lives, or read it on that host (EXPCTL_CATALOG names the file)',
    );
  }
}

/** The catalog refused the question (malformed, or its answer is past the size bound); the message says why. */
export class CatalogQueryRefusedError extends Error {}

type Ask = <K extends CatalogQueryKind>(query: CatalogQueryOf<K>) => Promise<CatalogAnswers[K]>;

/** Asks the orchestrator, through a short catalogQueryWorkflow on the control queue. */
function remoteAsk(client: Client): Ask {
  return async <K extends CatalogQueryKind>(query: CatalogQueryOf<K>) => {
    try {
      return (await client.workflow.execute(catalogQueryWorkflow, {
        workflowId: `catalog-${query.kind}-${crypto.randomBytes(6).toString('hex')}`,
        taskQueue: CONTROL_TASK_QUEUE,
        args: [query],
        workflowExecutionTimeout: `${CATALOG_ANSWER_SECONDS}s`,
      })) as CatalogAnswers[K];
    } catch (error) {
      if (error instanceof WorkflowFailedError) {
        if (error.cause instanceof TimeoutFailure) throw new CatalogUnreachableError();
        const failure = error.cause?.cause;
        if (failure instanceof ApplicationFailure && failure.type === CATALOG_QUERY_REFUSED)
          throw new CatalogQueryRefusedError(failure.message);
      }
      throw error;
    }
  };
}

/**
 * The operating record as a reader sees it, wherever it runs: the catalog file when it is on this
 * host (read-only), else the orchestrator through the control queue. Both answer through
 * answerCatalogQuery, so a report reads the same from any host.
 */
export class CatalogView {
  private constructor(
    private readonly ask: Ask,
    /** Where the answers come from, for messages: the file, or the orchestrator. */
    readonly source: string,
    private readonly reader?: CatalogReader,
  ) {}

  /**
   * PostgreSQL when EXPCTL_CATALOG_URL names it; else the file at EXPCTL_CATALOG (or in the state
   * directory) when it exists here; else the orchestrator.
   */
  static async open(connect: () => Promise<Client>, location = catalogLocation()): Promise<CatalogView> {
    if (isPostgresUrl(location) || fs.existsSync(location)) {
      const reader = await CatalogReader.open(location);
      const ask: Ask = (query) => answerCatalogQuery(reader, query);
      return new CatalogView(ask, `the catalog ${reader.location}`, reader);
    }
    return new CatalogView(remoteAsk(await connect()), 'the catalog (through the orchestrator)');
  }

  async close(): Promise<void> {
    await this.reader?.close();
  }

  async experiment(id: string) {
    return (await this.ask({ kind: 'experiment', id })) ?? undefined;
  }

  /** Rows matching `filter`, page by page, up to `limit` (all without one). */
  async experiments(filter: ExperimentFilter, limit?: number): Promise<ExperimentRow[]> {
    const rows: ExperimentRow[] = [];
    let offset: number | null = 0;
    while (offset !== null && (limit === undefined || rows.length < limit)) {
      const want = Math.min(CATALOG_PAGE_ROWS, limit === undefined ? CATALOG_PAGE_ROWS : limit - rows.length);
      const page: CatalogAnswers['experiments'] = await this.ask({ kind: 'experiments', filter, offset, limit: want });
      rows.push(...page.rows);
      offset = page.nextOffset;
    }
    return rows;
  }

  tags() {
    return this.ask({ kind: 'tags' });
  }

  /** The GPU telemetry of a tag's newest runs that have some, newest first. */
  gpuTelemetry(tag: string, limit: number) {
    return this.ask({ kind: 'gpuTelemetry', tag, limit });
  }

  async strategy(tag: string) {
    return (await this.ask({ kind: 'strategy', tag })) ?? undefined;
  }

  auditTrail(target: string) {
    return this.ask({ kind: 'audit', target });
  }

  datasetVersions(dataset?: string) {
    return this.ask({ kind: 'datasetVersions', ...(dataset !== undefined ? { dataset } : {}) });
  }

  async datasetVersion(dataset: string, version: number) {
    return (await this.ask({ kind: 'datasetVersion', dataset, version })) ?? undefined;
  }

  gateStats(filter: { dataset?: string | undefined; since?: string | undefined }) {
    return this.ask({
      kind: 'gateStats',
      ...(filter.dataset !== undefined ? { dataset: filter.dataset } : {}),
      ...(filter.since !== undefined ? { since: filter.since } : {}),
    });
  }

  alerts(since?: string) {
    return this.ask({ kind: 'alerts', ...(since !== undefined ? { since } : {}) });
  }

  lineage(ref: string, directions: ('upstream' | 'downstream')[]) {
    return this.ask({ kind: 'lineage', ref, directions });
  }

  models(model?: string) {
    return this.ask({ kind: 'models', ...(model !== undefined ? { model } : {}) });
  }

  async promotion(id: string) {
    return (await this.ask({ kind: 'promotion', id })) ?? undefined;
  }

  /** The content kept under this sha256 (a run's patch), whole, read page by page; undefined when none is kept. */
  async blob(sha256: string): Promise<string | undefined> {
    const pages: string[] = [];
    for (let offset: number | null = 0; offset !== null; ) {
      const page: CatalogAnswers['blob'] = await this.ask({ kind: 'blob', sha256, offset, limit: BLOB_PAGE_CHARS });
      if (!page) return undefined;
      pages.push(page.text);
      offset = page.nextOffset;
    }
    return pages.join('');
  }

  /** The checks a promotion's candidate must pass, made on the record before anything starts. */
  promotionCandidate(input: { experimentId: string; model: string; alias: string; artifact?: string }) {
    return this.ask({ kind: 'promotionCandidate', ...input });
  }
}

/** `strategy --set` for a tag that does not exist yet (creating it here would fix its metric to the default). */
export class NoSuchTagError extends Error {
  constructor(tag: string) {
    super(`no tag ${tag} (it is created by its first experiment or \`expctl tag create\`)`);
  }
}

/**
 * Sets a tag's search mode: a signed update of the tag's workflow, which records it in the
 * catalog through an activity. Answers what the catalog now holds.
 */
export async function setTagStrategy(client: Client, tag: string, change: StrategyChange): Promise<StrategyRow> {
  const content: StrategyChange = change.reason === undefined ? { mode: change.mode } : change;
  try {
    return await client.workflow
      .getHandle(tagWorkflowId(tag))
      .executeUpdate(setStrategyUpdate, { args: [content, signAs('configure_tag', tagWorkflowId(tag), content)] });
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) throw new NoSuchTagError(tag);
    throw error;
  }
}
