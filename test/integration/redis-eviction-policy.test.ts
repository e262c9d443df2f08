import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { findRedisServerBinary, startRedisServer, type RedisServerHandle } from '../../src/queue/redis-server-process.ts';
import { runCli } from '../helpers/cli.ts';
import { tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

// Needs a Redis whose settings it may change: a private redis-server.
describe.runIf(findRedisServerBinary() !== null)('a Redis that evicts keys when full', () => {
  const h = useSimulatorAndRedis('eviction-policy', { latency_ms: 1 });
  let server: RedisServerHandle | undefined;
  afterAll(async () => {
    await server?.stop().catch(() => undefined);
  });

  it('is named once, with the fix, instead of once per BullMQ connection', async () => {
    const dir = await tempDir('eviction-policy');
    server = await startRedisServer({ port: 0, dir: join(dir, 'redis'), persist: false });
    const admin = new Redis(server.url);
    await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
    admin.disconnect();
    const config = await writeSimConfig(dir, h.sim.url);
    const run = await runCli(['run', await writePromptsCsv(dir, 3), '--config', config, '--out', join(dir, 'out')], h.env({ REDIS_URL: server.url }));
    expect(run.code, run.stderr).toBe(0);
    const warning = `Warning: Redis at ${server.url} evicts keys when its memory is full (maxmemory-policy allkeys-lru): a batch's queued rows and records could vanish mid-run. Set it to noeviction: redis-cli config set maxmemory-policy noeviction`;
    expect(run.stdout.split(warning)).toHaveLength(2);
    expect(run.stdout + run.stderr).not.toContain('IMPORTANT! Eviction policy');
  });
});
