import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { Authorization } from '../domain/authorization.js';
import type { TagDecision, TagPolicy, TagState, RunOutcome } from '../domain/decision.js';
import type { TournamentVerdict } from '../domain/tournament.js';
import type { BatchSnapshot } from './batch-state.js';
import type { DrainOutcome, HostRegistration, Slot } from '../domain/fleet.js';
import type { HostHealthReport, SlotProblem } from '../domain/health.js';
import type { GpuFailure } from '../domain/telemetry.js';
import type { LeaseRequest, PlacementCheck, PlacementRecord, PlacementPolicy, QueuePlan } from '../domain/placement.js';
import type { TagUsage } from '../domain/fair-share.js';
import type { Requirements } from '../domain/request.js';
import type { LeaseRequestInput } from '../domain/lease-request.js';
import type { HostFencing } from '../domain/limits.js';
import type { StrategyChange } from '../domain/strategy.js';
import type { StrategyRow } from '../catalog/queries.js';
import type { ExperimentSnapshot } from './experiment-state.js';
import type {
  AddShardResult,
  DatasetPolicy,
  DatasetState,
  SealReason,
  ShardOffer,
  VersionOutcome,
} from '../domain/datasets.js';

/** Message definitions shared by workflows and clients: one place for every name on the wire. */

// Pool
export interface Lease {
  leaseId: string;
  experimentId: string;
  /** The experiment's tag, for fair share (absent on leases granted by earlier versions). */
  tag?: string;
  /** The lead GPU: slots[0]. Its queue runs the training activity. */
  slot: Slot;
  /** Every GPU of the lease, in topology order (one for a 1-GPU run). */
  slots: Slot[];
  hostQueue: string;
  grantedAt: number;
  placement: PlacementRecord;
  /** Its host's fencing (absent for hosts of older workers): a lost attempt is re-placed only after it. */
  fencing?: HostFencing;
}
export interface HostEntry {
  host: string;
  hostQueue: string;
  driverVersion?: string;
  datasets: string[];
  software: Record<string, string>;
  online: boolean;
  /** When the pool last heard from it: its registration (liveness is judged by its liveness workflow). */
  lastHeartbeat: number;
  registeredAt: number;
  incarnation?: string;
  /** Why the host went offline, until it registers again. */
  offlineReason?: string | null;
  /** The worker identity that registered it: while the host is online, no other identity may claim its name. */
  identity?: string | null;
  /** The registration digest verified for this incarnation (later heartbeats carrying it are not verified again). */
  verifiedDigest?: string | null;
  /** How often its worker heartbeats (domain/fleet.ts silenceLimitMs). */
  heartbeatMs?: number;
  /** Its fencing, as it registered it. */
  fencing?: HostFencing;
  /** The incarnation its liveness workflow watches, and the silence limit that workflow was told. */
  liveness?: { incarnation: string; limitMs: number };
}
/** A registration the pool refused (no valid credential, or a live host's name claimed by another identity). */
export interface RegistrationRefusal {
  host: string;
  incarnation: string | null;
  reason: string;
  at: number;
}
/** A lease as a slot holds it (see SlotEntry.lease). */
export type SlotLease = Omit<Lease, 'slot' | 'slots' | 'placement'> & { slotIds?: string[]; endsBy?: number };
/**
 * The run lined up behind a 1-GPU slot's lease: its worker hands the slot on at the holder's exit
 * without a message to the pool (pool-lineup.ts). `request` is the queue entry it came from, so a
 * revocation puts it back where it stood.
 */
