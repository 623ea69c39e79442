import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { WithStartWorkflowOperation, WorkflowUpdateFailedError } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addShard, configureDataset, fileSha256, shardRefusal } from '../../src/client/datasets.js';
import { PERMISSION_DENIED } from '../../src/domain/authorization.js';
import { signAs } from '../../src/client/sign.js';
import { MAX_SHARD_BYTES, SHARD_UPLOAD_CHUNK_BYTES } from '../../src/domain/bounds.js';
import {
  datasetVersionWorkflowId,
  datasetWorkflowId,
  newDatasetState,
  shardObjectPath,
  type ShardOffer,
} from '../../src/domain/datasets.js';
import { WORKFLOWS_PATH } from '../../src/roots/orchestrator.js';
import { issuerKeyPath, type Credential } from '../../src/security/credentials.js';
import { CONTROL_TASK_QUEUE } from '../../src/shared/constants.js';
import { datasetWorkflow } from '../../src/workflows/dataset.js';
import { addShardUpdate, datasetStateQuery, versionStateQuery } from '../../src/workflows/definitions.js';
import { outputOf, runCli } from '../helpers/cli.js';
import { issueTestCredential, startStack, testTrust, type TestStack } from '../helpers/stack.js';
import { eventually, waitFor } from '../helpers/wait.js';

// Datasets on a real server: shards delivered out of order and more than once, late shards,
// every gate's failure code, the lateness allowance, alerts and their command.
let stack: TestStack;
let dir: string;
let dataDir: string;
let alertDir: string;
const catalog = () => stack.catalog;
const cliEnv = (credentialFile = process.env.EXPCTL_CREDENTIAL_FILE!) => ({
  TEMPORAL_ADDRESS: stack.address,
  TEMPORAL_NAMESPACE: stack.namespace,
  EXPCTL_CATALOG: stack.catalogPath,
  EXPCTL_CREDENTIAL_FILE: credentialFile,
});

/** A JSONL shard file of `rows` records with the given fields (values by type). */
async function jsonl(
  name: string,
  rows: number,
  fields: Record<string, 'number' | 'string'> = { id: 'number', text: 'string' },
  seed = 0,
) {
  const file = path.join(dir, name);
  const lines = Array.from({ length: rows }, (_, i) =>
    JSON.stringify(
      Object.fromEntries(Object.entries(fields).map(([f, t]) => [f, t === 'number' ? seed + i : `${f}-${seed + i}`])),
    ),
  );
  await fs.writeFile(file, `${lines.join('\n')}\n`);
  return file;
}
const offer = async (dataset: string, file: string, shardIndex: number, shardCount: number, extra: object = {}) =>
  addShard(stack.client, { dataset, file, shardIndex, shardCount, declaredSha256: await fileSha256(file), ...extra });
/** The IDs of a dataset's upload workflows, once the server lists `count` of them. */
const uploadWorkflowIds = (dataset: string, count: number) =>
  eventually(async () => {
    const ids: string[] = [];
    for await (const w of stack.client.workflow.list({ query: `WorkflowType = 'shardUploadWorkflow'` }))
      if (w.workflowId.startsWith(`expctl-upload-${dataset}-`)) ids.push(w.workflowId);
    return ids.length === count ? ids : undefined;
  }, 30_000);
const refusalOf = (error: unknown) => shardRefusal(error) ?? { code: (error as Error).message, message: '' };
const decided = (dataset: string, version: number) =>
  eventually(async () => {
    const row = (await catalog().datasets.versions(dataset)).find((v) => v.version === version);
    return row && (row.status === 'passed' || row.status === 'failed') ? row : undefined;
  }, 60_000);
