import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    // Integration tests talk to real Redis and HTTP servers: give them room.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    pool: 'forks',
    // Two test files at a time on a 2-core machine: most of a file's time is spent waiting (on
    // simulator latency, child processes, timers), so the suite takes about two thirds as long.
    maxWorkers: 2,
  },
});
