import crypto from 'node:crypto';
import {
  QueryNotRegisteredError,
  WithStartWorkflowOperation,
  WorkflowNotFoundError,
  type Client,
} from '@temporalio/client';
import type { Catalog } from '../catalog/catalog.js';
import type { EnvironmentRecord, RecordUpdate } from '../catalog/record.js';
import { trainingEnvironment } from '../temporal/training-environment.js';
import { tellGranted as tellLeaseGranted } from '../gpu-worker/lease-release.js';
import {
  parseDatasetRef,
  resolveDatasetRefs,
  type DataResolution,
  type DatasetVersionView,
} from '../domain/dataset-refs.js';
import { DEFAULT_METRIC, newTagState, type RunOutcome, type TagDecision } from '../domain/decision.js';
import { hijackRefusal } from '../domain/environment.js';
import { placementCheck, replacementCheck, type PlacementCheck, type ReplacementCheck } from '../domain/placement.js';
import { DEFAULT_HEARTBEAT_LIMIT_MS } from '../domain/limits.js';
import { publicRequest } from '../domain/redact.js';
import type { Requirements } from '../domain/request.js';
import { CONTROL_TASK_QUEUE, POOL_WORKFLOW_ID, TAG_TASK_QUEUE } from '../shared/constants.js';
import {
  onlineHostsQuery,
  placementCheckQuery,
  placementViewQuery,
  recordBatchUpdate,
  recordOutcomeUpdate,
  leaseMessagesUpdate,
  tagStateQuery,
  type Lease,
  type LeaseAnswer,
  type LeaseRelease,
} from '../workflows/definitions.js';
import type { LeaseRequestInput } from '../domain/lease-request.js';
import { LeaseMessenger } from './lease-messages.js';
import type { TournamentVerdict } from '../domain/tournament.js';
import { tagWorkflow, tagWorkflowId } from '../workflows/tag.js';
import { readPatchWorkflow } from '../workflows/read-patch.js';
import type { FleetStore } from '../store/store.js';

/** The most of a patch one read asks its host for (the host caps a page at READ_PATCH_PAGE_BYTES). */
const PATCH_PAGE_BYTES = 256 * 1024;

/**
 * The longest one batch may wait for the pool's answer. An update can be lost with a pool task
 * that timed out (its retry does not answer it); without a deadline the messenger would wait on
 * it forever and no later request would reach the pool. Under a local step's 30 s, so the step's
 * retry finds the messenger free and asks again (the pool ignores a request it holds).
 */
const LEASE_MESSAGES_DEADLINE_MS = 20_000;

export interface ControlDeps {
  client: Client;
  catalog: Catalog;
  /**
   * Keys the digests of `--secret` values the record keeps (HMAC-SHA256), so two runs can be seen
   * to have had the same secret without the record holding anything that leads back to it.
   */
  secretHashKey: Buffer;
  /** The fleet store: a run's patch is read from it rather than from its validating host. */
  store?: FleetStore;
  /** Wraps the record write (a run's terminal record also audits what was done to it from outside). */
  auditTerminal?: (record: RecordWrite) => RecordWrite;
}

type RecordWrite = (update: RecordUpdate) => Promise<void>;

/** A tag's policy question: its name, the metric the request asks for, its `--env`/`--secret` names. */
interface TagPolicyInput {
  tag: string;
  metric?: { name: string; direction?: 'minimize' | 'maximize' };
  /** The request's `--env` and `--secret` names: hijack variables must be allowed by the tag. */
  envNames?: string[];
}
type TagPolicyAnswer = { metric: { name: string; direction: 'minimize' | 'maximize' } } | { refusal: string };

/** A patch a validating host kept, by its sha256, on that host and (`uri`) in the fleet store. */
interface PatchToKeep {
  experimentId: string;
  hostQueue: string;
  sha256: string;
  bytes: number;
  uri?: string;
}

/** A run's outcome for its tag's decision. */
interface TagOutcomeInput {
  tag: string;
  metric: { name: string; direction: 'minimize' | 'maximize' };
  outcome: RunOutcome;
}

/** Starts a tag's workflow with the metric of its first outcome, unless it runs already (Update-with-Start). */
function startTag(tag: string, metric: { name: string; direction: 'minimize' | 'maximize' }) {
  return new WithStartWorkflowOperation(tagWorkflow, {
    workflowId: tagWorkflowId(tag),
    taskQueue: TAG_TASK_QUEUE,
    args: [tag, newTagState(tag, { metricName: metric.name, direction: metric.direction })],
    workflowIdConflictPolicy: 'USE_EXISTING',
  });
}

/** How long validations answer from one view of the fleet before the pool is asked again. */
const PLACEMENT_VIEW_MS = 1000;

