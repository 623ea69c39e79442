import type { LineageSource } from '../domain/lineage.js';
import type { CatalogReader } from './catalog.js';

/** Lineage answered from the operating record: every edge is a row the activities wrote. */
export function catalogLineageSource(catalog: CatalogReader): LineageSource {
  const models = catalog.models;
  return {
    datasetVersion: async (dataset, version) => {
      const found = await catalog.datasetVersion(dataset, version);
      return found ? { status: found.status, records: found.records } : null;
    },
    experiment: async (id) => {
      const record = await catalog.get(id);
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
    experimentsUsing: async (dataset, version) =>
      (await catalog.experimentsUsing(dataset, version)).map((e) => e.experimentId),
    artifactsOf: async (experimentId) => (await catalog.get(experimentId))?.artifacts ?? [],
    derivedFrom: (experimentId) => catalog.derivedExperiments(experimentId),
    modelVersionsFrom: async (experimentId) =>
      (await models.versionsByExperiment(experimentId)).map((v) => ({
        model: v.model,
        version: v.version,
        artifactPath: v.artifactPath,
      })),
    modelVersion: async (model, version) => {
      const found = await models.version(model, version);
      return found
        ? {
            experimentId: found.experimentId,
            artifactPath: found.artifactPath,
            holdoutExperimentId: found.holdoutExperimentId,
          }
        : null;
    },
    aliasesOf: async (model, version) =>
      Object.entries(await models.aliases(model))
        .filter(([, held]) => held === version)
        .map(([alias]) => alias),
  };
}
