import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Integration tests spawn processes and bind ports; files run in parallel workers.
    pool: 'forks',
    // One pristine token store, copied for every new store instead of PGlite's initdb.
    globalSetup: ['test/global-setup.ts'],
  },
});