export interface LinedUp {
  lease: SlotLease;
  request: LeaseRequest;
}
export interface SlotEntry {
  slot: Slot;
  /**
   * The lease holding this slot: every slot of a gang holds the same lease (same leaseId), with
   * slotIds naming the gang (absent for a 1-GPU lease) and endsBy when it ends at the latest.
   */
  lease: SlotLease | null;
  /** The run lined up behind `lease` (absent or null: none); only on a 1-GPU lease. */
  next?: LinedUp | null;
  draining: boolean;
  drainReason: string | null;
  /** Who drained it: an operator's drain is only lifted by an operator, a health drain by recovery. */
  drainedBy: 'operator' | 'health' | null;
  /** When a GPU failure that drained it was seen (the host's clock): an older health report does not lift it. */
  healthSince?: string;
}
export interface HostHealth {
  checkedAt: string;
  problems: SlotProblem[];
  report: HostHealthReport;
}
export interface PoolSnapshot {
  hosts: Record<string, HostEntry>;
  slots: SlotEntry[];
  queue: LeaseRequest[];
  policy: PlacementPolicy;
  heartbeatLimitMs: number;
  leasesGranted: number;
  /** Latest scheduled health check per host. */
  health: Record<string, HostHealth>;
  /** Latest refused registration per host name. */
  refusals?: Record<string, RegistrationRefusal>;
  /** Each tag's finished GPU time, decayed (fair-share.ts); absent until a lease ends. */
  usage?: Record<string, TagUsage>;
  /** Operator drains by slot id, as kept in the catalog: a slot registered later starts drained. */
  drains?: Record<string, string>;
}
export const registerHostSignal = defineSignal<[HostRegistration]>('registerHost');
/** A worker shutting down, signed by the identity that registered the host (unsigned ones are ignored). */
export const deregisterHostSignal =
  defineSignal<[{ host: string; incarnation?: string; authorization?: Authorization }]>('deregisterHost');
/**
 * The host is unreachable (an experiment found it so, or its liveness workflow did): offline at once,
 * its leases revoked, no lease until it registers again. With `incarnation`, only that incarnation.
 */
export const hostLostSignal = defineSignal<[{ host: string; reason: string; incarnation?: string }]>('hostLost');
/** What a host liveness workflow watches: one incarnation of one host, silent at most `limitMs`. */
export interface HostLivenessInput {
  host: string;
  hostQueue: string;
  incarnation: string;
  limitMs: number;
}
/** Failure type of a liveness question put to a worker that is not the incarnation it names. */
export const NOT_THIS_INCARNATION = 'not_this_incarnation';
/** The pool's heartbeat limit changed: the liveness workflow watches with the host's new silence limit. */
export const livenessLimitSignal = defineSignal<[{ limitMs: number }]>('livenessLimit');
/**
 * Whether a lease is still held: a worker asks before it spawns training, so a released lease never
 * runs, and while it trains. null: the pool does not know the slot (it was started again without
 * its state and the host has not registered since): neither a yes nor a no.
 */
export const leaseHeldQuery = defineQuery<boolean | null, [{ slotId: string; leaseId: string }]>('leaseHeld');
/** leaseHeld of several leases in one question, an answer for each in order: a host's periodic checks. */
export const leasesHeldQuery = defineQuery<(boolean | null)[], [{ slotId: string; leaseId: string }[]]>('leasesHeld');
/**
 * The run lined up behind a lease, as its run is told it (with a placement record), or null: what a
 * worker asks at its run's exit (a query writes no history) to hand the slot on by itself.
 */
export const successorQuery = defineQuery<Lease | null, [string]>('successor');
/** `holdSeconds`: the longest the run holds its lease once granted (setup and kill limits): backfill counts on it. */
export const requestLeaseSignal = defineSignal<
  [
    {
      experimentId: string;
      requirements: Requirements;
      priority: number;
      tag?: string;
      datasets?: string[];
      holdSeconds?: number;
    },
  ]
>('requestLease');
/**
 * The pool's answer to a lease request: the lease, when the request got one in the grant pass it
 * ran at once (no leaseGranted signal follows), else `queued` (a later grant comes by leaseGrantedSignal).
 */
