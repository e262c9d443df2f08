import type { Redis } from 'ioredis';

const BULLMQ_EVICTION_WARNING = 'IMPORTANT! Eviction policy is';

/**
 * A Redis that evicts keys when its memory is full can drop a batch's queued rows, bitmaps or
 * record mid-run. BullMQ warns about it on each of its connections, in words that do not say what
 * it risks or how to fix it; this says it once, with the fix, and silences BullMQ's copies.
 */
export function warnIfRedisEvicts(redis: Redis, redisLabel: string, say: (line: string) => void): void {
  silenceBullmqEvictionWarnings();
  redis
    .info('memory')
    .then((info) => {
      const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
      if (policy && policy !== 'noeviction') say(evictionWarning(policy, redisLabel));
    })
    .catch(() => undefined); // an unreachable Redis is reported by the connection's own watch
}

function evictionWarning(policy: string, redisLabel: string): string {
  return (
    `Warning: Redis at ${redisLabel} evicts keys when its memory is full (maxmemory-policy ${policy}): a batch's queued rows and records could vanish mid-run. ` +
    'Set it to noeviction: redis-cli config set maxmemory-policy noeviction (and maxmemory-policy noeviction in redis.conf to keep it).'
  );
}

let silenced = false;

function silenceBullmqEvictionWarnings(): void {
  if (silenced) return;
  silenced = true;
  const warn = console.warn.bind(console);
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && args[0].startsWith(BULLMQ_EVICTION_WARNING)) return;
    warn(...args);
  };
}
