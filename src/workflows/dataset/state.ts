import { proxyActivities } from '@temporalio/workflow';
import type { createDatasetActivities } from '../../activities/datasets.js';
import { KEPT_SEALED_VERSIONS, newDatasetState, type DatasetState, type VersionState } from '../../domain/datasets.js';
import { CONTROL_TASK_QUEUE } from '../../shared/constants.js';

export const data = proxyActivities<ReturnType<typeof createDatasetActivities>>({
  taskQueue: CONTROL_TASK_QUEUE,
  startToCloseTimeout: '10m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
});

/** The one state every step of a dataset's workflow reads and moves (carried across continue-as-new). */
export interface DatasetHome {
  readonly dataset: string;
  readonly state: DatasetState;
  /** Runs a step after every earlier one finished: decisions on membership and seals never interleave. */
  readonly serially: <T>(fn: () => Promise<T>) => Promise<T>;
}

export function newHome(dataset: string, carried?: DatasetState): DatasetHome {
  return { dataset, state: carried ?? newDatasetState(dataset), serially: serializer() };
}

function serializer() {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(fn: () => Promise<T>): Promise<T> => {
    const run = tail.then(fn);
    tail = run.catch(() => undefined);
    return run;
  };
}

/** `NAME@V`, as messages name a version. */
export const subject = (home: DatasetHome, version: number) => `${home.dataset}@${version}`;

export const find = (home: DatasetHome, version: number) => home.state.versions.find((v) => v.version === version);

export const newestOpen = (home: DatasetHome): VersionState | undefined =>
  home.state.versions.filter((v) => v.status === 'open').sort((a, b) => b.version - a.version)[0];

/** Keeps only the newest sealed versions in the state (the catalog remembers the rest). */
export function forget(home: DatasetHome): void {
  const { state } = home;
  const sealed = state.versions.filter((v) => v.status !== 'open').sort((a, b) => b.version - a.version);
  const drop = new Set(sealed.slice(KEPT_SEALED_VERSIONS).map((v) => v.version));
  if (drop.size) state.versions = state.versions.filter((v) => !drop.has(v.version));
}
