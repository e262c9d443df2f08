import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { limiterKey, ModelLimiter, type Reservation, type ReserveInput } from '../../src/limits/model-limiter.ts';
import { RateLimiter } from '../../src/sim/rate-limit.ts';
import { cleanupPrefix, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';

/**
 * The batches on one rate-limited model take turns for its slots (limiter-scripts.ts RESERVE), on
 * real Redis. QA: the limiter booked starts first come, first served up to max_wait_ms ahead, so the
 * queued rows of a 1,000-row batch booked 100 s of a 600-rpm model's slots, and 20 rows posted 10 s
 * later waited 94 s behind them. Now no call books more than the book-ahead (4 s) ahead, and the
 * calls beyond it are told their turns with the batches' lines served in turn.
 */

const prefix = uniquePrefix('limits-fair-turns');
let redis: Redis;
let limiter: ModelLimiter;

beforeAll(() => {
  redis = new Redis(testRedisUrl());
  limiter = new ModelLimiter(redis, { prefix });
});

afterAll(async () => {
  await cleanupPrefix(redis, prefix);
  await redis.quit();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** 600 rpm at headroom 1: a start every 100 ms; a deferred call's turn step is 80 ms (TURN_STEP_SHARE). */
const RPM_600 = { rpm: 600, tokens: 50, headroom: 1, maxWaitMs: 600_000 } as const;

type Deferred = Extract<Reservation, { reserved: false }> & { ticket: number };

function deferredOf(reply: Reservation): Deferred {
  if (reply.reserved || !reply.deferred || reply.ticket === undefined) throw new Error(`not deferred: ${JSON.stringify(reply)}`);
  return reply as Deferred;
}

/** `count` calls of one batch asking one after another, as its rows do when workers take them off the queue. */
async function ask(input: ReserveInput, count: number): Promise<Reservation[]> {
  const replies: Reservation[] = [];
  for (let i = 0; i < count; i++) replies.push(await limiter.reserve(input));
  return replies;
}

async function redisNowMs(): Promise<number> {
  const [seconds, micros] = (await redis.time()) as [number | string, number | string];
  return Number(seconds) * 1000 + Number(micros) / 1000;
}

describe('the book-ahead where the provider counts what calls request (rpm, tpm_counts: requested)', () => {
  it('books no start more than 4 s ahead: the calls after are told their turns one after another, in the order they asked', async () => {
    const input = { ...RPM_600, model: 'horizon', line: 'big' };
    const replies = await ask(input, 100);
    const booked = replies.filter((reply) => reply.reserved);
    // 4 s of a start every 100 ms (and the one due now).
    expect(booked.length).toBeGreaterThanOrEqual(39);
    expect(booked.length).toBeLessThanOrEqual(41);
    for (const reply of booked) expect(reply.waitMs).toBeLessThanOrEqual(4100);
    const deferred = replies.filter((reply) => !reply.reserved).map(deferredOf);
    expect(deferred.map((reply) => reply.ticket)).toEqual(deferred.map((_, i) => i));
    // Each told a turn a turn step (80 ms) after the one before (less the time between the asks): they ask again one by one, not all at once.
    for (let i = 1; i < deferred.length; i++) expect(deferred[i]!.waitMs - deferred[i - 1]!.waitMs).toBeGreaterThanOrEqual(50);
    const lastUs = Number(await redis.hget(limiterKey(prefix, 'horizon'), 'last'));
    expect(lastUs / 1000 - (await redisNowMs())).toBeLessThanOrEqual(4000);
  });

  it('with a book-ahead of Infinity books any start within the max wait, first come, first served (the pacing checked over minutes)', async () => {
    const farLimiter = new ModelLimiter(redis, { prefix, bookAheadMs: Number.POSITIVE_INFINITY });
    const replies: Reservation[] = [];
    for (let i = 0; i < 100; i++) replies.push(await farLimiter.reserve({ ...RPM_600, model: 'no-horizon', line: 'big' }));
    expect(replies.every((reply) => reply.reserved)).toBe(true);
  });
});

describe('batches take turns for a model’s slots', () => {
  it('tells a batch that comes second its turns as if the lines were served in turn, not behind the first one’s queued rows (QA: 20 rows waited 94 s behind 1,000)', async () => {
    const model = 'two-lines';
    const big = await ask({ ...RPM_600, model, line: 'big' }, 240);
    const bigDeferred = big.filter((reply) => !reply.reserved).map(deferredOf);
    expect(bigDeferred.length).toBeGreaterThanOrEqual(195);
    // First come, first served, the 200th deferred call of the big batch is told about 16 s (200 turn steps) past the book-ahead.
    expect(bigDeferred.at(-1)!.waitMs).toBeGreaterThan(15_000);

    const smallReplies = await ask({ ...RPM_600, model, line: 'small' }, 20);
    // Its first call may find the book-ahead with room already (the big batch's asks took a while): it is booked, as the head of its line.
    expect(smallReplies.slice(1).every((reply) => !reply.reserved)).toBe(true);
    const small = smallReplies.filter((reply) => !reply.reserved).map(deferredOf);
    expect(small.length).toBeGreaterThanOrEqual(19);
    // Its own tickets, from 0: its first deferred call is next, with the big batch's first.
    expect(small.map((reply) => reply.ticket)).toEqual(small.map((_, i) => i));
    // Its k-th call has k of its own before it and k of the big batch's: 2k turn steps of 80 ms, not 200 of them
    // (less the time between the asks, which the waits are counted from).
    const firstWait = small[0]!.waitMs;
    expect(firstWait).toBeLessThanOrEqual(bigDeferred[0]!.waitMs + 50);
    for (let k = 1; k < small.length; k++) {
      expect(small[k]!.waitMs - firstWait).toBeGreaterThanOrEqual(2 * k * 80 - 150);
      expect(small[k]!.waitMs - firstWait).toBeLessThanOrEqual(2 * k * 80 + 30);
    }
    expect(small.at(-1)!.waitMs).toBeLessThan(6000);

    // The big batch's calls asking again now count the small one's before theirs: its 30th has 30 of its own and the small one's 20 before it.
    const bigAgain = deferredOf(await limiter.reserve({ ...RPM_600, model, line: 'big', turnTicket: bigDeferred[30]!.ticket }));
    expect(bigAgain.ticket).toBe(bigDeferred[30]!.ticket);
    expect(bigAgain.waitMs - firstWait).toBeGreaterThanOrEqual(50 * 80 - 150);
    expect(bigAgain.waitMs - firstWait).toBeLessThanOrEqual(50 * 80 + 50);
  });

  it('books the small batch’s next call before the big batch’s calls further back in their line, once the book-ahead has room', async () => {
    const model = 'admission';
    const bigDeferred = (await ask({ ...RPM_600, model, line: 'big' }, 100)).filter((reply) => !reply.reserved).map(deferredOf);
    // (The first may be booked at once, as the head of its line, if the book-ahead has room already.)
    const small = (await ask({ ...RPM_600, model, line: 'small' }, 5)).filter((reply) => !reply.reserved).map(deferredOf);
    expect(small.length).toBeGreaterThanOrEqual(4);
    // 1.5 s on the book-ahead has 1.5 s of room (15 starts).
    await sleep(1500);
    // The big batch's 30th call: 30 of its own and 5 of the small batch's before it: not its turn, told it again.
    const bigLater = await limiter.reserve({ ...RPM_600, model, line: 'big', turnTicket: bigDeferred[30]!.ticket });
    expect(bigLater).toMatchObject({ reserved: false, deferred: true, ticket: bigDeferred[30]!.ticket });
    // The small batch's first is booked, within the book-ahead.
    const smallFirst = await limiter.reserve({ ...RPM_600, model, line: 'small', turnTicket: small[0]!.ticket });
    expect(smallFirst.reserved).toBe(true);
    expect(smallFirst.waitMs).toBeLessThanOrEqual(4000);
    // And so is the big batch's first: the lines take turns.
    expect((await limiter.reserve({ ...RPM_600, model, line: 'big', turnTicket: bigDeferred[0]!.ticket })).reserved).toBe(true);
  });

  it('a stop forgets its own batch’s line only: the other batch’s calls keep their places, and a resume’s first call is next', async () => {
    const model = 'stopped-line';
    await ask({ ...RPM_600, model, line: 'big' }, 100);
    const small = (await ask({ ...RPM_600, model, line: 'small' }, 10)).filter((reply) => !reply.reserved).map(deferredOf);
    expect(small.length).toBeGreaterThanOrEqual(9);
    await limiter.release({ model, rpm: 600, headroom: 1, reservations: [], forgetTurns: { line: 'big' } });
    const lines = JSON.parse((await redis.hget(limiterKey(prefix, model), 'lines')) ?? '{}') as Record<string, unknown>;
    expect(Object.keys(lines)).toEqual(['small']);
    // The small batch's 5th: 5 of its own before it and no other line's now.
    const again = deferredOf(await limiter.reserve({ ...RPM_600, model, line: 'small', turnTicket: small[5]!.ticket }));
    expect(again.ticket).toBe(small[5]!.ticket);
    expect(again.waitMs - small[0]!.waitMs).toBeLessThanOrEqual(5 * 80 + 50);
    // The resumed big batch's first call has a place of its own at the head of a new line.
    const resumed = deferredOf(await limiter.reserve({ ...RPM_600, model, line: 'big' }));
    expect(resumed.ticket).toBe(0);
    expect(resumed.waitMs).toBeLessThanOrEqual(small[0]!.waitMs + 100);
  });
});

describe('a batch that leaves the line', () => {
  it('costs no pace: once the calls booked ahead run short, whoever asks is booked, and its line counts the tickets before it as served', async () => {
    const model = 'left-line';
    const bigDeferred = (await ask({ ...RPM_600, model, line: 'big' }, 60)).filter((reply) => !reply.reserved).map(deferredOf);
    // 20 rows of another batch take tickets, then go elsewhere (a fallback, the cache, a cancel without a stop): they never ask again.
    await ask({ ...RPM_600, model, line: 'gone' }, 20);
    // The big batch's 10th: 10 of its own and 10 of the gone batch's before it, so it is told to wait...
    expect((await limiter.reserve({ ...RPM_600, model, line: 'big', turnTicket: bigDeferred[10]!.ticket })).reserved).toBe(false);
    // ...until the calls booked ahead run short (the next start within 1 s): then it is booked, and the 10 before it in its line count as served.
    await sleep(3200);
    const booked = await limiter.reserve({ ...RPM_600, model, line: 'big', turnTicket: bigDeferred[10]!.ticket });
    expect(booked.reserved).toBe(true);
    const lines = JSON.parse((await redis.hget(limiterKey(prefix, model), 'lines')) ?? '{}') as Record<string, [number, number, number]>;
    expect(lines.big?.[1]).toBe(bigDeferred[10]!.ticket + 1);
  });

  it('is dropped once none of its calls has asked for 30 s: it counts no more before the other batches’ calls', async () => {
    const model = 'idle-line';
    await ask({ ...RPM_600, model, line: 'big' }, 60);
    await ask({ ...RPM_600, model, line: 'idle' }, 20);
    const key = limiterKey(prefix, model);
    const lines = JSON.parse((await redis.hget(key, 'lines')) ?? '{}') as Record<string, [number, number, number]>;
    // The idle batch's last ask, 60 s ago (its rows left 60 s ago).
    lines.idle![2] -= 60_000;
    await redis.hset(key, 'lines', JSON.stringify(lines));
    const next = deferredOf(await limiter.reserve({ ...RPM_600, model, line: 'big', turnTicket: 5 }));
    expect(next.ticket).toBe(5);
    expect(Object.keys(JSON.parse((await redis.hget(key, 'lines')) ?? '{}') as object)).toEqual(['big']);
  });
});

/**
 * Two batches' rows as workers run them against one model: every row asks, a booked one "starts" at
 * its slot, a deferred one asks again when told, with its ticket. Returns each batch's starts (Redis ms).
 */
async function runLines(input: Omit<ReserveInput, 'line'>, lines: ReadonlyArray<{ line: string; rows: number; afterMs: number }>, forMs: number): Promise<Map<string, number[]>> {
  const began = Date.now();
  const starts = new Map<string, number[]>(lines.map(({ line }) => [line, []]));
  const bookedAhead: number[] = [];
  async function row(line: string): Promise<void> {
    let turnTicket: number | undefined;
    while (Date.now() - began < forMs) {
      const asked = await redisNowMs();
      const reply = await limiter.reserve({ ...input, line, turnTicket });
      if (reply.reserved) {
        bookedAhead.push(reply.slotAt - asked);
        starts.get(line)!.push(reply.slotAt);
        return;
      }
      turnTicket = deferredOf(reply).ticket;
      await sleep(Math.min(Math.max(100, reply.waitMs), Math.max(0, forMs - (Date.now() - began))));
    }
  }
  await Promise.all(
    lines.map(async ({ line, rows, afterMs }) => {
      await sleep(afterMs);
      await Promise.all(Array.from({ length: rows }, () => row(line)));
    }),
  );
  // No start was booked more than the book-ahead (and a call's ask) ahead.
  expect(Math.max(...bookedAhead)).toBeLessThanOrEqual(4000 + 50);
  return starts;
}

describe('tpm_counts: requested with the book-ahead and the turns', () => {
  it('starts a small batch’s calls within seconds beside a large one, and never books more than the tpm allows', async () => {
    // 600 tokens a second at headroom 1; a call books prompt + max_tokens, 100 tokens: a start every 166.7 ms.
    const input = { model: 'requested-two-lines', tpm: 36_000, tokens: 100, headroom: 1, maxWaitMs: 600_000 };
    const starts = await runLines(input, [{ line: 'big', rows: 200, afterMs: 0 }, { line: 'small', rows: 8, afterMs: 2000 }], 9000);
    const big = starts.get('big')!;
    const small = starts.get('small')!;
    expect(small).toHaveLength(8);
    // The small batch was posted 2 s after the big one had 4 s of starts booked: all 8 of its calls start within 8 s of its post,
    // where first come, first served they came after the big one's 200 (33 s of the minute).
    const postedAt = Math.min(...big) + 2000;
    expect(Math.max(...small) - postedAt).toBeLessThan(8000);
    // The big one went on meanwhile, and the pace never went above the tpm: starts at least a call's span apart, 60 s windows within it.
    const all = [...big, ...small].sort((a, b) => a - b);
    for (let i = 1; i < all.length; i++) expect(all[i]! - all[i - 1]!).toBeGreaterThanOrEqual(166);
    const provider = new RateLimiter();
    for (const at of all) expect(provider.take('m', { tpm: 36_000 }, 100, at).ok).toBe(true);
    // And the limit was used: about one start per 166.7 ms over the time the starts span.
    expect(all.length).toBeGreaterThanOrEqual(Math.floor((all.at(-1)! - all[0]!) / 167) - 1);
  }, 30_000);
});
