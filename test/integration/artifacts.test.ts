import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { FilesystemStore } from '../../src/store/fs-store.js';
import { experimentStateQuery } from '../../src/workflows/definitions.js';
import { runCli } from '../helpers/cli.js';
import { makeRepo } from '../helpers/repo.js';
import { FIXTURES, startStack, type TestStack } from '../helpers/stack.js';

// A fleet store that cannot be reached: the run completes all the same, and says what the store lacks.
let stack: TestStack;
let blocker: string;

beforeAll(async () => {
  // A store under a plain file: every access to it fails, as a store that does not answer.
  blocker = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-unreachable-store-'));
  await fs.writeFile(path.join(blocker, 'not-a-dir'), '');
  const store = new FilesystemStore(path.join(blocker, 'not-a-dir', 'store'));
  stack = await startStack({ name: 'artifacts', gpuWorker: false, store });
  await stack.addGpuWorker({ host: 'storeless', cpuSlots: 1, artifactUploadMs: 3000 });
});
afterAll(async () => {
  await stack?.stop();
  await fs.rm(blocker, { recursive: true, force: true });
});

describe('an unreachable fleet store', () => {
  it('retries the uploads for a bounded time, then the run completes and its outcome names what is missing', async () => {
    const source = await makeRepo({}, path.join(FIXTURES, 'scripts', 'promote_train.py'));
    const { experimentId, handle } = await submitExperiment(stack.client, {
      tag: 'storeless',
      hypothesis: 'a run outlives its store',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      env: { VAL_BPB: '1.0' },
    });
    expect(await handle.result()).toMatchObject({ status: 'completed', decision: 'keep' });

    const training = (await handle.query(experimentStateQuery)).training!;
    // Each part that could not reach the store says so: the fence claim, the artifacts, the log.
    expect(training.storeProblems).toEqual([
      expect.stringMatching(/^store unreachable at the attempt's start: .*ENOTDIR/),
      expect.stringMatching(/^store unreachable: 1 of 1 artifact uploads missing \(.*ENOTDIR/),
      expect.stringMatching(/^store unreachable: the log's last \d+ bytes were not shipped .*ENOTDIR/),
    ]);
    expect(training.artifacts).toEqual([{ path: 'model.txt', bytes: expect.any(Number), sha256: expect.any(String) }]);
    // The host's log says so too (after the tail the record keeps: the script's block stays its last lines).
    const log = await fs.readFile(path.join(stack.workDir, 'storeless', 'runs', experimentId, 'train.log'), 'utf8');
    expect(log).toMatch(/\nexpctl: store unreachable: 1 of 1 artifact uploads missing \(/);
    expect(training.metrics).toMatchObject({ val_bpb: 1 });
    expect(Object.keys(training.metrics!)).not.toContain('expctl');
    const record = (await stack.catalog.get(experimentId))!;
    expect(record.artifacts).toEqual([expect.objectContaining({ path: 'model.txt', uri: null })]);

    // Listed from the record; not fetchable, and said why.
    const cliEnv = {
      TEMPORAL_ADDRESS: stack.address,
      TEMPORAL_NAMESPACE: stack.namespace,
      EXPCTL_CATALOG: stack.catalogPath,
    };
    const listed = await runCli(cliEnv, ['artifacts', experimentId, '--json']);
    expect(JSON.parse(listed.stdout as string)).toMatchObject({ artifacts: [{ path: 'model.txt', uri: null }] });
    const out = path.join(blocker, 'model.txt');
    const got = await runCli(cliEnv, ['artifacts', experimentId, '--get', 'model.txt', '--out', out, '--json']);
    expect(got.exitCode).toBe(4);
    expect(JSON.parse(got.stdout as string)).toEqual({
      error: 'unavailable',
      message: `model.txt of ${experimentId} is not in the fleet store: recorded before the store, or its upload failed (see the record's storeProblems)`,
    });
  });
});