/** Activities on the control queue; they talk to other workflows through the client. */
export function createControlActivities({ client, catalog, secretHashKey, store, auditTerminal }: ControlDeps) {
  const digest = (value: string) => crypto.createHmac('sha256', secretHashKey).update(value, 'utf8').digest('hex');
  const pool = () => client.workflow.getHandle(POOL_WORKFLOW_ID);
  /** One question to the pool in flight at a time, its answer shared for PLACEMENT_VIEW_MS. */
  let view: { at: number; answer: ReturnType<typeof askView> } | undefined;
  const askView = () => pool().query(placementViewQuery);
  const placementView = (fresh: boolean) => {
    if (fresh || !view || Date.now() - view.at > PLACEMENT_VIEW_MS) {
      const answer = askView();
      view = { at: Date.now(), answer };
      answer.catch(() => {
        if (view?.answer === answer) view = undefined;
      });
    }
    return view.answer;
  };
  /**
   * Adds what a run reported to the operating record (idempotent: retries rewrite the same values).
   * The request arrives as submitted; what is stored is its public form, secrets as keyed digests.
   */
  const writeRecord: RecordWrite = async (update) => {
    await catalog.apply(update.request ? { ...update, request: publicRequest(update.request, digest) } : update);
    // Every decision moves the tag's strategy on (the rule reads the tag's runs, this one included).
    if (update.decision) await catalog.refreshStrategy(await catalog.tagOf(update.experimentId));
  };
  const recordExperiment = auditTerminal ? auditTerminal(writeRecord) : writeRecord;

  /** Keeps a patch from the fleet store when it holds it (verified by its sha256); false when it does not. */
  const keepPatchFromStore = async (sha256: string): Promise<boolean> => {
    if (await catalog.hasBlob(sha256)) return true;
    const stored = store ? await store.getBytes(sha256).catch(() => undefined) : undefined;
    if (!stored) return false;
    await catalog.putBlob(sha256, stored.toString('utf8'));
    return true;
  };

  /**
   * Tells a run its lease. A run that has ended gives it back; one that could not be told now asks
   * the pool again within its renewal interval and is given the lease then.
   */
  const tellGranted = (lease: Lease) => tellLeaseGranted(client, lease);

  /** This orchestrator's lease messages, in batches (a pool that is gone holds nothing and queues nothing yet). */
  const leases = new LeaseMessenger(async (batch) => {
    try {
      return await client.withDeadline(Date.now() + LEASE_MESSAGES_DEADLINE_MS, () =>
        pool().executeUpdate(leaseMessagesUpdate, { args: [batch] }),
      );
    } catch (error) {
      if (!(error instanceof WorkflowNotFoundError)) throw error;
      return { answers: batch.requests.map(() => ({ queued: true as const })), granted: [] };
    }
  }, tellGranted);

  /**
   * Asks the pool for a lease: the lease when a slot is free for the run now, else `queued` (the
   * grant comes later by signal; also when the pool is gone for a moment: the run asks again).
   */
  const requestLease = (request: LeaseRequestInput): Promise<LeaseAnswer> => leases.request(request);

  /**
   * Gives a run's lease back (and its place in the queue, without `leaseId`). The runs the freed
   * slots were granted to are told from here, not by the pool: its history keeps the release and
   * the grants, without a signal and a workflow task per grant.
   */
  const releaseLease = (release: LeaseRelease): Promise<void> => leases.release(release);

  const resolveTagPolicy = async (input: TagPolicyInput): Promise<TagPolicyAnswer> => {
    const asked = input.metric;
    let policy;
    try {
      policy = (await client.workflow.getHandle(tagWorkflowId(input.tag)).query(tagStateQuery)).policy;
    } catch (error) {
      if (!(error instanceof WorkflowNotFoundError)) throw error;
      const hijack = hijackRefusal(input.tag, input.envNames ?? []);
      if (hijack) return { refusal: hijack };
      // A new tag takes the request's metric (its first run creates it), else the default.
      if (!asked) return { metric: { ...DEFAULT_METRIC } };
      return {
        metric: {
          name: asked.name,
          direction: asked.direction ?? (asked.name === DEFAULT_METRIC.name ? DEFAULT_METRIC.direction : 'minimize'),
        },
      };
    }
    const hijack = hijackRefusal(input.tag, input.envNames ?? [], policy.allowEnv);
    if (hijack) return { refusal: hijack };
    const tagRule = `${policy.metricName} (${policy.direction})`;
    if (
      asked &&
      (asked.name !== policy.metricName || (asked.direction !== undefined && asked.direction !== policy.direction))
    ) {
      const wanted = `${asked.name}${asked.direction ? ` (${asked.direction})` : ''}`;
      return {
        refusal:
          `tag ${input.tag} decides by ${tagRule}, but this request asks for ${wanted}; ` +
          `drop --metric/--maximize to use the tag's rule, use another tag, or change the tag's policy with \`expctl tag create ${input.tag} --metric ...\``,
      };
    }
    return { metric: { name: policy.metricName, direction: policy.direction } };
  };

  const checkPlacement = async (requirements: Requirements): Promise<PlacementCheck> => {
    try {
      const check = async (fresh: boolean) => {
        const { slots, hosts, policy } = await placementView(fresh);
        return placementCheck(slots, hosts, requirements, policy);
      };
      // A refusal is never read from a view a moment old: a host that just joined may satisfy it.
      const answer = await check(false);
      return answer.refusal === null ? answer : await check(true);
    } catch (error) {
      // A pool run by an orchestrator of an earlier version answers only the per-request question.
      if (error instanceof QueryNotRegisteredError) return pool().query(placementCheckQuery, requirements);
      if (error instanceof WorkflowNotFoundError)
        return { refusal: 'no worker has joined the fleet yet (start one with `expctl worker`)', hostQueue: null };
      throw error;
    }
  };

  const applyTagOutcome = async (input: TagOutcomeInput): Promise<TagDecision> => {
    const startWorkflowOperation = startTag(input.tag, input.metric);
    return client.workflow.executeUpdateWithStart(recordOutcomeUpdate, {
      args: [input.outcome],
      updateId: `outcome-${input.outcome.experimentId}`,
      startWorkflowOperation,
    });
  };

  return {
    recordExperiment,

    /**
     * The environment a run's host recorded, read from the last heartbeat of its train task while
     * that task is still pending (a lost attempt's, revoked before its heartbeat timed out); null
     * when there is none.
     */
    async recordedEnvironment(experimentId: string): Promise<EnvironmentRecord | null> {
      return trainingEnvironment(client, experimentId);
    },

    /**
     * A run's first step, in one: its `validating` record, its tag's policy and the pool's answer
     * whether any slot could run it (with a host to validate on). The three do not depend on each other.
     */
    async beginRun(input: {
      record: RecordUpdate;
      tagPolicy: TagPolicyInput;
      requirements: Requirements;
    }): Promise<{ tagPolicy: TagPolicyAnswer; placement: PlacementCheck }> {
      const [, tagPolicy, placement] = await Promise.all([
        recordExperiment(input.record),
        resolveTagPolicy(input.tagPolicy),
        checkPlacement(input.requirements),
      ]);
      return { tagPolicy, placement };
    },

    /**
     * A validated run joins the pool's queue, in one step: its patch kept from the fleet store (when
     * it is there: `patchKept` false sends the run to storePatch, which also asks its host), its
     * record (validation, `queued`), and its lease request, answered with the lease when a slot is free.
     */
    async enqueueRun(input: {
      record: RecordUpdate;
      patch?: { sha256: string };
      lease: LeaseRequestInput;
      /** Where a lease granted now puts the run's `running` state in its record (revision, timeline index). */
      onGrant?: { revision: number; seq: number; attempts: number };
    }): Promise<LeaseAnswer & { patchKept: boolean }> {
      const patchKept = input.patch ? await keepPatchFromStore(input.patch.sha256) : true;
      await recordExperiment(input.record);
      const answer = await requestLease(input.lease);
      // Granted at once: the catalog says `running` now, not only when the run has ended.
      if ('lease' in answer && input.onGrant) {
        const { revision, seq, attempts } = input.onGrant;
        const note = `on ${answer.lease.slot.slotId}`;
        await recordExperiment({
          experimentId: input.record.experimentId,
          status: 'running',
          revision,
          attempts,
          placement: answer.lease.placement,
          events: [{ status: 'running', at: new Date().toISOString(), note, seq }],
        });
      }
      return { ...answer, patchKept };
    },

    requestLease,
    releaseLease,

    /**
     * A run its tag decides ends in one step: its lease given back first (the slot's next run need
     * not wait for the rest), its outcome decided on its tag, then its end recorded with the decision.
     */
    async finishRun(input: {
      release?: LeaseRelease;
      tagOutcome: TagOutcomeInput;
      record: RecordUpdate;
    }): Promise<TagDecision> {
      if (input.release) await releaseLease(input.release);
      const decision = await applyTagOutcome(input.tagOutcome);
      await recordExperiment({ ...input.record, decision });
      return decision;
    },

    /**
     * Keeps a run's patch whole in the catalog, by its sha256: from the fleet store, where the
     * validating host put it (`uri`), else read page by page from that host (readPatchWorkflow). The
     * text never enters the experiment's history. A patch already kept (another run of the commit)
     * is not read again.
     */
    async storePatch(input: PatchToKeep): Promise<void> {
      // Verified by its sha256 on read; a store that cannot give it leaves the host to ask.
      if (input.uri ? await keepPatchFromStore(input.sha256) : await catalog.hasBlob(input.sha256)) return;
      const pages: Buffer[] = [];
      for (let read = 0; read < input.bytes; ) {
        const page = await client.workflow.execute(readPatchWorkflow, {
          workflowId: `patch-${input.experimentId}-${read}-${crypto.randomBytes(4).toString('hex')}`,
          taskQueue: CONTROL_TASK_QUEUE,
          args: [
            { hostQueue: input.hostQueue, experimentId: input.experimentId, offset: read, maxBytes: PATCH_PAGE_BYTES },
          ],
          workflowExecutionTimeout: '2m',
        });
        const data = Buffer.from(page.data, 'base64');
        if (page.size !== input.bytes || data.length === 0)
          throw new Error(
            `the patch of ${input.experimentId} on its validating host is ${page.size} bytes, not the ${input.bytes} validation reported`,
          );
        pages.push(data);
        read += data.length;
      }
      // The host wrote the patch from text, so its bytes are UTF-8; putBlob checks the sha256.
      await catalog.putBlob(input.sha256, Buffer.concat(pages).toString('utf8'));
    },

    /** What the run's dataset references resolve to now (see dataset-refs.ts); the workflow pins the answer. */
    async resolveDatasets(refs: string[]): Promise<DataResolution> {
      // Read first, then resolve by the pure rule over what was read.
      const latest = new Map<string, DatasetVersionView | null>();
      const versions = new Map<string, DatasetVersionView | null>();
      const known = new Map<string, boolean>();
      for (const raw of refs) {
        const ref = parseDatasetRef(raw);
        if (ref.kind === 'path') continue;
        if (!known.has(ref.dataset)) known.set(ref.dataset, (await catalog.datasets.versions(ref.dataset)).length > 0);
        if (ref.version === 'latest') latest.set(ref.dataset, await catalog.latestPassedDatasetVersion(ref.dataset));
        else versions.set(`${ref.dataset}@${ref.version}`, await catalog.datasetVersion(ref.dataset, ref.version));
      }
      return resolveDatasetRefs(refs, {
        latestPassed: (dataset) => latest.get(dataset) ?? null,
        version: (dataset, version) => versions.get(`${dataset}@${version}`) ?? null,
        known: (dataset) => known.get(dataset) ?? false,
      });
    },

    async ping(): Promise<string> {
      return `control worker pid ${process.pid}`;
    },

    /** Refuses requests no registered slot can ever run; picks a capable host to validate on. */
    checkPlacement,

    /**
     * A run whose worker was lost, before it queues again: whether any registered slot could take
     * it, how many live ones could now, and how long it may wait for one (the pool's heartbeat
     * limit: a worker that restarts registers again within it). Asked of a fresh view.
     */
    async checkReplacement(requirements: Requirements): Promise<ReplacementCheck & { waitMs: number }> {
      const { slots, hosts, policy, heartbeatLimitMs } = await placementView(true);
      return {
        ...replacementCheck(slots, hosts, requirements, policy),
        waitMs: heartbeatLimitMs ?? DEFAULT_HEARTBEAT_LIMIT_MS,
      };
    },

    /**
     * The metric a run of this tag is judged by. A request that names a metric or direction other
     * than the tag's policy is refused: silently judging it by another rule would mislead the agent.
     */
    resolveTagPolicy,

    /** Hosts the pool considers online, with their host queues (for the health check). */
    async listOnlineHosts(): Promise<{ host: string; hostQueue: string }[]> {
      try {
        return await client.workflow.getHandle(POOL_WORKFLOW_ID).query(onlineHostsQuery);
      } catch (error) {
        if (error instanceof WorkflowNotFoundError) return [];
        throw error;
      }
    },

    /** Applies an outcome to its tag's workflow, starting that workflow on first use. */
    applyTagOutcome,

    /** Decides a batch's children together on their tag's workflow (one update: one state change). */
    async applyBatchOutcomes(input: {
      tag: string;
      batchId: string;
      metric: { name: string; direction: 'minimize' | 'maximize' };
      outcomes: RunOutcome[];
    }): Promise<{ decisions: TagDecision[]; winner: TournamentVerdict['winner'] }> {
      const startWorkflowOperation = startTag(input.tag, input.metric);
      return client.workflow.executeUpdateWithStart(recordBatchUpdate, {
        args: [{ batchId: input.batchId, outcomes: input.outcomes }],
        updateId: `batch-${input.batchId}`,
        startWorkflowOperation,
      });
    },
  };
}