export type LeaseAnswer = { lease: Lease } | { queued: true };
/** The same request as requestLeaseSignal, answered: a free slot is granted in the same workflow task. */
export const requestLeaseUpdate = defineUpdate<LeaseAnswer, [LeaseRequestInput]>('requestLease');
/** `leaseId`: only that lease ends (a late release never frees a later lease of the same run, nor its place in the queue). */
export const releaseLeaseSignal = defineSignal<[LeaseRelease]>('releaseLease');
export interface LeaseRelease {
  experimentId: string;
  leaseId?: string;
}
/**
 * The same release, answered with the leases its grant pass gave other runs: the caller tells
 * them (the pool sends no signal; a run not told asks again and is given its lease).
 */
export const releaseLeaseUpdate = defineUpdate<{ granted: Lease[] }, [LeaseRelease]>('releaseLease');
/** Several runs' releases and requests at once, as one orchestrator gathered them while its last batch was on its way. */
export interface LeaseMessages {
  releases: LeaseRelease[];
  requests: LeaseRequestInput[];
}
/**
 * A batch of lease messages: the releases first, then the requests, then one grant pass. Answers
 * each request in order (its lease, or queued) and the leases the pass gave runs not in the batch
 * (the caller tells them, as with releaseLeaseUpdate). A busy fleet's messages cost the pool's
 * history one update for many runs.
 */
export const leaseMessagesUpdate = defineUpdate<{ answers: LeaseAnswer[]; granted: Lease[] }, [LeaseMessages]>(
  'leaseMessages',
);
/** An operator's signed drain or undrain of a host or slot; returns the slots it changed. */
export const drainUpdate = defineUpdate<
  DrainOutcome,
  [{ target: string; drained: boolean; reason: string; authorization: Authorization }]
>('drain');
export const healthReportSignal =
  defineSignal<[{ host: string; report: HostHealthReport; problems: SlotProblem[] }]>('healthReport');
/** An experiment's GPU failed mid-run: the pool drains that GPU only (a health drain), before the lease is released. */
export const gpuFailedSignal = defineSignal<[{ experimentId: string; failure: GpuFailure }]>('gpuFailed');
export interface PoolConfiguration {
  heartbeatLimitMs?: number;
  policy?: Partial<PlacementPolicy>;
}
/** An operator's signed change of the pool's heartbeat limit or placement policy. */
export const configurePoolUpdate = defineUpdate<
  { heartbeatLimitMs: number; policy: PlacementPolicy },
  [PoolConfiguration & { authorization: Authorization }]
>('configurePool');
export const poolStateQuery = defineQuery<PoolSnapshot>('poolState');
/**
 * The grant pass the pool would make now (placement.ts planQueue), without its grants: the GPUs
 * held for waiting requests (reservations) and why each waiting request waits (`expctl pool`).
 */
export const poolPlanQuery = defineQuery<Omit<QueuePlan, 'grants'> & { at: number }>('poolPlan');
/** Validation's question, answered in the pool (a few hundred bytes rather than the whole state). */
export const placementCheckQuery = defineQuery<PlacementCheck, [Requirements]>('placementCheck');
/** What validation's question is answered from: the fleet's slots, which hosts are online, the policy. */
export interface PlacementView {
  slots: Slot[];
  hosts: Record<string, { online: boolean; hostQueue: string }>;
  policy: PlacementPolicy;
  /** How long the pool waits for a silent host (a re-placed run waits as long for a live one). */
  heartbeatLimitMs?: number;
}
/**
 * The same view for many questions: the control worker keeps it a moment and answers validations
 * from it, so a burst of submissions asks the pool once rather than once each.
 */
export const placementViewQuery = defineQuery<PlacementView>('placementView');
/** One host's registration as the pool holds it: a worker's question at start-up (bytes, not the whole state). */
export const hostRegistrationQuery = defineQuery<
  { online: boolean; incarnation: string | null; refusal: RegistrationRefusal | null },
  [string]
>('hostRegistration');
/** The hosts the pool considers online, with their queues (the health check's question). */
export const onlineHostsQuery = defineQuery<{ host: string; hostQueue: string }[]>('onlineHosts');

