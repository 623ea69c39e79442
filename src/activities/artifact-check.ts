import crypto from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runFiles } from '../gpu-worker/run-files.js';
import { isStoreError, type FleetStore } from '../store/store.js';

/** What the fleet store holds of a recorded artifact: its bytes as recorded, none, or other bytes. */
export type StoredArtifactCheck = { status: 'verified' } | { status: 'missing' | 'corrupt'; problem: string };

/**
 * Anywhere the fleet store is reachable (the orchestrator's control queue): an artifact's stored
 * object read whole and hashed against the sha256 its run recorded, for a promotion's integrity
 * stage. An unreachable store throws, so the step is retried.
 */
export function createStoredArtifactCheckActivities({ store }: { store: FleetStore }) {
  return {
    async verifyStoredArtifact(input: { sha256: string; path: string }): Promise<StoredArtifactCheck> {
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-verify-'));
      try {
        // getFile hashes what it reads and refuses bytes that do not match the object's name.
        await store.getFile(input.sha256, path.join(dir, 'object'));
        return { status: 'verified' };
      } catch (error) {
        for (const status of ['missing', 'corrupt'] as const)
          if (isStoreError(error, status)) return { status, problem: `${input.path}: ${error.message}` };
        throw error;
      } finally {
        await fs.rm(dir, { recursive: true, force: true });
      }
    },
  };
}

/**
 * On the host that trained a run: the bytes of one of its artifacts hashed again, for a
 * promotion's integrity stage when the run's record predates the fleet store. The path is the recorded one, relative to the run's artifact
 * directory, and never leaves it.
 */
export function createArtifactCheckActivities({ workDir }: { workDir: string; store?: FleetStore }) {
  return {
    async hashArtifact(input: {
      experimentId: string;
      path: string;
    }): Promise<{ absolutePath: string; sha256: string | null; problem: string | null }> {
      const dir = runFiles(workDir, input.experimentId).artifacts;
      const absolutePath = path.resolve(dir, input.path);
      if (!absolutePath.startsWith(dir + path.sep))
        return { absolutePath, sha256: null, problem: `${input.path} is outside the run's artifact directory` };
      try {
        // A run may leave a link pointing out of its directory: the file read must be inside it.
        const real = await fs.realpath(absolutePath);
        if (!real.startsWith((await fs.realpath(dir)) + path.sep))
          return { absolutePath, sha256: null, problem: `${input.path} links out of the run's artifact directory` };
        const hash = crypto.createHash('sha256');
        for await (const chunk of createReadStream(absolutePath)) hash.update(chunk as Buffer);
        return { absolutePath, sha256: hash.digest('hex'), problem: null };
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'EISDIR' || code === 'EACCES')
          return { absolutePath, sha256: null, problem: `${input.path} cannot be read on this host (${code})` };
        throw error;
      }
    },
  };
}
