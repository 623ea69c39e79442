import type { Connection } from '@temporalio/client';
import { SEARCH_ATTRIBUTE_TYPE_NAMES } from '../shared/search-attributes.js';
import { msToTs } from '@temporalio/common/lib/time.js';
import proto from '@temporalio/proto';

const { IndexedValueType } = proto.temporal.api.enums.v1;

/**
 * Registers expctl's search attributes in a namespace (idempotent). The dev server gets them
 * from its start flags; real clusters and new namespaces get them here (`expctl setup`).
 */
export async function ensureSearchAttributes(connection: Connection, namespace: string): Promise<string[]> {
  const existing = await connection.operatorService.listSearchAttributes({ namespace });
  const known = new Set(Object.keys(existing.customAttributes ?? {}));
  const missing = Object.entries(SEARCH_ATTRIBUTE_TYPE_NAMES).filter(([name]) => !known.has(name));
  if (missing.length === 0) return [];
  await connection.operatorService.addSearchAttributes({
    namespace,
    searchAttributes: Object.fromEntries(
      missing.map(([name, type]) => [
        name,
        type === 'Double' ? IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE : IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
      ]),
    ),
  });
  return missing.map(([name]) => name);
}

/** Creates a namespace if it does not exist and waits until the server serves it. */
export async function ensureNamespace(connection: Connection, namespace: string, retentionDays = 3): Promise<void> {
  try {
    await connection.workflowService.registerNamespace({
      namespace,
      workflowExecutionRetentionPeriod: msToTs(retentionDays * 24 * 3600 * 1000),
    });
  } catch (error) {
    if (!/already exists/i.test((error as Error).message)) throw error;
  }
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await connection.workflowService.describeNamespace({ namespace });
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
