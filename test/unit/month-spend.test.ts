import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { createMonthSpend } from '../../src/limits/month-spend.ts';

/** A Redis stand-in that counts HINCRBY and fails the commands it is told to, once each. */
function flakyRedis(failOnce: Set<'hincrby' | 'pexpireat'>) {
  const spent = new Map<string, number>();
  const fail = (command: 'hincrby' | 'pexpireat') => {
    if (!failOnce.delete(command)) return;
    throw new Error(`${command} failed (connection lost)`);
  };
  const redis = {
    async hincrby(key: string, _field: string, nanos: number) {
      fail('hincrby');
      spent.set(key, (spent.get(key) ?? 0) + nanos);
      return spent.get(key);
    },
    async pexpireat() {
      fail('pexpireat');
      return 1;
    },
  };
  return { redis: redis as unknown as Redis, spent };
}

describe('the month spend written to Redis', () => {
  const at = new Date('2026-05-10T12:00:00Z');

  it('counts an amount once when only the expiry after it failed (QA: it was added again on the next flush)', async () => {
    const { redis, spent } = flakyRedis(new Set(['pexpireat']));
    const month = createMonthSpend(redis, 'qa', 60_000);
    month.add(1000, at);
    await month.flush();
    await month.flush();
    expect([...spent.values()]).toEqual([1000]);
  });

  it('keeps an amount whose increment failed for the next flush', async () => {
    const { redis, spent } = flakyRedis(new Set(['hincrby']));
    const month = createMonthSpend(redis, 'qa', 60_000);
    month.add(1000, at);
    await month.flush();
    expect(spent.size).toBe(0);
    month.add(500, at);
    await month.flush();
    expect([...spent.values()]).toEqual([1500]);
  });
});
