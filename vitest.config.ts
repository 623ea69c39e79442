import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Tests that start Temporal workers need real processes, not worker threads.
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
    setupFiles: ['test/setup-env.ts'],
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // Two cores: integration files share one dev server; keep parallelism modest.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
  },
});
