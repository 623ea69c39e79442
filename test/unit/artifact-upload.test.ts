import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ARTIFACTS_DOCUMENT,
  uploadArtifacts,
  writeArtifactManifest,
  type ArtifactsDocument,
} from '../../src/gpu-worker/artifacts.js';
import { FilesystemStore } from '../../src/store/fs-store.js';
import { attemptDocument, attemptWriter, claimFence } from '../../src/store/fence.js';

let dir: string;
let artifacts: string;
const origin = { experimentId: 'exp-upload', commit: 'c0ffee', tag: 't', configPath: null };
const token = { experimentId: 'exp-upload', attempt: 1, leaseId: 'lease-1' };

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-artifact-upload-'));
  artifacts = path.join(dir, 'artifacts');
  await fs.mkdir(path.join(artifacts, 'sub'), { recursive: true });
  await fs.writeFile(path.join(artifacts, 'model.pt'), 'weights\n');
  // The same bytes twice: one object in the store.
  await fs.writeFile(path.join(artifacts, 'sub', 'copy.pt'), 'weights\n');
  await fs.writeFile(path.join(artifacts, 'metrics.json'), '{"val_bpb": 1}\n');
});
afterEach(() => fs.rm(dir, { recursive: true, force: true }));

describe('uploadArtifacts', () => {
  it('uploads each file once by content, gives each its URI and writes the attempt document', async () => {
    const store = new FilesystemStore(path.join(dir, 'store'));
    const listed = await writeArtifactManifest(artifacts, origin);
    const result = await uploadArtifacts({
      dir: artifacts,
      artifacts: listed,
      store,
      writer: attemptWriter(store, token),
    });

    expect(result.problems).toEqual([]);
    expect(result.artifacts.map((a) => a.path)).toEqual(['metrics.json', 'model.pt', 'sub/copy.pt']);
    for (const artifact of result.artifacts) {
      expect(artifact.uri).toBe(store.objectUri(artifact.sha256));
      // What the store gives back is the file's bytes, verified by its hash.
      expect((await store.getBytes(artifact.sha256)).toString()).toBe(
        await fs.readFile(path.join(artifacts, artifact.path), 'utf8'),
      );
    }
    const objects = [];
    for await (const object of store.listObjects()) objects.push(object.sha256);
    expect(objects.sort()).toEqual([...new Set(listed.map((a) => a.sha256))].sort());
    expect(objects).toHaveLength(2);
    const document = await store.getDocument<ArtifactsDocument>(attemptDocument('exp-upload', 1, ARTIFACTS_DOCUMENT));
    expect(document).toMatchObject({ experimentId: 'exp-upload', attempt: 1, artifacts: result.artifacts });
  });

  it('an attempt that is no longer current uploads nothing and says so', async () => {
    const store = new FilesystemStore(path.join(dir, 'store'));
    await claimFence(store, { ...token, attempt: 2, leaseId: 'lease-2' });
    const listed = await writeArtifactManifest(artifacts, origin);
    const result = await uploadArtifacts({
      dir: artifacts,
      artifacts: listed,
      store,
      writer: attemptWriter(store, token),
    });

    expect(result.artifacts.every((a) => a.uri === undefined)).toBe(true);
    expect(result.problems).toHaveLength(1);
    expect(result.problems[0]).toMatch(
      /^artifacts not uploaded \(3 of 3 artifact uploads missing\): attempt 1 .* no longer current/,
    );
    expect(await store.getDocument(attemptDocument('exp-upload', 1, ARTIFACTS_DOCUMENT))).toBeNull();
    const objects = [];
    for await (const object of store.listObjects()) objects.push(object);
    expect(objects).toEqual([]);
  });

  it('an unreachable store is retried for the budget, then the artifacts are named missing', async () => {
    // A store under a plain file: every access fails, as a store that cannot be reached.
    await fs.writeFile(path.join(dir, 'not-a-dir'), '');
    const store = new FilesystemStore(path.join(dir, 'not-a-dir', 'store'));
    const listed = await writeArtifactManifest(artifacts, origin);
    const started = Date.now();
    const result = await uploadArtifacts({
      dir: artifacts,
      artifacts: listed,
      store,
      writer: attemptWriter(store, token),
      budgetMs: 2000,
    });
    const took = Date.now() - started;

    // Retried (0.5 s, 1 s) but not past its budget.
    expect(took).toBeGreaterThanOrEqual(1400);
    expect(took).toBeLessThan(10_000);
    expect(result.artifacts).toEqual(listed);
    expect(result.problems).toEqual([
      expect.stringMatching(/^store unreachable: 3 of 3 artifact uploads missing \(.*ENOTDIR/),
    ]);
  });

  it('a run without artifacts touches no store', async () => {
    const store = new FilesystemStore(path.join(dir, 'untouched'));
    const result = await uploadArtifacts({ dir: artifacts, artifacts: [], store, writer: attemptWriter(store, token) });
    expect(result).toEqual({ artifacts: [], problems: [] });
    await expect(fs.access(path.join(dir, 'untouched'))).rejects.toThrow(/ENOENT/);
  });
});
