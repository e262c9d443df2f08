import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { startSimulator, type Simulator, type SimulatorOptions } from '../../src/sim/server.ts';
import { cleanupPrefix, testRedisUrl, uniquePrefix } from './redis.ts';

export interface Harness {
  readonly sim: Simulator;
  /** A client on the test Redis, for looking at what the CLI left there. */
  readonly redis: Redis;
  /** This file's key prefix (SWITCHYARD_PREFIX), deleted after the tests. */
  readonly prefix: string;
  /** Environment for a CLI process: the test Redis and this file's prefix, plus `extra`. */
  env(extra?: Record<string, string>): Record<string, string>;
}

/** A simulator and a Redis client for one describe block, with their clean-up registered. */
export function useSimulatorAndRedis(name: string, simulator: SimulatorOptions = {}): Harness {
  const prefix = uniquePrefix(name);
  let sim: Simulator | undefined;
  let redis: Redis | undefined;
  beforeAll(async () => {
    sim = await startSimulator(simulator);
    redis = new Redis(testRedisUrl());
  });
  afterAll(async () => {
    if (redis) {
      await cleanupPrefix(redis, prefix);
      redis.disconnect();
    }
    await sim?.close();
  });
  return {
    get sim() {
      if (!sim) throw new Error('the simulator starts in beforeAll');
      return sim;
    },
    get redis() {
      if (!redis) throw new Error('Redis connects in beforeAll');
      return redis;
    },
    prefix,
    env: (extra = {}) => ({ REDIS_URL: testRedisUrl(), SWITCHYARD_PREFIX: prefix, ...extra }),
  };
}
