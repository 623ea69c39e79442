import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createGpuWorker } from '../../src/roots/gpu-worker.js';
import { createOrchestratorWorker } from '../../src/roots/orchestrator.js';
import { CONTROL_TASK_QUEUE, hostTaskQueue } from '../../src/shared/constants.js';
import { dataConverter } from '../../src/temporal/connection.js';
import { PortInUseError, startDevServer } from '../../src/temporal/dev-server.js';
import { freePort } from '../../src/shared/ports.js';
import { smokeWorkflow } from '../../src/workflows/smoke.js';
import { startStack, testTrust, type TestStack } from '../helpers/stack.js';
import { loadIssuerPublicKey } from '../../src/security/credentials.js';
import { eventually } from '../helpers/wait.js';

describe('foundation on a real Temporal dev server', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({ name: 'foundation', host: 'smokehost', cpuSlots: 2 });
  });
  afterAll(async () => stack?.stop());

  it('runs a workflow with activities on the control queue and on a GPU worker host queue', async () => {
    const result = await stack.client.workflow.execute(smokeWorkflow, {
      workflowId: `smoke-roundtrip-${Date.now()}`,
      taskQueue: CONTROL_TASK_QUEUE,
      args: [{ hostQueue: hostTaskQueue('smokehost'), tag: 'roundtrip' }],
    });
    expect(result.control).toBe(`control worker pid ${process.pid}`);
    expect(result.host).toBe('smokehost');
    expect(result.slots).toBe(2);
  });

  it('makes the custom search attributes queryable through a list query', async () => {
    const workflowId = `smoke-search-${Date.now()}`;
    await stack.client.workflow.execute(smokeWorkflow, {
      workflowId,
      taskQueue: CONTROL_TASK_QUEUE,
      args: [{ hostQueue: hostTaskQueue('smokehost'), tag: 'searchable' }],
    });
    const found = await eventually(async () => {
      const ids: string[] = [];
      for await (const execution of stack.client.workflow.list({
        query: `ExpctlTag = 'searchable' AND ExpctlStatus = 'completed'`,
      }))
        ids.push(execution.workflowId);
      return ids.length > 0 ? ids : undefined;
    });
    expect(found).toEqual([workflowId]);
    const none = [];
    for await (const execution of stack.client.workflow.list({ query: `ExpctlTag = 'no-such-tag'` }))
      none.push(execution);
    expect(none).toHaveLength(0);
  });
});

describe('dev server lifecycle', () => {
  it('keeps a finished workflow across a restart on the same SQLite file', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-restart-'));
    const binary = inject('temporalCli');
    const options = async () => ({
      binary,
      dbFile: path.join(dir, 'temporal.db'),
      ip: '127.0.0.1',
      grpcPort: await freePort(),
      uiPort: await freePort(),
      logFile: path.join(dir, 'temporal.log'),
    });
    const workflowId = `survivor-${Date.now()}`;
    const first = await startDevServer(await options());
    try {
      const nativeConnection = await NativeConnection.connect({ address: first.address });
      const connection = await Connection.connect({ address: first.address });
      const converter = await dataConverter();
      const client = new Client({ connection, dataConverter: converter });
      const orchestrator = await createOrchestratorWorker({
        connection: nativeConnection,
        namespace: 'default',
        client,
        dataConverter: converter,
        catalog: path.join(dir, 'catalog.sqlite'),
        issuer: loadIssuerPublicKey(testTrust().home),
      });
      const gpu = await createGpuWorker({
        connection: nativeConnection,
        namespace: 'default',
        client,
        dataConverter: converter,
        host: 'restarthost',
        cpuSlots: 1,
        workDir: path.join(dir, 'worker'),
        log: () => undefined,
        credential: testTrust().credential,
      });
      const running = Promise.all([orchestrator.run(), gpu.run()]);
      await client.workflow.execute(smokeWorkflow, {
        workflowId,
        taskQueue: CONTROL_TASK_QUEUE,
        args: [{ hostQueue: hostTaskQueue('restarthost'), tag: 'restart' }],
      });
      await gpu.shutdown();
      orchestrator.shutdown();
      await running;
      await nativeConnection.close();
      await connection.close();
    } finally {
      await first.stop();
    }

    const second = await startDevServer(await options());
    try {
      const connection = await Connection.connect({ address: second.address });
      const description = await new Client({ connection, dataConverter: await dataConverter() }).workflow
        .getHandle(workflowId)
        .describe();
      expect(description.status.name).toBe('COMPLETED');
      expect(description.typedSearchAttributes.get({ name: 'ExpctlTag', type: 'KEYWORD' })).toBe('restart');
      await connection.close();
    } finally {
      await second.stop();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('names the busy port and the variable to change when a port is taken', async () => {
    const blocker = net.createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
    try {
      const attempt = startDevServer({
        binary: inject('temporalCli'),
        dbFile: path.join(os.tmpdir(), 'unused.db'),
        ip: '127.0.0.1',
        grpcPort: port,
        uiPort: await freePort(),
        logFile: path.join(os.tmpdir(), 'unused.log'),
      });
      await expect(attempt).rejects.toBeInstanceOf(PortInUseError);
      await expect(attempt).rejects.toThrow(
        `port ${port} is already in use by another process; set EXPCTL_TEMPORAL_PORT to a free port`,
      );
    } finally {
      blocker.close();
    }
  });
});
