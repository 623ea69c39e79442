/**
 * Lineage: what made a thing (upstream) and what it went into (downstream), along
 * dataset version → experiment → artifact → model version → alias. Pure: the CLI answers it from
 * the catalog through a LineageSource; tests answer it from a fixture.
 */

import { DATASET_NAME_PATTERN } from './datasets.js';
import { MODEL_NAME_PATTERN } from './promotion.js';

export type LineageRef =
  | { kind: 'dataset_version'; dataset: string; version: number }
  | { kind: 'experiment'; id: string }
  | { kind: 'artifact'; experimentId: string; path: string }
  | { kind: 'model_version'; model: string; version: number };

export const LINEAGE_REF_TEXT =
  'a dataset version NAME@V, an experiment ID, an artifact EXPERIMENT_ID:PATH, or a model version model:NAME@V';

/** Reads a reference as the user typed it; null when it is none of the four kinds. */
export function parseLineageRef(text: string): LineageRef | null {
  const model = /^model:([^@]+)@([1-9][0-9]*)$/.exec(text);
  if (model && MODEL_NAME_PATTERN.test(model[1]!))
    return { kind: 'model_version', model: model[1]!, version: Number(model[2]) };
  const dataset = /^([^@:]+)@([1-9][0-9]*)$/.exec(text);
  if (dataset && DATASET_NAME_PATTERN.test(dataset[1]!))
    return { kind: 'dataset_version', dataset: dataset[1]!, version: Number(dataset[2]) };
  const artifact = /^(exp-[A-Za-z0-9_.-]+):(.+)$/.exec(text);
  if (artifact) return { kind: 'artifact', experimentId: artifact[1]!, path: artifact[2]! };
  if (/^exp-[A-Za-z0-9_.-]+$/.test(text)) return { kind: 'experiment', id: text };
  return null;
}

export function refText(ref: LineageRef): string {
  switch (ref.kind) {
    case 'dataset_version':
      return `${ref.dataset}@${ref.version}`;
    case 'experiment':
      return ref.id;
    case 'artifact':
      return `${ref.experimentId}:${ref.path}`;
    case 'model_version':
      return `model:${ref.model}@${ref.version}`;
  }
}

type Awaitable<T> = T | Promise<T>;

/** What the catalog knows, as lineage needs it (answered now, or once the catalog has read it). */
export interface LineageSource {
  datasetVersion(dataset: string, version: number): Awaitable<{ status: string; records: number | null } | null>;
  experiment(id: string): Awaitable<{
    tag: string;
    status: string;
    decision: string | null;
    commit: string;
    metricName: string;
    metric: number | null;
    origin: { kind: string; of: string } | null;
  } | null>;
  /** The dataset versions an experiment was pinned to. */
  datasetsOf(experimentId: string): Awaitable<{ ref: string; dataset: string; version: number }[]>;
  /** The experiments pinned to a dataset version. */
  experimentsUsing(dataset: string, version: number): Awaitable<string[]>;
  artifactsOf(experimentId: string): Awaitable<{ path: string; sha256: string }[]>;
  /** Experiments started from another (retry, rerun, promotion holdout runs). */
  derivedFrom(experimentId: string): Awaitable<{ id: string; kind: string }[]>;
  modelVersionsFrom(experimentId: string): Awaitable<{ model: string; version: number; artifactPath: string }[]>;
  modelVersion(
    model: string,
    version: number,
  ): Awaitable<{ experimentId: string; artifactPath: string; holdoutExperimentId: string | null } | null>;
  /** The aliases a model version holds now. */
  aliasesOf(model: string, version: number): Awaitable<string[]>;
}

export interface LineageNode {
  ref: LineageRef;
  /** Facts worth a glance: status, decision, metric, records, aliases. */
  detail: string;
  /** How it is related to its parent in the tree ("pinned", "wrote", "promoted as", ...). */
  relation: string | null;
  children: LineageNode[];
  /** Found in the catalog (a reference to something it does not know is still shown). */
  known: boolean;
}

export type Direction = 'upstream' | 'downstream';

