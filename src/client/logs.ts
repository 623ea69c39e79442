import crypto from 'node:crypto';
import {
  ActivityFailure,
  TimeoutFailure,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
} from '@temporalio/client';
import { CONTROL_TASK_QUEUE, hostTaskQueue } from '../shared/constants.js';
import {
  endLogSessionSignal,
  HOST_LOG_ANSWER_SECONDS,
  logSessionWorkflow,
  readLogPageUpdate,
  readStoredLogPageUpdate,
  storedLogsUpdate,
  type LogPage,
} from '../workflows/read-log.js';
import type { StoredLog } from '../activities/store.js';

/** The most a reader asks for per page (the host caps a page lower still). */
const PAGE_BYTES = 1 << 20;

/** The host that holds a run's log did not take the read: its worker is offline or cut off. */
export class HostUnreachableError extends Error {
  constructor(readonly host: string) {
    super(
      `the worker host ${host} did not answer within ${HOST_LOG_ANSWER_SECONDS} s: it is offline or unreachable; ` +
        `the log stays on that host (runs/<experiment>/train.log) until its worker is back`,
    );
  }
}

/**
 * Reads one experiment's log from the host that ran it, page by page from an offset, through one
 * log session workflow for the reader's whole life (a follower long-polls; no workflow per read).
 */
export class LogReader {
  private sessionId: string | undefined;

  constructor(
    private readonly client: Client,
    private readonly experimentId: string,
    private readonly host: string,
  ) {}

  /** The page from `offset`; with `waitMs`, the host answers once the log grows or the wait ends. */
  async page(offset: number, waitMs = 0): Promise<LogPage> {
    for (let attempt = 0; ; attempt++) {
      const sessionId = await this.session();
      try {
        return await this.client.workflow
          .getHandle(sessionId)
          .executeUpdate(readLogPageUpdate, { args: [{ offset, maxBytes: PAGE_BYTES, waitMs }] });
      } catch (error) {
        if (
          error instanceof WorkflowUpdateFailedError &&
          error.cause instanceof ActivityFailure &&
          error.cause.cause instanceof TimeoutFailure
        )
          throw new HostUnreachableError(this.host);
        // The session ended between reads (idle too long): a new one takes over, once.
        if (error instanceof WorkflowNotFoundError && attempt === 0) {
          this.sessionId = undefined;
          continue;
        }
        throw error;
      }
    }
  }

  /** The attempts whose logs were shipped to the fleet store, first first (read by the orchestrator). */
  async storedLogs(): Promise<StoredLog[]> {
    return this.withSession((handle) => handle.executeUpdate(storedLogsUpdate, { args: [] }));
  }

  /** A page of one attempt's shipped log, from the fleet store: for a host that is gone. */
  async storedPage(attempt: number, offset: number): Promise<LogPage> {
    return this.withSession((handle) =>
      handle.executeUpdate(readStoredLogPageUpdate, { args: [{ attempt, offset, maxBytes: PAGE_BYTES }] }),
    );
  }

  /** An update of the session; one that ended between reads (idle too long) is replaced, once. */
  private async withSession<T>(
    update: (handle: ReturnType<Client['workflow']['getHandle']>) => Promise<T>,
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const handle = this.client.workflow.getHandle(await this.session());
      try {
        return await update(handle);
      } catch (error) {
        if (error instanceof WorkflowNotFoundError && attempt === 0) {
          this.sessionId = undefined;
          continue;
        }
        throw error;
      }
    }
  }

  /** Ends the session now rather than after its idle limit. */
  async close(): Promise<void> {
    if (!this.sessionId) return;
    await this.client.workflow
      .getHandle(this.sessionId)
      .signal(endLogSessionSignal)
      .catch(() => undefined);
    this.sessionId = undefined;
  }

  private async session(): Promise<string> {
    if (this.sessionId) return this.sessionId;
    const workflowId = `logs-${this.experimentId}-${crypto.randomBytes(4).toString('hex')}`;
    await this.client.workflow.start(logSessionWorkflow, {
      workflowId,
      taskQueue: CONTROL_TASK_QUEUE,
      args: [{ hostQueue: hostTaskQueue(this.host), experimentId: this.experimentId }],
    });
    this.sessionId = workflowId;
    return workflowId;
  }
}
