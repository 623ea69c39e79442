/** Every workflow the orchestrator worker registers. */
export { experimentWorkflow } from './experiment.js';
export { poolWorkflow } from './pool.js';
export { tagWorkflow } from './tag.js';
export { smokeWorkflow } from './smoke.js';
export { logSessionWorkflow } from './read-log.js';
export { readPatchWorkflow } from './read-patch.js';
export { catalogQueryWorkflow } from './catalog-query.js';
export { healthCheckWorkflow } from './health.js';
export { leaseCyclerWorkflow } from './lease-cycler.js';
export { revokeCredentialWorkflow } from './credentials.js';
export { promotionWorkflow } from './promotion.js';
export { rollbackWorkflow } from './rollback.js';
export { datasetWorkflow } from './dataset.js';
export { datasetVersionWorkflow } from './dataset-version.js';
export { shardUploadWorkflow } from './shard-upload.js';
export { batchWorkflow } from './batch.js';
export { storeGcWorkflow } from './store-gc.js';
