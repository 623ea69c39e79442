import crypto from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runFiles } from '../gpu-worker/run-files.js';
import type { FleetStore } from '../store/store.js';

/**
 * On the host that trained a run: the bytes of one of its artifacts hashed again, for a
 * promotion's integrity stage. The path is the recorded one, relative to the run's artifact
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
