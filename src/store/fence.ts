import { StoreError, type FleetStore, type StoredObject } from './store.js';

/**
 * Fencing: at most one attempt of a run writes to the store. Each attempt holds a token (its
 * experiment, attempt number and lease); the store keeps the current one per run. An attempt
 * claims the fence before it restores or writes anything, and every write it makes checks the
 * fence first, so an attempt given up as lost (a zombie on a cut host) is refused once its
 * successor has claimed.
 */
export interface FenceToken {
  experimentId: string;
  attempt: number;
  leaseId: string;
}

interface FenceDocument extends FenceToken {
  claimedAt: string;
}

/** The run's documents: `runs/<experimentId>/…`; one attempt's: `runs/<experimentId>/attempts/<n>/…`. */
export const runDocument = (experimentId: string, name: string) => `runs/${experimentId}/${name}`;
export const attemptDocument = (experimentId: string, attempt: number, name: string) =>
  runDocument(experimentId, `attempts/${attempt}/${name}`);
const fenceDocument = (experimentId: string) => runDocument(experimentId, 'fence');

export async function currentFence(store: FleetStore, experimentId: string): Promise<FenceDocument | null> {
  return store.getDocument<FenceDocument>(fenceDocument(experimentId));
}

/** Whether `token` is a later attempt than `held` (a newer attempt, or the same one on a newer lease). */
const supersedes = (token: FenceToken, held: FenceToken) => token.attempt > held.attempt;
const sameHolder = (token: FenceToken, held: FenceToken) =>
  token.attempt === held.attempt && token.leaseId === held.leaseId;

function fenced(token: FenceToken, held: FenceToken): StoreError {
  return new StoreError(
    'fenced',
    `attempt ${token.attempt} of ${token.experimentId} (lease ${token.leaseId}) is no longer current: attempt ${held.attempt} (lease ${held.leaseId}) holds its fence; the write was refused`,
  );
}

/**
 * Makes `token` the run's current attempt. Refused (`fenced`) when a later attempt already holds
 * the fence; claiming again with the same token is a no-op.
 */
export async function claimFence(store: FleetStore, token: FenceToken): Promise<void> {
  const held = await currentFence(store, token.experimentId);
  if (held && sameHolder(token, held)) return;
  if (held && !supersedes(token, held)) throw fenced(token, held);
  await store.putDocument(fenceDocument(token.experimentId), { ...token, claimedAt: new Date().toISOString() });
}

/** Throws `fenced` unless `token` holds the run's fence now. */
export async function checkFence(store: FleetStore, token: FenceToken): Promise<void> {
  const held = await currentFence(store, token.experimentId);
  if (!held || !sameHolder(token, held)) throw fenced(token, held ?? { ...token, attempt: 0, leaseId: 'none' });
}

/** What one attempt may write: objects and its own documents, each checked against the fence first. */
export interface AttemptWriter {
  readonly token: FenceToken;
  putFile(file: string): Promise<StoredObject>;
  putBytes(bytes: Uint8Array): Promise<StoredObject>;
  /** A document of this attempt: `runs/<experimentId>/attempts/<n>/<name>`. */
  putAttemptDocument(name: string, value: unknown): Promise<void>;
}

export function attemptWriter(store: FleetStore, token: FenceToken): AttemptWriter {
  return {
    token,
    async putFile(file) {
      await checkFence(store, token);
      return store.putFile(file);
    },
    async putBytes(bytes) {
      await checkFence(store, token);
      return store.putBytes(bytes);
    },
    async putAttemptDocument(name, value) {
      await checkFence(store, token);
      await store.putDocument(attemptDocument(token.experimentId, token.attempt, name), value);
    },
  };
}
