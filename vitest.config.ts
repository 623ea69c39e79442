import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Tests that start Temporal workers need real processes, not worker threads.
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
    setupFiles: ['test/setup-env.ts'],
    include: ['test/**/*.test.ts'],
    // Whole-test caps, not waits: every wait inside a test is on a condition. Generous, so a loaded
    // 2-core machine (CI, or two CPU-bound processes beside the suite) slows tests without failing them.
    testTimeout: 300_000,
    hookTimeout: 300_000,
    // Two cores: integration files share one dev server; keep parallelism modest.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
  },
});
