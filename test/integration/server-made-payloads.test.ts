import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { workflowWorkerDataConverter } from '../../src/security/codec.js';
import { dataConverter } from '../../src/temporal/connection.js';
import { ensureNamespace } from '../../src/temporal/setup.js';
import { eventually } from '../helpers/wait.js';

const WORKFLOWS = fileURLToPath(new URL('../fixtures/workflows/cancel-unstarted.ts', import.meta.url));

let connection: Connection;
let native: NativeConnection;
let client: Client;
let namespace: string;

beforeAll(async () => {
  const address = inject('temporalAddress');
  namespace = `server-made-${crypto.randomBytes(3).toString('hex')}`;
  connection = await Connection.connect({ address });
  await ensureNamespace(connection, namespace);
  native = await NativeConnection.connect({ address });
  client = new Client({ connection, namespace, dataConverter: await dataConverter() });
});
afterAll(async () => {
  await native?.close();
  await connection?.close();
});

describe('payloads the Temporal server writes itself', () => {
  it('an activity canceled before any worker started it resolves as canceled under the strict codec', async () => {
    const taskQueue = `server-made-${crypto.randomBytes(3).toString('hex')}`;
    const worker = await Worker.create({
      connection: native,
      namespace,
      taskQueue,
      workflowsPath: WORKFLOWS,
      dataConverter: workflowWorkerDataConverter(await dataConverter()),
    });
    const outcome = await worker.runUntil(async () => {
      const handle = await client.workflow.start('cancelUnstartedActivity', {
        taskQueue,
        workflowId: `cancel-unstarted-${crypto.randomBytes(3).toString('hex')}`,
        args: [`${taskQueue}-nobody-polls`],
      });
      // Closed, or stalled: a refused payload fails the workflow task on every attempt.
      const events = await eventually(async () => {
        const history = (await handle.fetchHistory()).events ?? [];
        const ended = history.some((event) => event.workflowExecutionCompletedEventAttributes);
        const stalled = history.some((event) => event.workflowTaskFailedEventAttributes);
        return ended || stalled ? history : undefined;
      }, 120_000);
      const failed = events.filter((event) => event.workflowTaskFailedEventAttributes);
      if (failed.length) await handle.terminate('stalled on a payload the codec refused');
      return { events, failed, result: failed.length ? undefined : await handle.result() };
    });
    expect(outcome.failed.map((event) => event.workflowTaskFailedEventAttributes?.failure?.message)).toEqual([]);
    expect(outcome.result).toBe('canceled');
    const canceled = outcome.events.find((event) => event.activityTaskCanceledEventAttributes);
    // The server wrote the details itself, unencrypted: the case the codec must let through.
    const details = canceled?.activityTaskCanceledEventAttributes?.details?.payloads?.[0];
    expect(Buffer.from(details?.metadata?.encoding ?? []).toString()).toBe('json/plain');
  });
});
