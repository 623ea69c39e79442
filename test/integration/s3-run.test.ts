import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import type { CheckpointDocument } from '../../src/domain/checkpoints.js';
import { openStore } from '../../src/store/open.js';
import { objectKey } from '../../src/store/store.js';
import { experimentStateQuery } from '../../src/workflows/definitions.js';
import { runCli } from '../helpers/cli.js';
import { makeRepo } from '../helpers/repo.js';
import { seaweedFsUnavailable, startSeaweedFs, type TestS3Server } from '../helpers/seaweedfs.js';
import { FIXTURES, startStack, type TestStack } from '../helpers/stack.js';

// One run end to end through the S3 store on a real SeaweedFS server: the orchestrator and the
// worker use the bucket, and what the run left there (checkpoint, log, artifact) is read back by
// the CLI with nothing but the bucket's variables.

const S3_UNAVAILABLE = await seaweedFsUnavailable();
if (S3_UNAVAILABLE) console.warn(`s3-run.test.ts: SKIPPED: ${S3_UNAVAILABLE}`);
const skipNote = S3_UNAVAILABLE ? ` [SKIPPED: ${S3_UNAVAILABLE}]` : '';
const PREFIX = 'fleet';
const ARTIFACT = 'weights trained through the S3 store\n';

let server: TestS3Server | undefined;
let stack: TestStack | undefined;
let scratch: string;

beforeAll(async () => {
  if (S3_UNAVAILABLE) return;
  const started = await startSeaweedFs();
  if ('skipped' in started) throw new Error(started.skipped);
  server = started;
  stack = await startStack({ name: 's3-run', gpuWorker: false, store: await openStore(server.env(PREFIX)) });
  await stack.addGpuWorker({ host: 's3-host', cpuSlots: 1 });
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-s3-run-'));
}, 180_000);
afterAll(async () => {
  await stack?.stop();
  await server?.stop();
  if (scratch) await fs.rm(scratch, { recursive: true, force: true });
}, 60_000);

/** The bucket's keys under the store's prefix, as the server lists them. */
async function bucketKeys(s3: TestS3Server, under: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.client.send(
      new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `${PREFIX}/${under}`, ContinuationToken: token }),
    );
    keys.push(...(page.Contents ?? []).map((entry) => entry.Key!));
    token = page.NextContinuationToken;
  } while (token);
  return keys;
}

describe.skipIf(S3_UNAVAILABLE !== null)('a run through the S3 store', () => {
  it(`checkpoints, ships its log and leaves an artifact in the bucket, fetched back by the CLI${skipNote}`, async () => {
    const s3 = server!;
    const running = stack!;
    const source = await makeRepo({}, path.join(FIXTURES, 'scripts', 'checkpoint_train.py'));
    const { experimentId, handle } = await submitExperiment(running.client, {
      tag: 's3-run',
      hypothesis: 'a run leaves its checkpoint, log and artifact in the bucket',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      timeBudgetSeconds: 120,
      env: {
        LEDGER: path.join(scratch, 'ledger.jsonl'),
        STEPS: '12',
        STEP_SECONDS: '0.25',
        CHECKPOINT_EVERY: '4',
        ARTIFACT,
        VAL_BPB: '1.3',
      },
    });
    expect(await handle.result()).toMatchObject({ status: 'completed', metric: 1.3, worker: 's3-host' });
    const training = (await handle.query(experimentStateQuery)).training!;
    expect(training.storeProblems ?? []).toEqual([]);

    // The documents, as the server itself lists them, under the store's prefix.
    const documents = await bucketKeys(s3, `documents/runs/${experimentId}/`);
    expect(documents).toEqual(
      expect.arrayContaining([
        `${PREFIX}/documents/runs/${experimentId}/attempts/1/checkpoint.json`,
        `${PREFIX}/documents/runs/${experimentId}/attempts/1/log.json`,
        `${PREFIX}/documents/runs/${experimentId}/attempts/1/artifacts.json`,
      ]),
    );
    // The checkpoint synced at exit holds the script's three checkpoints, each an object in the bucket.
    const checkpoint = JSON.parse(
      await (
        await s3.client.send(
          new GetObjectCommand({
            Bucket: s3.bucket,
            Key: `${PREFIX}/documents/runs/${experimentId}/attempts/1/checkpoint.json`,
          }),
        )
      ).Body!.transformToString(),
    ) as CheckpointDocument;
    expect(checkpoint.files.map((file) => file.path).sort()).toEqual(['step-12.ckpt', 'step-4.ckpt', 'step-8.ckpt']);
    const objects = await bucketKeys(s3, 'objects/');
    for (const file of checkpoint.files) expect(objects).toContain(`${PREFIX}/${objectKey(file.sha256)}`);

    const cliEnv = {
      TEMPORAL_ADDRESS: running.address,
      TEMPORAL_NAMESPACE: running.namespace,
      EXPCTL_CATALOG: running.catalogPath,
      ...s3.env(PREFIX),
    };
    // The artifact: listed with its S3 URI, fetched back with the same bytes.
    const listed = await runCli(cliEnv, ['artifacts', experimentId, '--json'], { cwd: scratch });
    expect(listed.exitCode, String(listed.stderr)).toBe(0);
    const [artifact] = (JSON.parse(String(listed.stdout)) as { artifacts: { path: string; uri: string }[] }).artifacts;
    expect(artifact).toMatchObject({
      path: 'model.txt',
      uri: expect.stringMatching(/^s3:\/\/[^/]+\/fleet\/objects\//),
    });
    const out = path.join(scratch, 'model.txt');
    const got = await runCli(cliEnv, ['artifacts', experimentId, '--get', 'model.txt', '--out', out], {
      cwd: scratch,
    });
    expect(got.exitCode, String(got.stderr)).toBe(0);
    expect(await fs.readFile(out, 'utf8')).toBe(ARTIFACT);

    // The shipped log reads back from the bucket.
    const logs = await runCli(cliEnv, ['logs', '--all', experimentId], { cwd: scratch });
    expect(logs.exitCode, String(logs.stderr)).toBe(0);
    expect(String(logs.stdout)).toContain('step 00012/00012');

    // `expctl store du` with the bucket's variables counts what the run left there.
    const du = await runCli(cliEnv, ['store', 'du', '--json'], { cwd: scratch });
    expect(du.exitCode, String(du.stderr)).toBe(0);
    const usage = JSON.parse(String(du.stdout)) as {
      store: string;
      by_kind: Record<string, { objects: number; bytes: number }>;
    };
    expect(usage.store).toBe(`s3://${s3.bucket}/${PREFIX}`);
    expect(usage.by_kind.checkpoints!.objects).toBe(3);
    expect(usage.by_kind.artifacts!.objects).toBeGreaterThanOrEqual(1);
    expect(usage.by_kind.logs!.objects).toBeGreaterThanOrEqual(1);
    // The whole patch, named by the run's patch document; nothing the run left is unreferenced.
    expect(usage.by_kind.patches!.objects).toBe(1);
    expect(usage.by_kind.unreferenced!.objects).toBe(0);
    console.log(`s3 run: store du ${JSON.stringify(usage.by_kind)}`);
  }, 240_000);
});
