import { defineConfig } from 'vitest/config';

/**
 * Unit test files that need a process of their own: they check what the process has loaded so far
 * (the tokenizer is loaded by the first real count only), or replace a module with vi.mock (which a
 * module another file imported first in the same process would not see).
 */
export const OWN_PROCESS = ['test/unit/routing-plan.test.ts', 'test/unit/token-count-thread.test.ts', 'test/unit/serve-progress-lines.test.ts', 'test/unit/cancel-closing.test.ts', 'test/unit/sim-server-errors.test.ts'];

export default defineConfig({
  test: {
    // Integration tests talk to real Redis and HTTP servers: give them room.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    pool: 'forks',
    // Two test files at a time on a 2-core machine: most of a file's time is spent waiting (on
    // simulator latency, child processes, timers), so the suite takes about two thirds as long.
    maxWorkers: 2,
    projects: [
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts', ...OWN_PROCESS],
          // Only here: a project runs its own global setup, and the unit tests need neither Redis nor the CLI.
          globalSetup: ['test/helpers/global-setup.ts'],
        },
      },
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          exclude: OWN_PROCESS,
          // Pure code, each file cleaning up what it changes (timers, spies): the files share their
          // worker processes instead of starting one each, which took 60% of the unit tests' time
          // (and CPU: 41 s against 100 s for them alone on the 2-core VM, 24 s of CPU against 59 s).
          isolate: false,
        },
      },
    ],
  },
});
