import { z } from 'zod';
import { lineage, parseLineageRef, type LineageNode } from '../domain/lineage.js';
import type { CatalogReader, AuditEntry, RunTelemetryRow, TagRow } from './catalog.js';
import type { AlertRow, DatasetVersionRow } from './datasets.js';
import { catalogLineageSource } from './lineage-source.js';
import { preparePromotionFrom, type PrepareResult } from './promotion-candidate.js';
import { modelReport, type PromotionRecord } from './models.js';
import type { ExperimentRecord } from './record.js';

/**
 * Every read of the operating record, as one typed question with a bounded answer. The same
 * function answers it on the orchestrator (the queryCatalog activity, for a CLI on any host) and
 * locally (a CLI beside the catalog file), so both read the record the same way.
 */

/** The most experiment rows one page carries (a row without patch and log tail is about 1 KB). */
export const CATALOG_PAGE_ROWS = 200;
/**
 * The most bytes of JSON one answer may carry: under Temporal's 2 MiB payload warning, far under
 * its 4 MiB gRPC limit. Pages shrink to fit; an answer that cannot is refused, never truncated.
 */
export const CATALOG_ANSWER_BYTES = 1_500_000;
/**
 * The most characters of a blob (a patch) one answer carries: 6 bytes each at worst (a JSON
 * `\uXXXX` escape), so a page always fits CATALOG_ANSWER_BYTES.
 */
export const BLOB_PAGE_CHARS = 192 * 1024;

const name = z.string().min(1).max(256);
const experimentFilter = z
  .object({
    tag: name.optional(),
    status: name.optional(),
    category: name.optional(),
    nearMiss: z.boolean().optional(),
    order: z.enum(['newest', 'oldest']).optional(),
  })
  .strict();
export type ExperimentFilter = z.infer<typeof experimentFilter>;

export const catalogQuerySchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('experiment'), id: name }).strict(),
  z
    .object({
      kind: z.literal('experiments'),
      filter: experimentFilter,
      offset: z.number().int().min(0),
      limit: z.number().int().min(1).max(CATALOG_PAGE_ROWS),
    })
    .strict(),
  z.object({ kind: z.literal('tags') }).strict(),
  z
    .object({ kind: z.literal('gpuTelemetry'), tag: name, limit: z.number().int().min(1).max(CATALOG_PAGE_ROWS) })
    .strict(),
  z.object({ kind: z.literal('strategy'), tag: name }).strict(),
  z.object({ kind: z.literal('audit'), target: name }).strict(),
  z.object({ kind: z.literal('datasetVersions'), dataset: name.optional() }).strict(),
  z.object({ kind: z.literal('datasetVersion'), dataset: name, version: z.number().int().min(1) }).strict(),
  z.object({ kind: z.literal('gateStats'), dataset: name.optional(), since: name.optional() }).strict(),
  z.object({ kind: z.literal('alerts'), since: name.optional() }).strict(),
  z
    .object({ kind: z.literal('lineage'), ref: name, directions: z.array(z.enum(['upstream', 'downstream'])).min(1) })
    .strict(),
  z.object({ kind: z.literal('models'), model: name.optional() }).strict(),
  z.object({ kind: z.literal('promotion'), id: name }).strict(),
  z
    .object({
      kind: z.literal('blob'),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
      offset: z.number().int().min(0),
      limit: z.number().int().min(1).max(BLOB_PAGE_CHARS),
    })
    .strict(),
  z
    .object({
      kind: z.literal('promotionCandidate'),
      experimentId: name,
      model: name,
      alias: name,
      artifact: z.string().min(1).max(4096).optional(),
    })
    .strict(),
]);
export type CatalogQuery = z.infer<typeof catalogQuerySchema>;
export type CatalogQueryKind = CatalogQuery['kind'];
export type CatalogQueryOf<K extends CatalogQueryKind> = Extract<CatalogQuery, { kind: K }>;

export type ExperimentRow = Omit<ExperimentRecord, 'events' | 'artifacts'>;
export interface StrategyRow {
  mode: string;
  reason: string;
  manual: boolean;
  updatedAt: string;
}

type DatasetRecordsOf = CatalogReader['datasets'];
export type DatasetVersionDetail = DatasetVersionRow & {
  schema: unknown;
  shards: Awaited<ReturnType<DatasetRecordsOf['shards']>>;
  gates: Awaited<ReturnType<DatasetRecordsOf['gateResults']>>;
  lateShards: Awaited<ReturnType<DatasetRecordsOf['lateShards']>>;
  alerts: AlertRow[];
};

/** What each kind of question answers. */
export interface CatalogAnswers {
  experiment: ExperimentRecord | null;
  experiments: { rows: ExperimentRow[]; nextOffset: number | null };
  tags: TagRow[];
  gpuTelemetry: RunTelemetryRow[];
  strategy: StrategyRow | null;
  audit: AuditEntry[];
  datasetVersions: DatasetVersionRow[];
  datasetVersion: DatasetVersionDetail | null;
  gateStats: Awaited<ReturnType<DatasetRecordsOf['gateStats']>>;
  alerts: AlertRow[];
  lineage: { known: boolean; trees: Partial<Record<'upstream' | 'downstream', LineageNode>> } | null;
  models: Awaited<ReturnType<typeof modelReport>>[];
  promotion: PromotionRecord | null;
  blob: { text: string; bytes: number; nextOffset: number | null } | null;
  promotionCandidate: PrepareResult;
}