// Experiment
export const leaseGrantedSignal = defineSignal<[Lease]>('leaseGranted');
export const leaseRevokedSignal = defineSignal<[{ leaseId: string; reason: string }]>('leaseRevoked');
export const experimentStateQuery = defineQuery<ExperimentSnapshot>('experimentState');
/** A signed cancel: the holder of the run (submitter) or an operator; refused with permission_denied otherwise. */
export const cancelExperimentUpdate = defineUpdate<{ canceledBy: string }, [{ authorization: Authorization }]>(
  'cancelExperiment',
);

// Tag
export const recordOutcomeUpdate = defineUpdate<TagDecision, [RunOutcome]>('recordOutcome');
/** A batch's children, decided together as a tournament (tournament.ts): the tag's state changes once. */
export const recordBatchUpdate = defineUpdate<
  { decisions: TagDecision[]; winner: TournamentVerdict['winner'] },
  [{ batchId: string; outcomes: RunOutcome[] }]
>('recordBatch');
/** A batch child's outcome, sent to its batch when the child has ended (before it is decided). */
export const batchMemberEndedSignal =
  defineSignal<[{ outcome: RunOutcome; metric: { name: string; direction: 'minimize' | 'maximize' } }]>(
    'batchMemberEnded',
  );
/** The batch's decision on one of its children. */
export const batchDecisionSignal = defineSignal<[TagDecision]>('batchDecision');
export const batchStateQuery = defineQuery<BatchSnapshot>('batchState');
/** An operator's signed change of a tag's policy (creates the tag if new). */
export const configureTagUpdate = defineUpdate<TagState, [Partial<TagPolicy>, Authorization]>('configureTag');
export const tagStateQuery = defineQuery<TagState>('tagState');
/** An operator's signed choice of the tag's search mode; the catalog records it (answers what it now holds). */
export const setStrategyUpdate = defineUpdate<StrategyRow, [StrategyChange, Authorization]>('setStrategy');

// Datasets
/** A producer's signed shard; answers how it was taken, or fails with a code (shard.conflict, late.refused, ...). */
export const addShardUpdate = defineUpdate<AddShardResult, [ShardOffer, Authorization]>('addShard');
/** An operator's signed change of a dataset's lateness allowance or late policy (creates the dataset if new). */
export const configureDatasetUpdate = defineUpdate<DatasetState, [Partial<DatasetPolicy>, Authorization]>(
  'configureDataset',
);
export const datasetStateQuery = defineQuery<DatasetState>('datasetState');
/** Dataset → version: a shard joined the version. */
export const shardArrivedSignal = defineSignal<[{ index: number }]>('shardArrived');
/** Dataset → version: sealed with the shards the catalog holds for it now. */
export const sealVersionSignal = defineSignal<[{ reason: SealReason; sealedAt: string }]>('sealVersion');
/** Version → dataset: the lateness allowance ran out; please seal. */
export const sealRequestSignal = defineSignal<[{ version: number }]>('sealRequest');
/** Version → dataset: the gates decided. */
export const versionDecidedSignal = defineSignal<[{ version: number; status: 'passed' | 'failed' }]>('versionDecided');
export const versionStateQuery = defineQuery<VersionOutcome & { received: number[]; expectedShards: number }>(
  'versionState',
);

// Every workflow
/** A signal, update or start input dropped because the codec refused its payload (refused-messages.ts). */
export interface RefusedMessage {
  kind: 'signal' | 'update' | 'start';
  /** The signal's or update's name; the workflow type for a start input. */
  name: string;
  /** The codec's reason code: payload_not_encrypted, unknown_key or payload_tampered. */
  reason: string;
  at: string;
}
export interface RefusedMessages {
  /** Messages dropped by this run of the workflow. */
  count: number;
  /** The latest of them. */
  recent: RefusedMessage[];
}
export const REFUSED_MESSAGES_QUERY = 'refusedMessages';
/** Any workflow's count of dropped messages (answered by its interceptor, refused-messages.ts). */
export const refusedMessagesQuery = defineQuery<RefusedMessages>(REFUSED_MESSAGES_QUERY);