const codes = async (dataset: string, version: number) =>
  (await catalog().datasets.gateResults(dataset, version)).filter((g) => !g.passed).map((g) => g.code);

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-datasets-'));
  dataDir = path.join(dir, 'store');
  alertDir = path.join(dir, 'alerts');
  await fs.mkdir(alertDir);
  process.env.EXPCTL_DATA_DIR = dataDir;
  // The alert command writes what it was given, then fails: its exit is recorded, the gate is not affected.
  const script =
    "const fs=require('fs');let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{" +
    "fs.writeFileSync(require('path').join(process.argv[1],process.env.EXPCTL_ALERT_ID+'.json'),JSON.stringify({stdin:JSON.parse(s),kind:process.env.EXPCTL_ALERT_KIND,code:process.env.EXPCTL_ALERT_CODE,subject:process.env.EXPCTL_ALERT_SUBJECT}));process.exit(3)})";
  process.env.EXPCTL_ALERT_COMMAND = JSON.stringify([process.execPath, '-e', script, alertDir]);
  stack = await startStack({ name: 'datasets', gpuWorker: false });
});
afterAll(async () => {
  await stack?.stop();
  delete process.env.EXPCTL_ALERT_COMMAND;
  delete process.env.EXPCTL_DATA_DIR;
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

describe('versions', () => {
  it('shards out of order and duplicated seal into one correct version; a conflicting shard is refused', async () => {
    const files = [
      await jsonl('ooo-0.jsonl', 3, undefined, 0),
      await jsonl('ooo-1.jsonl', 4, undefined, 10),
      await jsonl('ooo-2.jsonl', 5, undefined, 20),
    ];
    // The first shard through the CLI creates the dataset (update-with-start).
    const cli = await runCli(cliEnv(), ['data', 'add', 'ooo', files[2]!, '--shard', '2/3', '--records', '5', '--json']);
    expect(cli.exitCode, cli.stderr as string).toBe(0);
    expect(JSON.parse(cli.stdout as string).shards[0]).toMatchObject({
      outcome: 'accepted',
      version: 1,
      shard_index: 2,
    });

    expect(await offer('ooo', files[0]!, 0, 3)).toMatchObject({ outcome: 'accepted', version: 1, sealed: false });
    expect(await offer('ooo', files[2]!, 2, 3)).toMatchObject({ outcome: 'duplicate', version: 1 });
    expect(await offer('ooo', files[0]!, 0, 3, { version: 1 })).toMatchObject({ outcome: 'duplicate', version: 1 });
    const other = await jsonl('ooo-0-other.jsonl', 3, undefined, 99);
    const conflict = await offer('ooo', other, 0, 3).catch((e: unknown) => e);
    expect(conflict).toBeInstanceOf(WorkflowUpdateFailedError);
    expect(refusalOf(conflict).code).toBe('shard.conflict');
    const missing = await addShard(stack.client, {
      dataset: 'ooo',
      file: path.join(dir, 'never-written.jsonl'),
      shardIndex: 1,
      shardCount: 3,
      declaredSha256: 'a'.repeat(64),
    }).catch((e: unknown) => e);
    // Read on the producer's side: a file that is not there never reaches the orchestrator.
    expect(missing).toMatchObject({ code: 'ENOENT' });
    expect(await offer('ooo', files[1]!, 1, 3)).toMatchObject({ outcome: 'accepted', version: 1, sealed: true });

    const row = await decided('ooo', 1);
    expect(row).toMatchObject({
      status: 'passed',
      sealReason: 'complete',
      expectedShards: 3,
      arrivedShards: 3,
      records: 12,
    });
    const shards = await catalog().datasets.shards('ooo', 1);
    expect(shards.map((s) => [s.index, s.deliveries, s.records])).toEqual([
      [0, 2, 3],
      [1, 1, 4],
      [2, 2, 5],
    ]);
    for (const [i, file] of files.entries()) {
      expect(shards[i]!.sha256).toBe(await fileSha256(file));
      const object = shardObjectPath(dataDir, shards[i]!.sha256);
      expect(await fs.readFile(object, 'utf8')).toBe(await fs.readFile(file, 'utf8'));
      expect((await fs.stat(object)).mode & 0o777).toBe(0o600);
    }
    const latest = await catalog().latestPassedDatasetVersion('ooo');
    expect(latest).toMatchObject({
      dataset: 'ooo',
      version: 1,
      status: 'passed',
      records: 12,
      schema: { id: 'number', text: 'string' },
    });
    expect(latest!.manifestSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(latest!.shards.map((s) => s.fileName)).toEqual(['ooo-0.jsonl', 'ooo-1.jsonl', 'ooo-2.jsonl']);
    expect((await catalog().datasets.alerts()).filter((a) => a.kind === 'shard_conflict')).toMatchObject([
      { subject: 'ooo@1', code: 'shard.conflict' },
    ]);
    // Visible to operators: the version workflow's search attributes, and the dataset's query.
    const versionHandle = stack.client.workflow.getHandle(datasetVersionWorkflowId('ooo', 1));
    expect(await versionHandle.result()).toMatchObject({ status: 'passed', sealReason: 'complete' });
    const described = await versionHandle.describe();
    expect(described.searchAttributes).toMatchObject({
      ExpctlDataset: ['ooo'],
      ExpctlDatasetVersion: ['1'],
      ExpctlGate: ['passed'],
    });
    const state = await stack.client.workflow.getHandle(datasetWorkflowId('ooo')).query(datasetStateQuery);
    expect(state.versions.find((v) => v.version === 1)).toMatchObject({ status: 'passed', sealReason: 'complete' });
  });

  it('a shard after the seal is flagged late, leaves the sealed version unchanged and goes to the next version', async () => {
    const before = (await catalog().datasetVersion('ooo', 1))!;
    const late = await jsonl('ooo-1-late.jsonl', 4, undefined, 50);
    const result = await offer('ooo', late, 1, 3, { version: 1 });
    expect(result).toMatchObject({ outcome: 'late_next', version: 2, lateFor: 1, shardIndex: 1 });
    expect(await catalog().datasetVersion('ooo', 1)).toEqual(before);
    expect(await catalog().datasets.lateShards('ooo', 1)).toMatchObject([
      { shardIndex: 1, action: 'next', movedToVersion: 2 },
    ]);
    expect((await catalog().datasets.shards('ooo', 2)).map((s) => s.fileName)).toEqual(['ooo-1-late.jsonl']);
    expect((await catalog().datasets.alerts()).filter((a) => a.kind === 'late_shard')).toMatchObject([
      { subject: 'ooo@1', code: 'late.after_seal' },
    ]);
    const version2 = await stack.client.workflow.getHandle(datasetVersionWorkflowId('ooo', 2)).query(versionStateQuery);
    expect(version2).toMatchObject({ status: 'open', received: [1], expectedShards: 3 });
    expect((await catalog().latestPassedDatasetVersion('ooo'))!.version).toBe(1);
  });

  it('the lateness allowance seals a partial version, which fails completeness; with policy refuse a late shard is refused', async () => {
    await configureDataset(stack.client, 'partial', { latePolicy: 'refuse' });
    const first = await jsonl('partial-0.jsonl', 3);
    expect(await offer('partial', first, 0, 3, { latenessMs: 1500 })).toMatchObject({
      outcome: 'accepted',
      version: 1,
    });
    const row = await decided('partial', 1);
    expect(row).toMatchObject({ status: 'failed', sealReason: 'lateness', arrivedShards: 1 });
    expect(await codes('partial', 1)).toEqual(['completeness.missing_shards']);
    expect(
      (await catalog().datasets.gateResults('partial', 1)).find((g) => g.gate === 'completeness')!.message,
    ).toMatch(/2 of 3 shards missing at the seal \(shards 1, 2\)/);
    expect(await catalog().latestPassedDatasetVersion('partial')).toBeNull();

    const late = await jsonl('partial-1.jsonl', 3, undefined, 7);
    const refused = await offer('partial', late, 1, 3, { version: 1 }).catch((e: unknown) => e);
    expect(refusalOf(refused).code).toBe('late.refused');
    expect(await catalog().datasets.lateShards('partial', 1)).toMatchObject([
      { shardIndex: 1, action: 'refused', movedToVersion: null },
    ]);
    expect(await catalog().datasets.shards('partial', 1)).toHaveLength(1);
  });
  it('a Parquet shard: rows and schema from its footer', async () => {
    const fixture = new URL('../fixtures/datasets/tiny-0-of-1.parquet', import.meta.url).pathname;
    expect(await offer('pq', fixture, 0, 1, { declaredRecords: 5 })).toMatchObject({
      outcome: 'accepted',
      records: 5,
      sealed: true,
    });
    expect(await decided('pq', 1)).toMatchObject({ status: 'passed', records: 5 });
    expect(await catalog().latestPassedDatasetVersion('pq')).toMatchObject({ schema: { text: 'string', id: 'int32' } });
  });
});

describe('data watch', () => {
  it('offers shard files as they appear, skipping partial files and names outside the convention', async () => {
    const drop = path.join(dir, 'drop');
    await fs.mkdir(drop);
    await fs.copyFile(await jsonl('w0.jsonl', 2), path.join(drop, 'watched-0-of-2.jsonl'));
    await fs.copyFile(await jsonl('w1.jsonl', 2, undefined, 5), path.join(drop, 'watched-1-of-2.jsonl.part'));
    await fs.writeFile(path.join(drop, 'notes.txt'), 'not a shard');
    const once = await runCli(cliEnv(), ['data', 'watch', drop, '--once', '--json']);
    expect(once.exitCode, once.stderr as string).toBe(0);
    const lines = (once.stdout as string)
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines).toEqual([
      { file: path.join(drop, 'notes.txt'), skipped: 'name is not NAME-SHARD-of-COUNT.EXT' },
      expect.objectContaining({ dataset: 'watched', outcome: 'accepted', version: 1, shard_index: 0, shard_count: 2 }),
    ]);

    // Running: the producer finishes its partial file with a rename; the watcher sees it and the version seals.
    const watcher = runCli(cliEnv(), ['data', 'watch', drop, '--rescan', '1s', '--json']);
    try {
      await fs.rename(path.join(drop, 'watched-1-of-2.jsonl.part'), path.join(drop, 'watched-1-of-2.jsonl'));
      expect(await decided('watched', 1)).toMatchObject({ status: 'passed', arrivedShards: 2, records: 4 });
      // Shard 0 was offered again by this watcher's first scan: the same content counts once.
      expect((await catalog().datasets.shards('watched', 1)).map((s) => s.deliveries)).toEqual([2, 1]);
    } finally {
      watcher.kill('SIGTERM');
      await watcher;
    }
  });
});

describe('gates', () => {
  it('integrity, declared records and inconsistent shards each fail with their code and leave the version unusable', async () => {
    const file = await jsonl('integ.jsonl', 2);
    await addShard(stack.client, {
      dataset: 'integ',
      file,
      shardIndex: 0,
      shardCount: 1,
      declaredSha256: 'f'.repeat(64),
    });
    expect(await decided('integ', 1)).toMatchObject({ status: 'failed' });
    expect(await codes('integ', 1)).toEqual(['integrity.hash_mismatch']);

    await offer('counts', await jsonl('counts.jsonl', 2), 0, 1, { declaredRecords: 3 });
    expect(await decided('counts', 1)).toMatchObject({ status: 'failed' });
    expect(await codes('counts', 1)).toEqual(['records.declared_mismatch']);

    await offer('mixed', await jsonl('mixed-0.jsonl', 2), 0, 2);
    await offer('mixed', await jsonl('mixed-1.jsonl', 2, { id: 'number', body: 'string' }), 1, 2);
    expect(await decided('mixed', 1)).toMatchObject({ status: 'failed' });
    expect(await codes('mixed', 1)).toEqual(['schema.inconsistent_shards']);

    for (const dataset of ['integ', 'counts', 'mixed'])
      expect(await catalog().latestPassedDatasetVersion(dataset)).toBeNull();
  });

  it('against the previous passed version: a removed column, a changed type, records out of tolerance; history counts earlier versions', async () => {
    await offer('evolve', await jsonl('evolve-v1.jsonl', 10), 0, 1);
    expect(await decided('evolve', 1)).toMatchObject({ status: 'passed' });
    await offer('evolve', await jsonl('evolve-v2.jsonl', 10, { id: 'number' }), 0, 1);
    expect(await decided('evolve', 2)).toMatchObject({ status: 'failed' });
    expect(await codes('evolve', 2)).toEqual(['schema.column_removed']);
    await offer('evolve', await jsonl('evolve-v3.jsonl', 10, { id: 'string', text: 'string' }), 0, 1);
    expect(await decided('evolve', 3)).toMatchObject({ status: 'failed' });
    expect(await codes('evolve', 3)).toEqual(['schema.type_changed']);
    await offer('evolve', await jsonl('evolve-v4.jsonl', 16, { id: 'number', text: 'string', lang: 'string' }), 0, 1);
    expect(await decided('evolve', 4)).toMatchObject({ status: 'failed' });
    expect(await codes('evolve', 4)).toEqual(['records.out_of_tolerance']);
    await offer('evolve', await jsonl('evolve-v5.jsonl', 12, { id: 'number', text: 'string', lang: 'string' }), 0, 1);
    expect(await decided('evolve', 5)).toMatchObject({ status: 'passed' });

    expect(await catalog().latestPassedDatasetVersion('evolve')).toMatchObject({ version: 5, records: 12 });
    const schema = (await catalog().datasets.gateResults('evolve', 5)).find((g) => g.gate === 'schema')!;
    // Schema passed for versions 1 and 4 (version 4 failed on its record count only).
    expect(schema.history).toEqual({ versions: 4, passed: 2, passRate: 0.5 });
    expect(schema.message).toMatch(/compatible with version 1 \(new columns lang\)/);

    const gates = await runCli(cliEnv(), ['gates', '--dataset', 'evolve', '--json']);
    const rows = outputOf('gates', gates) as unknown as {
      gate: string;
      checked: number;
      passed: number;
      failures: Record<string, number>;
    }[];
    expect(rows.find((r) => r.gate === 'schema')).toMatchObject({
      checked: 5,
      passed: 3,
      failures: { 'schema.column_removed': 1, 'schema.type_changed': 1 },
    });
  });
});

describe('alerts and authorization', () => {
  it('every alert is recorded and its command ran with the alert on stdin and in the environment; its failure is recorded', async () => {
    const alerts = await catalog().datasets.alerts();
    expect(alerts.length).toBeGreaterThanOrEqual(8);
    for (const alert of alerts) {
      expect(alert.commandExit).toBe(3);
      const seen = JSON.parse(await fs.readFile(path.join(alertDir, `${alert.id}.json`), 'utf8'));
      expect(seen).toMatchObject({
        kind: alert.kind,
        subject: alert.subject,
        code: alert.code ?? '',
        stdin: { id: alert.id, message: alert.message },
      });
    }
    const cli = await runCli(cliEnv(), ['alerts', '--since', '1d', '--json']);
    expect((outputOf('alerts', cli) as unknown as { kind: string }[]).map((a) => a.kind)).toContain('gate_failed');
    const show = await runCli(cliEnv(), ['show', datasetVersionWorkflowId('ooo', 1), '--json']);
    expect(outputOf('data-show', show)).toMatchObject({
      status: 'passed',
      gates: [{ gate: 'integrity', passed: true }, { gate: 'completeness' }, { gate: 'schema' }, { gate: 'records' }],
      late_shards: [{ shard_index: 1, action: 'next' }],
    });
    const versions = await runCli(cliEnv(), ['data', 'versions', 'ooo', '--json']);
    expect(
      (outputOf('data-versions', versions) as unknown as { version: number; status: string }[]).map((v) => [
        v.version,
        v.status,
      ]),
    ).toEqual([
      [1, 'passed'],
      [2, 'open'],
    ]);
  });

  it('a producer may add data but not configure a dataset; a submitter may not add data', async () => {
    const producer = issueTestCredential('loader', 'producer');
    const submitter = issueTestCredential('agent', 'submitter');
    const file = await jsonl('authz.jsonl', 2);
    const base = { dataset: 'authz', file, shardIndex: 0, shardCount: 1, declaredSha256: await fileSha256(file) };
    const denied = await addShard(stack.client, base, submitter.credential).catch((e: unknown) => e);
    expect((denied as WorkflowUpdateFailedError).cause).toMatchObject({ type: PERMISSION_DENIED });
    expect((denied as Error & { cause: Error }).cause.message).toMatch(
      /agent \(submitter\) may not add data: needs the producer or operator or admin role/,
    );
    expect(await addShard(stack.client, base, producer.credential)).toMatchObject({ outcome: 'accepted', version: 1 });
    const policy = await runCli(cliEnv(producer.file), ['data', 'policy', 'authz', '--lateness', '5m', '--json']);
    expect(policy.exitCode).toBe(6);
    // The submitter was refused at its upload, before any byte was spooled or any offer made.
    expect((await catalog().auditTrail(datasetWorkflowId('authz'))).map((a) => [a.action, a.actor, a.allowed])).toEqual(
      [
        ['add_data', 'loader', true],
        ['configure_dataset', 'loader', false],
      ],
    );
    const uploads = await uploadWorkflowIds('authz', 2);
    const trails = await Promise.all(uploads.map((id) => catalog().auditTrail(id)));
    expect(trails.map((t) => t.map((a) => [a.action, a.actor, a.allowed])).sort()).toEqual([
      [['add_data', 'agent', false]],
      [['add_data', 'loader', true]],
    ]);
  });
});

describe('no confused deputy', () => {
  /** Every file under the store (objects, spool), with its bytes. */
  async function storeFiles(): Promise<{ file: string; bytes: Buffer }[]> {
    const found: { file: string; bytes: Buffer }[] = [];
    const walk = async (at: string): Promise<void> => {
      for (const entry of await fs.readdir(at, { withFileTypes: true }).catch(() => [])) {
        const file = path.join(at, entry.name);
        if (entry.isDirectory()) await walk(file);
        else found.push({ file, bytes: await fs.readFile(file) });
      }
    };
    await walk(dataDir);
    return found;
  }
  /** A request signed with `credential`, sent as it is (no CLI, no client helper in between). */
  const rawOffer = (offer: object, credential: Credential) =>
    stack.client.workflow.executeUpdateWithStart(addShardUpdate, {
      args: [
        offer as unknown as ShardOffer,
        signAs('add_data', datasetWorkflowId((offer as ShardOffer).dataset), offer, credential),
      ],
      startWorkflowOperation: new WithStartWorkflowOperation(datasetWorkflow, {
        workflowId: datasetWorkflowId((offer as ShardOffer).dataset),
        taskQueue: CONTROL_TASK_QUEUE,
        args: [(offer as ShardOffer).dataset, newDatasetState((offer as ShardOffer).dataset)],
        workflowIdConflictPolicy: 'USE_EXISTING',
      }),
    });

  it("a producer's signed request naming issuer.key or /etc/shadow is refused by the rule; no byte of either reaches the store", async () => {
    const { credential } = issueTestCredential('thief', 'producer');
    const issuerKey = issuerKeyPath(testTrust().home);
    // /etc/shadow is readable when the orchestrator runs as root (as the old ingest would have read it).
    const shadow = await fs.readFile('/etc/shadow').catch(() => null);
    const secrets = [await fs.readFile(issuerKey), ...(shadow ? [shadow] : [])];
    for (const target of [issuerKey, '/etc/shadow']) {
      // What the CLI sent before: the path, and a declared hash.
      const named = {
        dataset: 'chainleak',
        shardIndex: 0,
        shardCount: 1,
        path: target,
        fileName: path.basename(target),
      };
      const refused = await rawOffer({ ...named, declaredSha256: 'a'.repeat(64) }, credential).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(WorkflowUpdateFailedError);
      expect(shardRefusal(refused)).toEqual({
        code: 'shard.names_path',
        message: expect.stringContaining('the orchestrator never opens a path a client names'),
      });
      expect(shardRefusal(refused)!.message).toContain(target);
    }
    // The upload id names no path; an id with no bytes behind it is refused even with the key's sha256.
    const keySha = crypto.createHash('sha256').update(secrets[0]!).digest('hex');
    const upload = (id: string) => ({
      dataset: 'chainleak',
      shardIndex: 0,
      shardCount: 1,
      fileName: 'issuer.key',
      declaredSha256: keySha,
      upload: { id, sha256: keySha, bytes: secrets[0]!.length },
    });
    const traversal = await rawOffer(upload('../../keys/issuer.key'), credential).catch((e: unknown) => e);
    expect(shardRefusal(traversal)).toMatchObject({
      code: 'shard.upload_invalid',
      message: expect.stringMatching(/names no path/),
    });
    const unsent = await rawOffer(upload('0'.repeat(32)), credential).catch((e: unknown) => e);
    expect(shardRefusal(unsent)).toMatchObject({
      code: 'shard.upload_mismatch',
      message: expect.stringMatching(/holds no bytes/),
    });

    // The walk below sees the store: at least this producer's honest shard is in it.
    const honest = await jsonl('honest.jsonl', 2);
    await addShard(
      stack.client,
      { dataset: 'honest', file: honest, shardIndex: 0, shardCount: 1, declaredSha256: await fileSha256(honest) },
      credential,
    );
    const files = await storeFiles();
    expect(files.map((f) => f.file)).toContain(shardObjectPath(dataDir, await fileSha256(honest)));
    for (const { file, bytes } of files)
      for (const secret of secrets) expect(bytes.includes(secret), `${file} holds a secret's bytes`).toBe(false);
    await expect(fs.stat(shardObjectPath(dataDir, keySha))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await catalog().datasets.versions('chainleak')).toEqual([]);
    const state = await stack.client.workflow.getHandle(datasetWorkflowId('chainleak')).query(datasetStateQuery);
    expect(state).toMatchObject({ deliveries: 0, versions: [] });
    // Refused by the update's validator: nothing in the dataset's history, only the one verified offer in the audit.
    expect((await catalog().auditTrail(datasetWorkflowId('chainleak'))).map((a) => [a.actor, a.allowed])).toEqual([
      ['thief', true],
    ]);
  });

  it('a shard over MAX_SHARD_BYTES is refused with exit 2 before anything is recorded; a multi-chunk shard arrives whole', async () => {
    const big = path.join(dir, 'big.jsonl');
    await fs.writeFile(big, '');
    await fs.truncate(big, MAX_SHARD_BYTES + 1);
    const refused = await runCli(cliEnv(), ['data', 'add', 'toolarge', big]);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr as string).toMatch(/at most 32\.0 MiB \(MAX_SHARD_BYTES\): split it into more shards/);
    expect(await catalog().datasets.versions('toolarge')).toEqual([]);
    await expect(stack.client.workflow.getHandle(datasetWorkflowId('toolarge')).describe()).rejects.toThrow();

    // Several chunks: the stored object is the file, byte for byte; the spool is left empty.
    const rows = Array.from({ length: 40_000 }, (_, i) =>
      JSON.stringify({ id: i, text: `row-${i}-${'x'.repeat(40)}` }),
    );
    const chunky = path.join(dir, 'chunky.jsonl');
    await fs.writeFile(chunky, `${rows.join('\n')}\n`);
    expect((await fs.stat(chunky)).size).toBeGreaterThan(2 * SHARD_UPLOAD_CHUNK_BYTES);
    // As a producer runs it: the CLI reads the file as this user, with the producer's credential.
    const producer = issueTestCredential('bulk-loader', 'producer');
    const cli = await runCli(cliEnv(producer.file), ['data', 'add', 'chunky', chunky, '--json']);
    expect(cli.exitCode, cli.stderr as string).toBe(0);
    const sha = await fileSha256(chunky);
    expect(JSON.parse(cli.stdout as string).shards[0]).toMatchObject({
      outcome: 'accepted',
      sha256: sha,
      records: 40_000,
    });
    expect((await fs.readFile(shardObjectPath(dataDir, sha))).equals(await fs.readFile(chunky))).toBe(true);
    expect(await decided('chunky', 1)).toMatchObject({ status: 'passed', records: 40_000 });
    // Uploaded, then refused before the store took it: ending the upload removes its spool file.
    const misplaced = await offer('chunky', chunky, 5, 3).catch((e: unknown) => e);
    expect(misplaced).toBeInstanceOf(WorkflowUpdateFailedError);
    expect((misplaced as WorkflowUpdateFailedError).cause?.message).toMatch(
      /shard index must be a whole number from 0 to 2/,
    );
    await eventually(
      async () => ((await fs.readdir(path.join(dataDir, 'uploads'))).length === 0 ? true : undefined),
      30_000,
    );
  });
});

describe('determinism', () => {
  it("the dataset and version workflows' histories replay against today's code", async () => {
    const ids = [
      datasetWorkflowId('ooo'),
      datasetWorkflowId('partial'),
      datasetWorkflowId('evolve'),
      datasetVersionWorkflowId('ooo', 1),
      datasetVersionWorkflowId('partial', 1),
      datasetVersionWorkflowId('evolve', 2),
      ...(await uploadWorkflowIds('chunky', 2)),
    ];
    const histories = await Promise.all(
      ids.map(async (workflowId) => ({
        workflowId,
        history: await stack.client.workflow.getHandle(workflowId).fetchHistory(),
      })),
    );
    const failures: string[] = [];
    for await (const result of Worker.runReplayHistories(
      { workflowsPath: WORKFLOWS_PATH, replayName: 'expctl-dataset-replay', dataConverter: stack.dataConverter },
      histories,
    ))
      if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
    expect(failures).toEqual([]);
  });
});
