import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { DataConverter } from '@temporalio/common';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils.js';
import { Worker } from '@temporalio/worker';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import type { ExperimentRequestInput } from '../../src/domain/request.js';
import { WORKFLOW_INTERCEPTOR_MODULES, WORKFLOWS_PATH } from '../../src/roots/orchestrator.js';
import { payloadCodec } from '../../src/security/codec.js';
import { startCodecServer } from '../../src/security/codec-server.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { experimentStateQuery } from '../../src/workflows/definitions.js';
import { tagWorkflowId } from '../../src/workflows/tag.js';
import { makeRepo } from '../helpers/repo.js';
import { FIXTURES, startStack, type TestStack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Determinism guard: histories recorded from real runs must replay against today's workflow code.
 * Committed fixtures catch a change that breaks running workflows; fresh runs cover every path.
 * Nothing is released yet, so workflows change freely: after a deliberate change, re-record with
 * `EXPCTL_RECORD_HISTORIES=1 npx vitest run test/integration/replay.test.ts`. From the first
 * release on, the fixtures recorded from each released version are kept beside the new ones and
 * a change that breaks them ships as a patch or a new worker version (README, "Design notes").
 */
const HISTORIES = path.join(FIXTURES, 'histories');

/** Committed fixtures are stored decrypted (plain JSON payloads); fresh runs need the stack's codec. */
async function replay(histories: { workflowId: string; history: unknown }[], dataConverter?: DataConverter) {
  const failures: string[] = [];
  for await (const result of Worker.runReplayHistories(
    {
      workflowsPath: WORKFLOWS_PATH,
      interceptors: { workflowModules: WORKFLOW_INTERCEPTOR_MODULES },
      replayName: 'expctl-replay',
      ...(dataConverter ? { dataConverter } : {}),
    },
    histories,
  )) {
    if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
  }
  return failures;
}

describe('replay of recorded histories', () => {
  it('replays every committed history fixture without non-determinism', async () => {
    const files = (await fs.readdir(HISTORIES)).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(5);
    const histories = await Promise.all(
      files.map(async (file) => ({
        workflowId: file.replace(/\.json$/, ''),
        history: historyFromJSON(JSON.parse(await fs.readFile(path.join(HISTORIES, file), 'utf8'))),
      })),
    );
    expect(await replay(histories)).toEqual([]);
  });

  describe('fresh runs', () => {
    let stack: TestStack;
    let source: { repo: string; commit: string };
    beforeAll(async () => {
      stack = await startStack({ name: 'replay', host: 'replayhost', cpuSlots: 2 });
      source = await makeRepo();
    });
    afterAll(async () => stack?.stop());

    it('replays keep, discard, crash, validation failure, cancel, the tag and the pool', async () => {
      const base = {
        tag: 'replay',
        hypothesis: 'h',
        category: 'other',
        command: ['python3', 'train.py'],
        repo: source.repo,
        commit: source.commit,
        timeBudgetSeconds: 30,
      } satisfies ExperimentRequestInput;
      const runs: [string, ExperimentRequestInput][] = [
        ['experiment-keep', { ...base, env: { VAL_BPB: '1.5' } }],
        ['experiment-discard', { ...base, env: { VAL_BPB: '1.6' } }],
        ['experiment-command-failed', { ...base, env: { MODE: 'fail' } }],
        ['experiment-validation-failed', { ...base, command: ['python3', 'missing.py'] }],
      ];
      const ids: [string, string][] = [];
      for (const [name, input] of runs) {
        const { handle, experimentId } = await submitExperiment(stack.client, input);
        await handle.result();
        ids.push([name, experimentId]);
      }
      const { handle: canceled, experimentId: canceledId } = await submitExperiment(stack.client, {
        ...base,
        env: { MODE: 'slow' },
      });
      await waitFor(async () => (await canceled.query(experimentStateQuery)).status === 'running', 60_000);
      await canceled.cancel();
      expect((await canceled.result()).status).toBe('canceled');
      ids.push(['experiment-canceled', canceledId], ['tag', tagWorkflowId('replay')], ['pool', POOL_WORKFLOW_ID]);

      const histories = await Promise.all(
        ids.map(async ([name, workflowId]) => ({
          name,
          workflowId,
          history: await stack.client.workflow.getHandle(workflowId).fetchHistory(),
        })),
      );
      expect(await replay(histories, stack.dataConverter)).toEqual([]);

      if (process.env.EXPCTL_RECORD_HISTORIES === '1') {
        // Exported the way an operator would: `temporal workflow show --output json`, decrypted
        // through expctl's codec endpoint, so the fixtures replay without a key.
        const token = crypto.randomBytes(24).toString('base64url');
        const codec = await startCodecServer({ codec: await payloadCodec(), token, uiOrigins: [], port: 0 });
        for (const { name, workflowId } of histories) {
          const { stdout } = await execa(inject('temporalCli'), [
            'workflow',
            'show',
            '--address',
            stack.address,
            '--namespace',
            stack.namespace,
            '--workflow-id',
            workflowId,
            '--output',
            'json',
            '--codec-endpoint',
            codec.endpoint,
          ]);
          await fs.writeFile(path.join(HISTORIES, `${name}.json`), stdout);
        }
        await codec.close();
      }
    });
  });
});