/** An answer over CATALOG_ANSWER_BYTES: the question must be narrowed (the message says how). */
export class CatalogAnswerTooLargeError extends Error {
  constructor(kind: string, bytes: number) {
    super(
      `the catalog's answer to "${kind}" is ${bytes} bytes, over the ${CATALOG_ANSWER_BYTES}-byte bound of one ` +
        'answer: narrow the question (--tag, --dataset, --since)',
    );
  }
}

function bytesOf(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? '', 'utf8');
}

/** One page of experiment rows from `offset`, as many as fit both bounds (at least one row). */
async function experimentsPage(
  reader: CatalogReader,
  query: CatalogQueryOf<'experiments'>,
): Promise<CatalogAnswers['experiments']> {
  // One row more than asked says whether another page follows.
  const fetched = await reader.list({ ...query.filter, offset: query.offset, limit: query.limit + 1 });
  const rows: ExperimentRow[] = [];
  let bytes = 0;
  for (const row of fetched.slice(0, query.limit)) {
    const size = bytesOf(row) + 1;
    if (rows.length > 0 && bytes + size > CATALOG_ANSWER_BYTES) break;
    rows.push(row);
    bytes += size;
  }
  const more = rows.length < fetched.length;
  return { rows, nextOffset: more ? query.offset + rows.length : null };
}

/** The first rows that fit one answer together (the rest are left out, never cut). */
function fitting<T>(rows: T[]): T[] {
  let bytes = 0;
  const kept: T[] = [];
  for (const row of rows) {
    bytes += bytesOf(row) + 1;
    if (bytes > CATALOG_ANSWER_BYTES) break;
    kept.push(row);
  }
  return kept;
}

async function answer(reader: CatalogReader, query: CatalogQuery): Promise<CatalogAnswers[CatalogQueryKind]> {
  switch (query.kind) {
    case 'experiment':
      return (await reader.get(query.id)) ?? null;
    case 'experiments':
      return experimentsPage(reader, query);
    case 'tags':
      return reader.tags();
    case 'gpuTelemetry':
      return fitting(await reader.gpuTelemetryOfTag(query.tag, query.limit));
    case 'strategy':
      return (await reader.strategy(query.tag)) ?? null;
    case 'audit':
      return reader.auditTrail(query.target);
    case 'datasetVersions':
      return reader.datasets.versions(query.dataset);
    case 'datasetVersion': {
      const records = reader.datasets;
      const { dataset, version } = query;
      const row = (await records.versions(dataset)).find((v) => v.version === version);
      if (!row) return null;
      const subject = `${dataset}@${version}`;
      return {
        ...row,
        schema: (await records.version(dataset, version))?.schema ?? null,
        shards: await records.shards(dataset, version),
        gates: await records.gateResults(dataset, version),
        lateShards: await records.lateShards(dataset, version),
        alerts: (await records.alerts({ subjectPrefix: subject })).filter((a) => a.subject === subject),
      };
    }
    case 'gateStats':
      return reader.datasets.gateStats({ dataset: query.dataset, since: query.since });
    case 'alerts':
      return reader.datasets.alerts({ since: query.since });
    case 'lineage': {
      const ref = parseLineageRef(query.ref);
      if (!ref) return null;
      const source = catalogLineageSource(reader);
      const trees: Partial<Record<'upstream' | 'downstream', LineageNode>> = {};
      for (const direction of query.directions) trees[direction] = await lineage(source, ref, direction);
      return { known: Object.values(trees)[0]!.known, trees };
    }
    case 'models': {
      const models = reader.models;
      const names = query.model ? [query.model] : await models.models();
      return Promise.all(names.map((model) => modelReport(models, model)));
    }
    case 'promotion':
      return (await reader.models.promotion(query.id)) ?? null;
    case 'blob':
      return (await reader.blobPage(query.sha256, query.offset, query.limit)) ?? null;
    case 'promotionCandidate':
      return preparePromotionFrom(reader, {
        experimentId: query.experimentId,
        model: query.model,
        alias: query.alias,
        ...(query.artifact !== undefined ? { artifact: query.artifact } : {}),
      });
  }
}

/** Answers one question from the record; throws CatalogAnswerTooLargeError past the bound. */
export async function answerCatalogQuery<K extends CatalogQueryKind>(
  reader: CatalogReader,
  query: CatalogQueryOf<K>,
): Promise<CatalogAnswers[K]> {
  const result = (await answer(reader, query)) as CatalogAnswers[K];
  const bytes = bytesOf(result);
  if (bytes > CATALOG_ANSWER_BYTES) throw new CatalogAnswerTooLargeError(query.kind, bytes);
  return result;
}
