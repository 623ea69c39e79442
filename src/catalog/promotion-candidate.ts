import { pinRefs } from '../domain/dataset-refs.js';
import { candidateRefusal, PROMOTION_CODES, type PromotionCode } from '../domain/promotion.js';
import { REDACTED } from '../domain/redact.js';
import type { ExperimentRequest } from '../domain/request.js';
import type { CatalogReader } from './catalog.js';

/** What a promotion needs of its candidate, read from the catalog before any stage runs. */
export interface PromotionCandidate {
  experimentId: string;
  tag: string;
  request: ExperimentRequest;
  /** The host that trained it (null when the record names none: the artifact is read from the fleet store). */
  host: string | null;
  /** The model file; `uri` null when the record predates the fleet store (then only its host holds it). */
  artifact: { path: string; sha256: string; bytes: number; uri: string | null };
  metric: { name: string; direction: 'minimize' | 'maximize' };
  incumbent: { version: number; holdoutMetric: number | null; experimentId: string } | null;
}

export type PrepareResult = { candidate: PromotionCandidate } | { refusal: { code: PromotionCode; reason: string } };

/** Preflight of a promotion on the catalog: the same rules the CLI applies before starting one. */
export async function preparePromotionFrom(
  catalog: CatalogReader,
  input: { experimentId: string; artifact?: string; model: string; alias: string },
): Promise<PrepareResult> {
  const record = await catalog.get(input.experimentId);
  if (!record)
    return {
      refusal: {
        code: PROMOTION_CODES.notFound,
        reason: `the catalog has no experiment ${input.experimentId}`,
      },
    };
  const refusal = candidateRefusal(record, input.artifact, REDACTED);
  if (refusal) return { refusal };
  const artifact = input.artifact ? record.artifacts.find((a) => a.path === input.artifact)! : record.artifacts[0]!;
  if (!record.worker && !artifact.uri)
    return {
      refusal: {
        code: PROMOTION_CODES.artifactMissing,
        reason: 'the artifact is not in the fleet store and the record names no host that trained it',
      },
    };
  const incumbent = await catalog.models.incumbent(input.model, input.alias);
  return {
    candidate: {
      experimentId: record.id,
      tag: record.tag,
      // Evaluated on the data versions the candidate trained with, never on whatever is latest now.
      request: { ...record.request, datasets: pinRefs(record.request.datasets, record.datasetVersions) },
      host: record.worker,
      artifact: { path: artifact.path, sha256: artifact.sha256, bytes: artifact.bytes, uri: artifact.uri ?? null },
      metric: { name: record.metricName, direction: record.metricDirection as 'minimize' | 'maximize' },
      incumbent: incumbent
        ? { version: incumbent.version, holdoutMetric: incumbent.holdoutMetric, experimentId: incumbent.experimentId }
        : null,
    },
  };
}
