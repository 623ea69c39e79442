import { ApplicationFailure } from '@temporalio/common';
import type { Catalog } from '../catalog/catalog.js';
import {
  answerCatalogQuery,
  CatalogAnswerTooLargeError,
  catalogQuerySchema,
  type CatalogAnswers,
  type CatalogQuery,
  type StrategyRow,
} from '../catalog/queries.js';
import { strategyChangeProblem, type StrategyChange } from '../domain/strategy.js';
import { CATALOG_QUERY_REFUSED } from '../shared/constants.js';

/**
 * The catalog's activities on the control queue: the one read path for readers on other hosts,
 * and the tag strategy an operator sets (only activities write the record).
 */
export function createCatalogActivities({ catalog }: { catalog: Catalog }) {
  return {
    /** Answers one read of the record (catalog/queries.ts), bounded in size. */
    async queryCatalog(input: CatalogQuery): Promise<CatalogAnswers[CatalogQuery['kind']]> {
      const parsed = catalogQuerySchema.safeParse(input);
      if (!parsed.success)
        throw ApplicationFailure.nonRetryable(
          `malformed catalog query: ${parsed.error.message}`,
          CATALOG_QUERY_REFUSED,
        );
      try {
        return await answerCatalogQuery(catalog, parsed.data);
      } catch (error) {
        if (error instanceof CatalogAnswerTooLargeError)
          throw ApplicationFailure.nonRetryable(error.message, CATALOG_QUERY_REFUSED);
        throw error;
      }
    },

    /**
     * An operator's mode for a tag (manual until set back to `auto`, which hands the tag back to the
     * deterministic rule at once). Called by the tag workflow after it has checked the credential.
     */
    async setTagStrategy(input: { tag: string; change: StrategyChange }): Promise<StrategyRow> {
      const problem = strategyChangeProblem(input.change);
      if (problem) throw ApplicationFailure.nonRetryable(problem, 'invalid_strategy');
      const { tag, change } = input;
      if (change.mode === 'auto') {
        await catalog.setStrategy(tag, 'explore', 'back to the automatic rule', false);
        await catalog.refreshStrategy(tag);
      } else {
        await catalog.setStrategy(tag, change.mode, change.reason!, true);
      }
      return (await catalog.strategy(tag))!;
    },
  };
}
