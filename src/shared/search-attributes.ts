import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/**
 * Custom search attributes operators filter experiments by in the Web UI and `temporal workflow list`.
 * Registered on the server before any workflow uses them (dev server flags or `expctl setup`).
 */
export const SA = {
  tag: defineSearchAttributeKey('ExpctlTag', SearchAttributeType.KEYWORD),
  status: defineSearchAttributeKey('ExpctlStatus', SearchAttributeType.KEYWORD),
  category: defineSearchAttributeKey('ExpctlCategory', SearchAttributeType.KEYWORD),
  metric: defineSearchAttributeKey('ExpctlMetric', SearchAttributeType.DOUBLE),
  decision: defineSearchAttributeKey('ExpctlDecision', SearchAttributeType.KEYWORD),
  worker: defineSearchAttributeKey('ExpctlWorker', SearchAttributeType.KEYWORD),
  model: defineSearchAttributeKey('ExpctlModel', SearchAttributeType.KEYWORD),
  alias: defineSearchAttributeKey('ExpctlAlias', SearchAttributeType.KEYWORD),
  dataset: defineSearchAttributeKey('ExpctlDataset', SearchAttributeType.KEYWORD),
  datasetVersion: defineSearchAttributeKey('ExpctlDatasetVersion', SearchAttributeType.KEYWORD),
  gate: defineSearchAttributeKey('ExpctlGate', SearchAttributeType.KEYWORD),
} as const;

/** The server-side type names, as `temporal server start-dev --search-attribute` spells them. */
export const SEARCH_ATTRIBUTE_TYPE_NAMES: Record<string, 'Keyword' | 'Double'> = Object.fromEntries(
  Object.values(SA).map((key) => [key.name, key.type === SearchAttributeType.DOUBLE ? 'Double' : 'Keyword']),
);
