import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { experimentStateQuery } from '../../src/workflows/definitions.js';
import type { ExperimentSnapshot } from '../../src/workflows/experiment-state.js';
import { runCli } from '../helpers/cli.js';
import { makeRepo } from '../helpers/repo.js';
import { FIXTURES, startStack, type TestStack } from '../helpers/stack.js';

/**
 * autoresearch's reference hardware is a node of H100s. Default `expctl run` requests (no
 * --gpu-class) must place there, and an agent firing ten of them with --detach gets ten results,
 * never more than four at a time. The repository is a uv project: the environment is set up once.
 */
let stack: TestStack;
let repo: string;
const LOCK = '# uv.lock\nversion = 1\n';
const PYPROJECT = '[project]\nname = "autoresearch"\nversion = "0.1.0"\n';

beforeAll(async () => {
  stack = await startStack({ name: 'h100', host: 'h100node', fleet: 'four-h100.csv' });
  ({ repo } = await makeRepo(
    { 'uv.lock': LOCK, 'pyproject.toml': PYPROJECT },
    path.join(FIXTURES, 'scripts', 'autoresearch_train.py'),
  ));
});
afterAll(async () => stack?.stop());

describe('a fleet of four H100s', () => {
  it(
    'runs 10 default `expctl run --detach` requests to completion, at most 4 at a time',
    { timeout: 400_000 },
    async () => {
      const env = {
        TEMPORAL_ADDRESS: stack.address,
        TEMPORAL_NAMESPACE: stack.namespace,
        EXPCTL_CATALOG: stack.catalogPath,
      };
      // The default command (uv run train.py), class (any) and kill limit; only the budget is scaled down.
      const submits = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          runCli(
            { ...env, PATH: process.env.PATH } as never,
            [
              'run',
              '--tag',
              'h100',
              '--hypothesis',
              `idea ${i}`,
              '--category',
              'hyperparams',
              '--time-budget',
              '6',
              '--env',
              `VAL_BPB=${(1 - i / 100).toFixed(6)}`,
              '--env',
              'STEP_SECONDS=0.05',
              '--detach',
              '--json',
            ],
            { cwd: repo },
          ),
        ),
      );
      for (const submit of submits) expect(submit.exitCode, String(submit.stderr)).toBe(0);
      const ids = submits.map(
        (submit) => (JSON.parse(String(submit.stdout)) as { experiment_id: string }).experiment_id,
      );
      expect(new Set(ids).size).toBe(10);

      const results = await Promise.all(ids.map((id) => runCli(env, ['wait', id, '--json'])));
      const parsed = results.map(
        (r) => JSON.parse(String(r.stdout)) as { status: string; gpu: string; decision: string },
      );
      expect(parsed.map((r) => r.status)).toEqual(Array(10).fill('completed'));
      expect(results.map((r) => r.exitCode)).toEqual(Array(10).fill(0));
      for (const r of parsed) expect(r.gpu).toMatch(/^h100node\/gpu[0-3]$/);

      const states: ExperimentSnapshot[] = await Promise.all(
        ids.map((id) => stack.client.workflow.getHandle(id).query(experimentStateQuery)),
      );
      expect(
        states.every(
          (s) =>
            s.placement?.policy === 'scarce class h100 used for any: no other class in the fleet can serve the request',
        ),
      ).toBe(true);
      // Concurrency from the records: never more than the four GPUs.
      const events = states
        .flatMap(
          (s) =>
            [
              [Date.parse(s.training!.startedAt), 1],
              [Date.parse(s.training!.endedAt), -1],
            ] as const,
        )
        .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      let running = 0;
      let peak = 0;
      for (const [, delta] of events) peak = Math.max(peak, (running += delta));
      expect(peak).toBeLessThanOrEqual(4);
      expect(peak).toBeGreaterThanOrEqual(2);
      // One environment setup for ten runs of one lockfile.
      const cached = states.filter((s) => s.training!.timings.setupCached === true).length;
      expect(cached).toBeGreaterThanOrEqual(9 - 3); // the first wave of up to 4 may wait on the one setup
      console.log(`10 default runs on 4 H100s: peak concurrency ${peak}, ${cached} of 10 reused the environment`);
    },
  );
});
