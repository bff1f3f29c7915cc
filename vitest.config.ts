import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

function testWorkers(): number {
  const set = process.env['SCOPEGATE_TEST_WORKERS'];
  // At most 8: past that the longest file (proxy-parity, ~45 s) bounds the wall time anyway, and
  // each worker with the gateways it spawns costs memory.
  if (set === undefined || set === '') return Math.min(8, Math.max(2, availableParallelism() * 2));
  if (!/^[1-9][0-9]*$/.test(set)) throw new Error(`SCOPEGATE_TEST_WORKERS must be a positive integer, got ${JSON.stringify(set)}`);
  return Number(set);
}

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Integration tests spawn processes and bind ports; files run in parallel workers. Two per
    // core: the process-level files spend about half their time waiting (on child processes,
    // timeouts they prove, the embedded store), so one worker per core left the CPU half idle.
    // Measured on the 2-core CI machine, Node 20, whole suite: 2 workers 375 s wall for 349 s of
    // CPU; 4 workers 180 s for 342 s. SCOPEGATE_TEST_WORKERS overrides it (e.g. 1 to bisect).
    pool: 'forks',
    maxWorkers: testWorkers(),
    // One pristine token store, copied for every new store instead of PGlite's initdb.
    globalSetup: ['test/global-setup.ts'],
  },
});
