import type { Catalog } from '../catalog/catalog.js';
import { preparePromotionFrom, type PrepareResult } from '../catalog/promotion-candidate.js';
import type { AliasMoveResult, ModelCatalog, PromotionRecord } from '../catalog/models.js';
import { PROMOTION_CODES, type PromotionCode } from '../domain/promotion.js';

export type { PrepareResult, PromotionCandidate } from '../catalog/promotion-candidate.js';

/** An alert about a model (a blocked promotion): what, about which subject, why. */
export interface PromotionAlert {
  code: PromotionCode;
  subject: string;
  message: string;
  at: string;
}

export interface PromotionDeps {
  catalog: Catalog;
  /** Where alerts go: the alerts table and the alert command (the dataset activities' raiseAlert). */
  raiseAlert: (alert: PromotionAlert) => Promise<unknown>;
}

/** Activities on the control queue that write a promotion's record and move aliases. */
export function createPromotionActivities({ catalog, raiseAlert }: PromotionDeps) {
  const models = catalog.models;
  return {
    async preparePromotion(input: {
      experimentId: string;
      artifact?: string;
      model: string;
      alias: string;
    }): Promise<PrepareResult> {
      return preparePromotionFrom(catalog, input);
    },

    /** Creates or updates a promotion's row (status, stages, evidence). */
    async recordPromotion(update: Partial<PromotionRecord> & { id: string }): Promise<void> {
      await models.recordPromotion(update);
    },

    /** Compare-and-set of the alias onto the candidate (see ModelCatalog.promote). */
    async moveAliasToCandidate(input: Omit<Parameters<ModelCatalog['promote']>[0], 'at'>): Promise<AliasMoveResult> {
      return models.promote({ ...input, at: new Date().toISOString() });
    },

    /** Moves the alias back along its history (see ModelCatalog.rollback). */
    async rollbackAlias(input: {
      model: string;
      alias: string;
      by: string;
      reason: string | null;
      requestId: string;
    }): Promise<AliasMoveResult> {
      return models.rollback({ ...input, at: new Date().toISOString() });
    },

    async raisePromotionAlert(alert: PromotionAlert): Promise<void> {
      await raiseAlert(alert);
    },
  };
}
