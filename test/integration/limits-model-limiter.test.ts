import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { limiterKey, ModelLimiter, type Reservation, type ReserveInput } from '../../src/limits/model-limiter.ts';
import { RateLimiter } from '../../src/sim/rate-limit.ts';
import { cleanupPrefix, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';

/**
 * The shared limiter against real Redis. Reservations are start times, so most checks reserve far
 * ahead (a large maxWaitMs, and no book-ahead: `bookAheadMs: Infinity`) and look at the slots handed
 * out, without waiting for them. The book-ahead and the batches' turns: limits-fair-turns.test.ts.
 */

const prefix = uniquePrefix('limits-model-limiter');
const clients: Redis[] = [];
let limiters: ModelLimiter[] = [];

beforeAll(() => {
  for (let i = 0; i < 4; i++) clients.push(new Redis(testRedisUrl()));
  limiters = clients.map((redis) => new ModelLimiter(redis, { prefix, bookAheadMs: Number.POSITIVE_INFINITY }));
});

afterAll(async () => {
  const first = clients[0];
  if (first) await cleanupPrefix(first, prefix);
  await Promise.all(clients.map((redis) => redis.quit()));
});

function limiter(i = 0): ModelLimiter {
  const found = limiters[i % limiters.length];
  if (!found) throw new Error('no limiter');
  return found;
}

function slotOf(reservation: Reservation): number {
  if (!reservation.reserved) throw new Error(`not reserved: ${JSON.stringify(reservation)}`);
  return reservation.slotAt;
}

/** Most items in any half-open window [t, t + 60 s), weighted. */
function peakInWindow(items: readonly { at: number; weight: number }[]): number {
  const sorted = [...items].sort((a, b) => a.at - b.at);
  let peak = 0;
  let held = 0;
  let first = 0;
  for (const item of sorted) {
    held += item.weight;
    while ((sorted[first]?.at ?? 0) <= item.at - 60_000) held -= sorted[first++]?.weight ?? 0;
    peak = Math.max(peak, held);
  }
  return peak;
}

const MODULE = fileURLToPath(new URL('../../src/limits/model-limiter.ts', import.meta.url));

/** Reservations from another process: `count` concurrent reserve() calls; prints the slots as JSON. */
async function reserveInChild(input: ReserveInput, count: number): Promise<number[]> {
  const code = `
    import { Redis } from 'ioredis';
    import { ModelLimiter } from ${JSON.stringify(MODULE)};
    const redis = new Redis(process.env.REDIS_URL);
    const limiter = new ModelLimiter(redis, { prefix: process.env.PREFIX, bookAheadMs: Infinity });
    const input = JSON.parse(process.env.INPUT);
    const results = await Promise.all(Array.from({ length: ${count} }, () => limiter.reserve(input)));
    console.log(JSON.stringify(results.map((r) => (r.reserved ? r.slotAt : null))));
    await redis.quit();
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', code], {
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
    env: { ...process.env, REDIS_URL: testRedisUrl(), PREFIX: prefix, INPUT: JSON.stringify(input) },
  });
  const slots = JSON.parse(stdout) as (number | null)[];
  return slots.map((slot) => {
    if (slot === null) throw new Error('a child reservation was refused');
    return slot;
  });
}

describe('ModelLimiter requests per minute', () => {
  it('spaces reservations from 4 connections and 2 processes so no 60 s window gets more than rpm x headroom', async () => {
    const input: ReserveInput = { model: 'rpm-600', rpm: 600, tokens: 50, maxWaitMs: 130_000, headroom: 0.98 };
    const [inProcess, childA, childB] = await Promise.all([
      Promise.all(Array.from({ length: 400 }, (_, i) => limiter(i).reserve(input))),
      reserveInChild(input, 100),
      reserveInChild(input, 100),
    ]);
    const slots = [...inProcess.map(slotOf), ...childA, ...childB].sort((a, b) => a - b);
    expect(slots).toHaveLength(600);
    // 60 s / (600 x 0.98) = 102.04 ms apart (slots are whole ms, rounded down).
    for (let i = 1; i < slots.length; i++) expect((slots[i] ?? 0) - (slots[i - 1] ?? 0)).toBeGreaterThanOrEqual(102);
    expect((slots.at(-1) ?? 0) - (slots[0] ?? 0)).toBeGreaterThan(60_000);
    expect(peakInWindow(slots.map((at) => ({ at, weight: 1 })))).toBeLessThanOrEqual(588);
    // The simulator's provider-side window, fed the reserved starts, never says 429.
    const provider = new RateLimiter();
    for (const at of slots) expect(provider.take('m', { rpm: 600 }, 50, at).ok).toBe(true);
  });

  it('refuses past maxWaitMs and then reserves nothing', async () => {
    const base = { model: 'rpm-1', rpm: 1, tokens: 1, headroom: 1 };
    const first = await limiter(0).reserve({ ...base, maxWaitMs: 0 });
    expect(first).toMatchObject({ reserved: true, waitMs: 0, limitedBy: null });
    const refused = await limiter(1).reserve({ ...base, maxWaitMs: 1000 });
    expect(refused).toMatchObject({ reserved: false, limitedBy: 'requests' });
    expect(refused.waitMs).toBeGreaterThan(59_000);
    expect(refused.waitMs).toBeLessThanOrEqual(60_000);
    const again = await limiter(2).reserve({ ...base, maxWaitMs: 1000 });
    expect(again.reserved).toBe(false);
    const later = await limiter(3).reserve({ ...base, maxWaitMs: 120_000 });
    expect(later).toMatchObject({ reserved: true, limitedBy: 'requests' });
    expect(slotOf(later) - slotOf(first)).toBe(60_000); // the refusals took no slot
  });

  it('gives back the slots of rows that will not call (a stopped run\'s parked rows), so the next ones do not wait behind them', async () => {
    const base = { model: 'released', rpm: 60, tokens: 10, headroom: 1, maxWaitMs: 60_000 };
    const slots: number[] = [];
    for (let i = 0; i < 10; i++) slots.push(slotOf(await limiter(i).reserve(base)));
    expect((slots.at(-1) ?? 0) - (slots[0] ?? 0)).toBe(9000);
    // The first (started now) is not given back; the eight after the second are.
    const released = await limiter(1).release({ ...base, reservations: [slots[0]!, ...slots.slice(2)].map((slotAt) => ({ slotAt, tokens: 10 })) });
    expect(released).toBe(8);
    const next = slotOf(await limiter(2).reserve(base));
    expect(next - (slots[1] ?? 0)).toBe(1000); // right after the one still booked, not 9 s later
    expect(await limiter(3).release({ ...base, model: 'never-booked', reservations: [{ slotAt: Date.now() + 5000, tokens: 10 }] })).toBe(0);
    expect(await limiter(3).release({ ...base, rpm: undefined, reservations: [{ slotAt: next, tokens: 10 }] })).toBe(0); // no limits: nothing to give back
  });

  it('gives back a slot whose start has come when its row says it will not call (due)', async () => {
    const base = { model: 'released-due', rpm: 60, tpm: 6000, tokens: 100, headroom: 1, maxWaitMs: 60_000 };
    const first = slotOf(await limiter(0).reserve(base));
    await new Promise((resolve) => setTimeout(resolve, 20)); // its start has passed
    expect(await limiter(1).release({ ...base, reservations: [{ slotAt: first, tokens: 100 }] })).toBe(0); // not due: it may have been used
    expect(await limiter(1).release({ ...base, reservations: [{ slotAt: first, tokens: 100, due: true }] })).toBe(1);
    const next = slotOf(await limiter(2).reserve(base));
    expect(next - first).toBeLessThan(1000); // now, not a request interval after the unused one
  });

  it('makes no Redis round trip for a model without rpm or tpm', async () => {
    const offline = new Redis(testRedisUrl(), { lazyConnect: true, enableOfflineQueue: false });
    try {
      const unlimited = new ModelLimiter(offline, { prefix, cooldownPollMs: Number.POSITIVE_INFINITY });
      for (let i = 0; i < 100; i++) expect(await unlimited.reserve({ model: 'free', tokens: 10, maxWaitMs: 0, headroom: 0.98 })).toMatchObject({ reserved: true, waitMs: 0 });
      expect(offline.status).toBe('wait'); // never asked to connect
      // With the default cooldownPollMs, the first reserve asks Redis about a cooldown (and fails here).
      const polling = new ModelLimiter(offline, { prefix });
      await expect(polling.reserve({ model: 'free', tokens: 10, maxWaitMs: 0, headroom: 0.98 })).rejects.toThrow();
    } finally {
      offline.disconnect();
    }
  });
});

describe('ModelLimiter tokens per minute', () => {
  it('keeps every 60 s window within tpm x headroom when tpm binds, even with large requests', async () => {
    // 3000-token calls at tpm 10000: pacing alone would start one every 18 s, four within 54 s.
    const input: ReserveInput = { model: 'tpm-bound', rpm: 100_000, tpm: 10_000, tokens: 3000, maxWaitMs: 300_000, headroom: 1 };
    const reservations = await Promise.all(Array.from({ length: 12 }, (_, i) => limiter(i).reserve(input)));
    const slots = reservations.map(slotOf).sort((a, b) => a - b);
    expect(reservations.filter((r) => r.reserved && r.limitedBy === 'tokens')).toHaveLength(11);
    for (let i = 1; i < slots.length; i++) expect((slots[i] ?? 0) - (slots[i - 1] ?? 0)).toBeGreaterThanOrEqual(18_000);
    expect(peakInWindow(slots.map((at) => ({ at, weight: 3000 })))).toBeLessThanOrEqual(9000);
    const provider = new RateLimiter();
    for (const at of slots) expect(provider.take('m', { tpm: 10_000 }, 3000, at).ok).toBe(true);
  });

  it('gives unused tokens back on settle, and takes extra ones', async () => {
    const base = { tpm: 10_000, headroom: 1, maxWaitMs: 120_000 };
    // Without a settle, a second 5000-token call starts 30 s after the first.
    const plainFirst = slotOf(await limiter(0).reserve({ ...base, model: 'no-settle', tokens: 5000 }));
    const plainSecond = slotOf(await limiter(1).reserve({ ...base, model: 'no-settle', tokens: 5000 }));
    expect(plainSecond - plainFirst).toBeGreaterThanOrEqual(29_999);
    expect(plainSecond - plainFirst).toBeLessThanOrEqual(30_001);

    const first = slotOf(await limiter(0).reserve({ ...base, model: 'settled', tokens: 5000 }));
    await limiter(2).settle({ model: 'settled', tpm: 10_000, headroom: 1, slotAt: first, estimatedTokens: 5000, actualTokens: 1000 });
    const second = slotOf(await limiter(1).reserve({ ...base, model: 'settled', tokens: 5000 }));
    expect(second - first).toBeGreaterThanOrEqual(5999); // 1000 tokens' worth: 6 s
    expect(second - first).toBeLessThanOrEqual(6001);
    // The second used more than it reserved: the next start moves by the extra 2000 tokens (12 s).
    await limiter(3).settle({ model: 'settled', tpm: 10_000, headroom: 1, slotAt: second, estimatedTokens: 5000, actualTokens: 7000 });
    const third = slotOf(await limiter(0).reserve({ ...base, model: 'settled', tokens: 100 }));
    expect(third - second).toBeGreaterThanOrEqual(41_999);
    expect(third - second).toBeLessThanOrEqual(42_001);
    // The window saw the corrections too: 1000 + 7000 + 100 fits; another 2000 must wait for the first to leave it.
    const fourth = await limiter(1).reserve({ ...base, model: 'settled', tokens: 2000 });
    expect(slotOf(fourth) - first).toBeGreaterThanOrEqual(60_000);
  });

  it('gives back a released reservation\'s tokens, in its bucket of the window as in the pacing', async () => {
    const base = { model: 'tpm-released', tpm: 10_000, headroom: 1, maxWaitMs: 300_000 };
    const first = slotOf(await limiter(0).reserve({ ...base, tokens: 4000 }));
    const second = slotOf(await limiter(1).reserve({ ...base, tokens: 4000 }));
    expect(second - first).toBeGreaterThanOrEqual(23_999); // 4000 tokens' worth: 24 s
    expect(await limiter(2).release({ ...base, reservations: [{ slotAt: second, tokens: 4000 }] })).toBe(1);
    // 4000 + 4000 fits the window beside the first: the next starts 24 s after it, not 48 s.
    const third = slotOf(await limiter(3).reserve({ ...base, tokens: 4000 }));
    expect(third - first).toBeGreaterThanOrEqual(23_999);
    expect(third - first).toBeLessThanOrEqual(24_001);
    const fourth = await limiter(0).reserve({ ...base, tokens: 4000 });
    expect(slotOf(fourth) - first).toBeGreaterThanOrEqual(60_000); // three would not fit one window: the released tokens are gone, not more
  });

  it('keeps about one window of buckets however far ahead reservations reach', async () => {
    // 400 calls at rpm 60: the last starts ~400 s ahead (a 'wait' policy with no max wait does this).
    const input: ReserveInput = { model: 'far-ahead', rpm: 60, tpm: 1_000_000, tokens: 100, maxWaitMs: Number.MAX_SAFE_INTEGER, headroom: 1 };
    const slots = (await Promise.all(Array.from({ length: 400 }, (_, i) => limiter(i).reserve(input)))).map(slotOf).sort((a, b) => a - b);
    expect((slots.at(-1) ?? 0) - (slots[0] ?? 0)).toBe(399_000);
    expect(await (clients[0] as Redis).hlen(limiterKey(prefix, 'far-ahead'))).toBeLessThanOrEqual(6 + 62);
    const ttl = await (clients[0] as Redis).pttl(limiterKey(prefix, 'far-ahead'));
    expect(ttl).toBeGreaterThan(399_000 + 60_000);
  });

  it('charges a request larger than the whole capacity as the whole capacity', async () => {
    const input = { model: 'huge', tpm: 1000, headroom: 1, maxWaitMs: 200_000, tokens: 5000 };
    const first = slotOf(await limiter(0).reserve(input));
    const second = slotOf(await limiter(1).reserve(input));
    expect(second - first).toBeGreaterThanOrEqual(60_000);
    expect(second - first).toBeLessThanOrEqual(61_001);
  });
});

describe('ModelLimiter cooldown and headers', () => {
  it('a cooldown set by one client holds every client back', async () => {
    const model = 'cooled';
    const base = { model, rpm: 6000, tokens: 1, headroom: 1 };
    const parked = await limiter(0).reserve({ ...base, maxWaitMs: 0 });
    expect(parked.reserved).toBe(true);
    const { untilMs } = await limiter(1).coolDown({ model, forMs: 1500 });
    const refused = await limiter(2).reserve({ ...base, maxWaitMs: 100 });
    expect(refused).toMatchObject({ reserved: false, limitedBy: 'cooldown' });
    expect(refused.waitMs).toBeGreaterThan(1300);
    expect(refused.waitMs).toBeLessThanOrEqual(1500);
    const waiting = await limiter(3).reserve({ ...base, maxWaitMs: 5000 });
    expect(waiting).toMatchObject({ reserved: true, limitedBy: 'cooldown' });
    expect(slotOf(waiting)).toBeGreaterThanOrEqual(untilMs - 1);
    // A reservation made before the cooldown is re-checked before its call.
    const left = await limiter(0).cooldownRemainingMs(model);
    expect(left).toBeGreaterThan(1000);
    expect(left).toBeLessThanOrEqual(1500);
    // A shorter cooldown never shortens a longer one.
    expect((await limiter(2).coolDown({ model, forMs: 10 })).untilMs).toBe(untilMs);
  });

  it("says the rows queued behind a 429's cooldown wait for the cooldown, not for rpm, unless the pace's queue is the longer part (QA: 'models.pro.rpm (600) lets one call start every 0.1 s, and the next free slot is 33 s away')", async () => {
    const model = 'cooled-queue';
    const base = { model, rpm: 600, tokens: 1, headroom: 1, maxWaitMs: 60_000 };
    await limiter(0).coolDown({ model, forMs: 5000 });
    const first = await limiter(1).reserve(base);
    const second = await limiter(2).reserve(base);
    expect(first).toMatchObject({ reserved: true, limitedBy: 'cooldown' });
    expect(second).toMatchObject({ reserved: true, limitedBy: 'cooldown' });
    expect(slotOf(second) - slotOf(first)).toBeGreaterThanOrEqual(99);

    // A queue of 10 s at 6 rpm: a 1 s cooldown is the smaller part of the wait; rpm stays named.
    const paced = 'paced-then-cooled';
    const slow = { model: paced, rpm: 6, tokens: 1, headroom: 1, maxWaitMs: 60_000 };
    await limiter(0).reserve(slow);
    await limiter(0).reserve(slow);
    await limiter(1).coolDown({ model: paced, forMs: 1000 });
    expect(await limiter(2).reserve(slow)).toMatchObject({ reserved: true, limitedBy: 'requests' });
  });

  it('a model without limits learns of another worker\'s cooldown within cooldownPollMs', async () => {
    const model = 'free-but-429';
    const polling = new ModelLimiter(clients[0] as Redis, { prefix, cooldownPollMs: 100 });
    expect(await polling.reserve({ model, tokens: 1, maxWaitMs: 0, headroom: 1 })).toMatchObject({ reserved: true, waitMs: 0 });
    await limiter(1).coolDown({ model, forMs: 2000 });
    await new Promise((resolve) => setTimeout(resolve, 120));
    const held = await polling.reserve({ model, tokens: 1, maxWaitMs: 0, headroom: 1 });
    expect(held).toMatchObject({ reserved: false, limitedBy: 'cooldown' });
    expect(held.waitMs).toBeGreaterThan(1500);
  });

  it('keeps its state in one expiring hash per model', async () => {
    const redis = clients[0] as Redis;
    await limiter(0).reserve({ model: 'ttl', rpm: 60, tpm: 6000, tokens: 100, maxWaitMs: 0, headroom: 1 });
    const key = limiterKey(prefix, 'ttl');
    expect(key).toBe(`${prefix}:limit:{ttl}`);
    const ttl = await redis.pttl(key);
    expect(ttl).toBeGreaterThan(60_000);
    expect(ttl).toBeLessThanOrEqual(63_000); // next request at +1 s; the window's bucket keeps it 61 s (+1 s slack)
    await limiter(0).coolDown({ model: 'ttl-cool', forMs: 5000 });
    const coolTtl = await redis.pttl(limiterKey(prefix, 'ttl-cool'));
    expect(coolTtl).toBeGreaterThan(0);
    expect(coolTtl).toBeLessThanOrEqual(62_000);
  });
});
