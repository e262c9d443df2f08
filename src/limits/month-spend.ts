import type { Redis } from 'ioredis';
import { monthKey, monthKeyExpiresAt } from './budget.ts';

/**
 * What calls cost that no monthly cap reserved for (a batch whose config sets no budget.monthly_usd),
 * added to the month's `spent`: the cap of a config that sets one counts every batch on this Redis.
 * Summed in memory and written at most once a second, and when the process closes its session, so a
 * call costs no Redis command of its own; a process killed outright leaves its last second uncounted.
 */
export interface MonthSpend {
  add(nanos: number, at?: Date): void;
  /** Writes what is pending now (a failed write is kept for the next). */
  flush(): Promise<void>;
}

const FLUSH_EVERY_MS = 1000;

export function createMonthSpend(redis: Redis, prefix: string, flushEveryMs = FLUSH_EVERY_MS): MonthSpend {
  const pending = new Map<string, number>();
  let timer: NodeJS.Timeout | null = null;

  async function flush(): Promise<void> {
    if (timer) clearTimeout(timer);
    timer = null;
    const entries = [...pending];
    pending.clear();
    await Promise.all(
      entries.map(async ([key, nanos]) => {
        try {
          await redis.hincrby(key, 'spent', nanos);
        } catch {
          pending.set(key, (pending.get(key) ?? 0) + nanos);
          return;
        }
        // Counted now: a failed expiry must not count it again (the next flush sets the expiry).
        const expiresAt = monthKeyExpiresAt(key);
        if (expiresAt !== null) await redis.pexpireat(key, expiresAt).catch(() => undefined);
      }),
    );
  }

  return {
    add(nanos, at = new Date()) {
      if (!(nanos > 0)) return;
      const key = monthKey(prefix, at);
      pending.set(key, (pending.get(key) ?? 0) + nanos);
      timer ??= setTimeout(() => void flush(), flushEveryMs).unref();
    },
    flush,
  };
}