async function describe(source: LineageSource, ref: LineageRef): Promise<{ detail: string; known: boolean }> {
  switch (ref.kind) {
    case 'dataset_version': {
      const version = await source.datasetVersion(ref.dataset, ref.version);
      if (!version) return { detail: 'not in the catalog', known: false };
      return {
        detail: `${version.status}${version.records === null ? '' : `, ${version.records} records`}`,
        known: true,
      };
    }
    case 'experiment': {
      const run = await source.experiment(ref.id);
      if (!run) return { detail: 'not in the catalog', known: false };
      const metric = run.metric === null ? '' : `, ${run.metricName} ${run.metric}`;
      return {
        detail: `tag ${run.tag}, ${run.status}${run.decision ? ` → ${run.decision}` : ''}${metric}, commit ${run.commit.slice(0, 7)}`,
        known: true,
      };
    }
    case 'artifact': {
      const artifact = (await source.artifactsOf(ref.experimentId)).find((a) => a.path === ref.path);
      return artifact
        ? { detail: `sha256 ${artifact.sha256.slice(0, 12)}`, known: true }
        : { detail: 'not in the catalog', known: false };
    }
    case 'model_version': {
      const version = await source.modelVersion(ref.model, ref.version);
      if (!version) return { detail: 'not in the catalog', known: false };
      const aliases = await source.aliasesOf(ref.model, ref.version);
      return { detail: aliases.length ? `holds ${aliases.join(', ')}` : 'holds no alias now', known: true };
    }
  }
}

/** The next step in one direction: each related thing and how it is related. */
async function neighbours(
  source: LineageSource,
  ref: LineageRef,
  direction: Direction,
): Promise<{ ref: LineageRef; relation: string }[]> {
  if (direction === 'upstream') {
    switch (ref.kind) {
      case 'dataset_version':
        return [];
      case 'experiment': {
        const run = await source.experiment(ref.id);
        return [
          ...(await source.datasetsOf(ref.id)).map((d) => ({
            ref: { kind: 'dataset_version' as const, dataset: d.dataset, version: d.version },
            relation: d.ref.endsWith('@latest') ? `read (${d.ref}, pinned)` : 'read',
          })),
          ...(run?.origin && parseLineageRef(run.origin.of)?.kind === 'experiment'
            ? [{ ref: { kind: 'experiment' as const, id: run.origin.of }, relation: `${run.origin.kind} of` }]
            : []),
        ];
      }
      case 'artifact':
        return [{ ref: { kind: 'experiment', id: ref.experimentId }, relation: 'written by' }];
      case 'model_version': {
        const version = await source.modelVersion(ref.model, ref.version);
        if (!version) return [];
        return [
          {
            ref: { kind: 'artifact', experimentId: version.experimentId, path: version.artifactPath },
            relation: 'made from',
          },
          ...(version.holdoutExperimentId
            ? [{ ref: { kind: 'experiment' as const, id: version.holdoutExperimentId }, relation: 'evaluated by' }]
            : []),
        ];
      }
    }
  }
  switch (ref.kind) {
    case 'dataset_version':
      return (await source.experimentsUsing(ref.dataset, ref.version)).map((id) => ({
        ref: { kind: 'experiment' as const, id },
        relation: 'read by',
      }));
    case 'experiment':
      return [
        ...(await source.artifactsOf(ref.id)).map((a) => ({
          ref: { kind: 'artifact' as const, experimentId: ref.id, path: a.path },
          relation: 'wrote',
        })),
        ...(await source.derivedFrom(ref.id)).map((d) => ({
          ref: { kind: 'experiment' as const, id: d.id },
          relation: `${d.kind} of it`,
        })),
      ];
    case 'artifact':
      return (await source.modelVersionsFrom(ref.experimentId))
        .filter((m) => m.artifactPath === ref.path)
        .map((m) => ({
          ref: { kind: 'model_version' as const, model: m.model, version: m.version },
          relation: 'promoted as',
        }));
    case 'model_version':
      return [];
  }
}

/** The lineage tree of one reference in one direction (each thing shown once; repeats are marked). */
export async function lineage(source: LineageSource, ref: LineageRef, direction: Direction): Promise<LineageNode> {
  const seen = new Set<string>();
  const walk = async (at: LineageRef, relation: string | null, depth: number): Promise<LineageNode> => {
    const key = refText(at);
    const facts = await describe(source, at);
    const node: LineageNode = { ref: at, relation, children: [], ...facts };
    if (seen.has(key) || depth > 32) return { ...node, detail: `${node.detail}; shown above` };
    seen.add(key);
    // One at a time, in order: `seen` marks a repeat where it appears second, as a reader expects.
    for (const next of await neighbours(source, at, direction))
      node.children.push(await walk(next.ref, next.relation, depth + 1));
    return node;
  };
  return walk(ref, null, 0);
}

/** The tree as indented lines, for a terminal. */
export function renderLineage(root: LineageNode): string[] {
  const lines: string[] = [];
  const visit = (node: LineageNode, prefix: string, last: boolean, top: boolean) => {
    const label = `${node.relation ? `${node.relation}: ` : ''}${refText(node.ref)}  (${node.detail})`;
    lines.push(top ? label : `${prefix}${last ? '└─ ' : '├─ '}${label}`);
    const childPrefix = top ? '' : `${prefix}${last ? '   ' : '│  '}`;
    node.children.forEach((child, i) => visit(child, childPrefix, i === node.children.length - 1, false));
  };
  visit(root, '', true, true);
  return lines;
}
