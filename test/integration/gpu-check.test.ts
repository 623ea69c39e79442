import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, inject, it } from 'vitest';
import { FIXTURES } from '../helpers/stack.js';

// The real-GPU check (npm run gpu-check) on the fake nvidia-smi: every part but the GPU work runs
// as on a GPU machine (its own `expctl dev` stack, a 4-GPU run, the run's telemetry).

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

describe('npm run gpu-check', () => {
  it(
    'parses topology and telemetry, runs a 4-GPU run that sees exactly its GPUs, and says what it skipped',
    {
      timeout: 400_000,
    },
    async () => {
      const fleets = path.join(FIXTURES, 'fleets');
      const result = await execa(
        process.execPath,
        ['--import', 'tsx', path.join(ROOT, 'scripts', 'gpu-check.ts'), '--gpus', '4', '--work-seconds', '1'],
        {
          cwd: ROOT,
          reject: false,
          all: true,
          env: {
            PATH: `${path.join(FIXTURES, 'bin')}${path.delimiter}${process.env.PATH}`,
            FAKE_NVIDIA_SMI_FLEET: path.join(fleets, 'eight-h100-two-islands.csv'),
            FAKE_NVIDIA_SMI_TOPO: path.join(fleets, 'eight-h100-two-islands.topo'),
            TEMPORAL_CLI: inject('temporalCli'),
          },
        },
      );
      const output = String(result.all);
      expect(output, output).toMatch(/^PASS topology: NVLink islands \[\[0,1,2,3\],\[4,5,6,7\]\]/m);
      expect(output).toMatch(/^PASS telemetry query: GPU0 /m);
      // Placement puts a 4-GPU run inside one island.
      expect(output).toMatch(
        /^PASS 4-GPU run sees exactly its devices: leased GPUs (0,1,2,3|4,5,6,7); the run got CUDA_VISIBLE_DEVICES=\1, EXPCTL_GPUS=4/m,
      );
      expect(output).toMatch(/^PASS run telemetry sampled: GPU\d: [1-9]\d* samples/m);
      expect(output).toMatch(/^(PASS|SKIP) telemetry moves while a GPU works/m);
      expect(result.exitCode).toBe(0);
    },
  );
});
