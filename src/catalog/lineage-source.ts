import type { LineageSource } from '../domain/lineage.js';
import type { CatalogReader } from './catalog.js';
import { ModelCatalog } from './models.js';

/** Lineage answered from the operating record: every edge is a row the activities wrote. */
export function catalogLineageSource(catalog: CatalogReader): LineageSource {
  const models = new ModelCatalog(catalog.db);
  return {
    datasetVersion: (dataset, version) => {
      const found = catalog.datasetVersion(dataset, version);
      return found ? { status: found.status, records: found.records } : null;
    },
    experiment: (id) => {
      const record = catalog.get(id);
      if (!record) return null;
      return {
        tag: record.tag,
        status: record.status,
        decision: record.decision,
        commit: record.commit,
        metricName: record.metricName,
        metric: record.metric,
        origin: record.originKind && record.originId ? { kind: record.originKind, of: record.originId } : null,
      };
    },
    datasetsOf: (experimentId) => catalog.pinnedDatasets(experimentId),
    experimentsUsing: (dataset, version) => catalog.experimentsUsing(dataset, version).map((e) => e.experimentId),
    artifactsOf: (experimentId) => catalog.get(experimentId)?.artifacts ?? [],
    derivedFrom: (experimentId) => catalog.derivedExperiments(experimentId),
    modelVersionsFrom: (experimentId) =>
      models
        .versionsByExperiment(experimentId)
        .map((v) => ({ model: v.model, version: v.version, artifactPath: v.artifactPath })),
    modelVersion: (model, version) => {
      const found = models.version(model, version);
      return found
        ? {
            experimentId: found.experimentId,
            artifactPath: found.artifactPath,
            holdoutExperimentId: found.holdoutExperimentId,
          }
        : null;
    },
    aliasesOf: (model, version) =>
      Object.entries(models.aliases(model))
        .filter(([, held]) => held === version)
        .map(([alias]) => alias),
  };
}
