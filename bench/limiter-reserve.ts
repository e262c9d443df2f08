/**
 * How many ModelLimiter.reserve() calls per second one process makes with 64 callers in flight on
 * one ioredis connection, next to PING on the same connection (the round-trip bound: a reserve is
 * one EVALSHA). Scenarios: limits that never bind (the common case); tpm binding with maxWaitMs 0
 * (almost every call a refusal, which writes nothing); a model with no limits (no round trip).
 * Usage: node bench/limiter-reserve.ts [calls=50000] [concurrency=64]
 */
import { Redis } from 'ioredis';
import { ModelLimiter, type ReserveInput } from '../src/limits/model-limiter.ts';
import { deletePrefix, selectRedis, uniquePrefix } from './lib/redis.ts';

/** A worker at concurrency 64 with ~1 s calls needs ~64 reserves/s; 5000/s leaves room for many workers. */
const BOUND_PER_S = 5000;

const calls = Number(process.argv[2] ?? 50_000);
const concurrency = Number(process.argv[3] ?? 64);

const server = await selectRedis();
const prefix = uniquePrefix('limiter-reserve');
const redis = new Redis(server.url);
const limiter = new ModelLimiter(redis, { prefix, cooldownPollMs: 1000 });

async function rate(label: string, once: () => Promise<unknown>): Promise<number> {
  let next = 0;
  const lane = async () => {
    while (next++ < calls) await once();
  };
  await Promise.all(Array.from({ length: concurrency }, lane)); // warm-up: script load, JIT
  next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, lane));
  const perS = calls / ((performance.now() - started) / 1000);
  console.log(`  ${label.padEnd(50)} ${perS.toFixed(0).padStart(8)} /s   ratio to bound ${BOUND_PER_S}/s: ${(perS / BOUND_PER_S).toFixed(2)}`);
  return perS;
}

const loose: ReserveInput = { model: 'loose', rpm: 100_000_000, tpm: 2_000_000_000, tokens: 1500, maxWaitMs: 10_000, headroom: 0.98 };
const bound: ReserveInput = { model: 'bound', rpm: 100_000_000, tpm: 60_000, tokens: 1500, maxWaitMs: 0, headroom: 0.98 };

try {
  console.log(`limiter reserve() throughput: ${calls} calls, ${concurrency} in flight, one connection to ${server.label}; node ${process.version}`);
  const ping = await rate('PING (round-trip reference)', () => redis.ping());
  const free = await rate('reserve, limits never bind', () => limiter.reserve(loose));
  const refused = await rate('reserve, tpm binds (maxWaitMs 0: mostly refusals)', () => limiter.reserve(bound));
  await rate('reserve, model without limits (no round trip)', () => limiter.reserve({ ...loose, model: 'free', rpm: undefined, tpm: undefined }));
  console.log(`  reserve vs PING: ${(free / ping).toFixed(2)} (limits never bind), ${(refused / ping).toFixed(2)} (tpm binds)`);
} finally {
  await redis.quit();
  await deletePrefix(server.url, prefix);
  await server.stop();
}
