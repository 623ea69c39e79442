import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { TagDecision, TagPolicy, TagState, RunOutcome } from '../domain/decision.js';
import type { HostRegistration, Slot } from '../domain/fleet.js';
import type { HostHealthReport, SlotProblem } from '../domain/health.js';
import type { LeaseRequest, PlacementRecord, PlacementPolicy } from '../domain/placement.js';
import type { Requirements } from '../domain/request.js';
import type { ExperimentSnapshot } from './experiment-state.js';

/** Message definitions shared by workflows and clients: one place for every name on the wire. */

// Pool
export interface Lease {
  leaseId: string;
  experimentId: string;
  slot: Slot;
  hostQueue: string;
  grantedAt: number;
  placement: PlacementRecord;
}
export interface HostEntry {
  host: string;
  hostQueue: string;
  driverVersion?: string;
  datasets: string[];
  software: Record<string, string>;
  online: boolean;
  lastHeartbeat: number;
  registeredAt: number;
  incarnation?: string;
  /** Why the host went offline, until it registers again. */
  offlineReason?: string | null;
}
export interface SlotEntry {
  slot: Slot;
  lease: Omit<Lease, 'slot' | 'placement'> | null;
  draining: boolean;
  drainReason: string | null;
  /** Who drained it: an operator's drain is only lifted by an operator, a health drain by recovery. */
  drainedBy: 'operator' | 'health' | null;
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
}
export const registerHostSignal = defineSignal<[HostRegistration]>('registerHost');
export const hostHeartbeatSignal = defineSignal<[{ host: string }]>('hostHeartbeat');
export const deregisterHostSignal = defineSignal<[{ host: string }]>('deregisterHost');
/** An experiment found the host unreachable: offline at once, its leases revoked, no lease until it registers again. */
export const hostLostSignal = defineSignal<[{ host: string; reason: string }]>('hostLost');
/** Whether a lease is still held: a worker asks before it spawns training, so a released lease never runs. */
export const leaseHeldQuery = defineQuery<boolean, [{ slotId: string; leaseId: string }]>('leaseHeld');
export const requestLeaseSignal =
  defineSignal<[{ experimentId: string; requirements: Requirements; priority: number; datasets?: string[] }]>(
    'requestLease',
  );
export const releaseLeaseSignal = defineSignal<[{ experimentId: string }]>('releaseLease');
export const drainSignal = defineSignal<[{ target: string; drained: boolean; reason: string }]>('drain');
export const healthReportSignal =
  defineSignal<[{ host: string; report: HostHealthReport; problems: SlotProblem[] }]>('healthReport');
export const configurePoolSignal =
  defineSignal<[{ heartbeatLimitMs?: number; policy?: Partial<PlacementPolicy> }]>('configurePool');
export const poolStateQuery = defineQuery<PoolSnapshot>('poolState');

// Experiment
export const leaseGrantedSignal = defineSignal<[Lease]>('leaseGranted');
export const leaseRevokedSignal = defineSignal<[{ leaseId: string; reason: string }]>('leaseRevoked');
export const experimentStateQuery = defineQuery<ExperimentSnapshot>('experimentState');

// Tag
export const recordOutcomeUpdate = defineUpdate<TagDecision, [RunOutcome]>('recordOutcome');
export const configureTagUpdate = defineUpdate<TagState, [Partial<TagPolicy>]>('configureTag');
export const tagStateQuery = defineQuery<TagState>('tagState');
