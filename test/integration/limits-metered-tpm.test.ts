import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';
import { createRedisRowGate } from '../../src/execution/redis-row-gate.ts';
import type { RowGate } from '../../src/execution/row-gate.ts';
import { limiterKey, ModelLimiter } from '../../src/limits/model-limiter.ts';
import { modelEndpoint } from '../../src/limits/model-endpoint.ts';
import { BatchStore } from '../../src/queue/batch-state.ts';
import { cleanupPrefix, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';

/**
 * tpm against a provider that meters what calls use (`tpm_counts: usage`) and one
 * that counts prompt + max_tokens (`requested`, the default), on real Redis. The user's case: max_tokens 1,024,
 * answers of about 70 tokens. Booked at prompt + max_tokens, a queued batch started about as many
 * calls a minute as whole max_tokens fit in the tpm, whatever the answers used.
 */

const prefix = uniquePrefix('limits-metered-tpm');
let redis: Redis;

beforeAll(() => {
  redis = new Redis(testRedisUrl());
});

afterAll(async () => {
  await cleanupPrefix(redis, prefix);
  await redis.quit();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const PROMPT = 30;
const MAX_TOKENS = 1024;
const ANSWER = 70;
/** 1,000 tokens a second with headroom 1: a call booked at prompt + max_tokens takes 1.05 s of it, one that used prompt + answer 0.1 s. */
const TPM = 60_000;

function configFor(model: string, tpmCounts: 'usage' | 'requested') {
  return configSchema.parse({
    providers: { p: { base_url: 'http://127.0.0.1:1/v1' } },
    models: { [model]: { provider: 'p', tpm: TPM, tpm_counts: tpmCounts } },
    default_model: model,
    limits: { headroom: 1 },
  });
}

function gateFor(model: string, tpmCounts: 'usage' | 'requested'): RowGate {
  const config = configFor(model, tpmCounts);
  return createRedisRowGate({ redis, space: { prefix }, store: new BatchStore(redis, { prefix }), batchId: model, config });
}

/** The limiter hash of a gate's model (keyed by its endpoint). */
function windowKey(model: string): string {
  return limiterKey(prefix, modelEndpoint(configFor(model, 'requested'), model));
}

/** The bookings a batch's line of deferred calls has served (limiter-scripts.ts RESERVE `lines`). */
async function servedInLine(key: string, line: string): Promise<number> {
  const lines = JSON.parse((await redis.hget(key, 'lines')) ?? '{}') as Record<string, [number, number, number]>;
  return lines[line]?.[1] ?? 0;
}

/**
 * A queued batch of `rows` rows as the workers run it, for `forMs`: every row asks for its slot at
 * once (workers fetch a queued batch's rows in seconds, and a waiting row holds no worker slot). A
 * row whose slot is booked calls at it and settles to what the call used (prompt + ANSWER) 20 ms
 * later; a deferred row asks again when told. Returns the calls' starts (ms after the first ask).
 */
async function runBatch(gate: RowGate, model: string, rows: number, forMs: number): Promise<{ starts: number[]; deferrals: number }> {
  const began = Date.now();
  const starts: number[] = [];
  let deferrals = 0;
  async function row(): Promise<void> {
    let ticket: number | undefined;
    while (Date.now() - began < forMs) {
      const slot = await gate.reserveCapacity(model, PROMPT + MAX_TOKENS, Number.POSITIVE_INFINITY, { promptTokens: PROMPT, turnTicket: ticket });
      if (!slot.reserved) {
        expect(slot.deferred).toBe(true);
        ticket = slot.turnTicket;
        deferrals++;
        await sleep(Math.min(Math.max(200, slot.waitMs), Math.max(0, forMs - (Date.now() - began))));
        continue;
      }
      if (Date.now() + slot.waitMs - began >= forMs) return;
      await sleep(slot.waitMs);
      starts.push(Date.now() - began);
      await sleep(20);
      const actual = PROMPT + ANSWER;
      await gate.settle({ model, slotAt: slot.slotAt, estimatedTokens: slot.tokens ?? PROMPT + MAX_TOKENS, actualTokens: actual, promptTokens: PROMPT, budgetHold: null, actualNanos: 0, health: 'success', coolDownMs: null });
      return;
    }
  }
  await Promise.all(Array.from({ length: rows }, () => row()));
  return { starts: starts.sort((a, b) => a - b), deferrals };
}

describe('tpm_counts: usage, a queued batch with max_tokens far above its answers', () => {
  it('starts calls at the pace of what they use, not of prompt + max_tokens (fails before: about 4 calls in 4 s, the max_tokens pace)', async () => {
    const { starts } = await runBatch(gateFor('metered', 'usage'), 'metered', 80, 4000);
    // 1,000 tokens a second at 100 per call: 10 calls a second once the first answer told the answers' length.
    expect(starts.length).toBeGreaterThanOrEqual(25);
    // And no faster than that: what the calls used, counted from the first start, never passes the tpm's pace.
    for (let i = 0; i < starts.length; i++) expect((i + 1) * (PROMPT + ANSWER)).toBeLessThanOrEqual(((starts[i]! - starts[0]!) / 1000) * (TPM / 60) + PROMPT + MAX_TOKENS);
  }, 20_000);

  it('books a call at its prompt + max_tokens until an answer says how long answers run, then at its prompt + that', async () => {
    const limiter = new ModelLimiter(redis, { prefix });
    const input = { model: 'figure', tpm: TPM, headroom: 1, tokens: PROMPT + MAX_TOKENS, meteredPromptTokens: PROMPT, maxWaitMs: 60_000 };
    const first = await limiter.reserve(input);
    expect(first).toMatchObject({ reserved: true, waitMs: 0, tokens: PROMPT + MAX_TOKENS });
    // Not due now, and no answer yet: nothing more is booked at max_tokens.
    const second = await limiter.reserve(input);
    expect(second).toMatchObject({ reserved: false, deferred: true });
    if (!first.reserved) throw new Error('first not reserved');
    await limiter.settle({ model: 'figure', tpm: TPM, headroom: 1, slotAt: first.slotAt, estimatedTokens: first.tokens, actualTokens: PROMPT + ANSWER, meteredPromptTokens: PROMPT });
    expect(await redis.hget(limiterKey(prefix, 'figure'), 'ans')).toBe(String(ANSWER * 1000));
    await limiter.reserve(input); // hears the figure
    const third = await limiter.reserve(input);
    if (third.reserved) expect(third.tokens).toBe(PROMPT + ANSWER);
    else expect(third).toMatchObject({ deferred: true, tokens: PROMPT + ANSWER });
  });

  /**
   * A metered limiter whose figure rests on ten answers of max_tokens (one call settled ten times,
   * each settling nothing but the figure), so calls book the whole way ahead; then twelve asks at once.
   */
  async function twelveAsksAtFullAnswers(model: string) {
    const limiter = new ModelLimiter(redis, { prefix });
    const input = { model, tpm: TPM, headroom: 1, tokens: PROMPT + MAX_TOKENS, meteredPromptTokens: PROMPT, maxWaitMs: 600_000 };
    const first = await limiter.reserve(input);
    if (!first.reserved) throw new Error('first not reserved');
    for (let i = 0; i < 10; i++) await limiter.settle({ model, tpm: TPM, headroom: 1, slotAt: first.slotAt, estimatedTokens: first.tokens, actualTokens: PROMPT + MAX_TOKENS, meteredPromptTokens: PROMPT });
    const replies = [];
    for (let i = 0; i < 12; i++) replies.push(await limiter.reserve(input));
    return { limiter, input, replies };
  }

  it('books nothing past the book-ahead: a deferred call is told when to ask again, the turns one after another', async () => {
    const model = 'deferred';
    // Answers run to max_tokens: each call holds 1.05 s of the minute, so a few fit in the 4 s book-ahead.
    const { limiter, input, replies } = await twelveAsksAtFullAnswers(model);
    const booked = replies.filter((reply) => reply.reserved);
    const deferred = replies.filter((reply) => !reply.reserved);
    expect(booked.length).toBeGreaterThanOrEqual(2);
    expect(booked.length).toBeLessThanOrEqual(5);
    for (const reply of booked) expect(reply.waitMs).toBeLessThanOrEqual(4000 + 1054);
    expect(deferred.every((reply) => !reply.reserved && reply.deferred)).toBe(true);
    const waits = deferred.map((reply) => reply.waitMs);
    // Each deferred call is told a later time than the one before it: they do not all ask again at once.
    for (let i = 1; i < waits.length; i++) expect(waits[i]!).toBeGreaterThan(waits[i - 1]!);
    // Asking again with its ticket, a call keeps its place: it is not sent behind the calls deferred after it.
    const second = deferred[1];
    if (!second || second.reserved || second.ticket === undefined) throw new Error('no second deferral');
    const again = await limiter.reserve({ ...input, turnTicket: second.ticket });
    expect(again).toMatchObject({ reserved: false, deferred: true, ticket: second.ticket });
    expect(again.waitMs).toBeLessThan(waits[waits.length - 1]!);
    // The latest booked start is within the book-ahead of Redis' clock.
    const [seconds, micros] = (await redis.time()) as [number | string, number | string];
    const lastUs = Number(await redis.hget(limiterKey(prefix, model), 'last'));
    expect(lastUs - (Number(seconds) * 1_000_000 + Number(micros))).toBeLessThanOrEqual(4_000_000);
  });

  it('tells a call that asks before its turn (rows come back out of their order) its turn again, keeping its place, and counts a booking as one (review: every ticket before it was told its turn was now, and the whole line asked again every 2 s)', async () => {
    const model = 'out-of-order';
    const { limiter, input, replies } = await twelveAsksAtFullAnswers(model);
    const tickets = replies.flatMap((reply) => (!reply.reserved && reply.ticket !== undefined ? [reply.ticket] : []));
    expect(tickets.length).toBeGreaterThanOrEqual(6);
    const served = await servedInLine(limiterKey(prefix, model), '');
    // 1.5 s on, the calls booked ahead still hold 2.5 s or more: room for one more booking, and no shortage.
    await sleep(1500);
    // The line's last call asks first: it is not booked before the calls ahead of it, and keeps its ticket.
    const last = await limiter.reserve({ ...input, turnTicket: tickets.at(-1) });
    expect(last).toMatchObject({ reserved: false, deferred: true, ticket: tickets.at(-1) });
    // The line's first is booked, and that is one booking: the calls behind it are not all due at once.
    const first = await limiter.reserve({ ...input, turnTicket: tickets[0] });
    expect(first.reserved).toBe(true);
    expect(await servedInLine(limiterKey(prefix, model), '')).toBe(served + 1);
    const second = await limiter.reserve({ ...input, turnTicket: tickets[1] });
    const secondLast = await limiter.reserve({ ...input, turnTicket: tickets.at(-2) });
    if (!second.reserved && !secondLast.reserved) expect(secondLast.waitMs).toBeGreaterThan(second.waitMs);
    if (!last.reserved) expect(last.waitMs).toBeGreaterThan(2000);
  });

  it('a stop that gives back its rows\' slots forgets the turns told to its deferred rows, so a resume is not sent behind them', async () => {
    const limiter = new ModelLimiter(redis, { prefix });
    const model = 'forgotten';
    const input = { model, tpm: TPM, headroom: 1, tokens: PROMPT + MAX_TOKENS, meteredPromptTokens: PROMPT, maxWaitMs: 600_000 };
    const first = await limiter.reserve(input);
    if (!first.reserved) throw new Error('first not reserved');
    // Ten answers of max_tokens (the same call settled ten times, each settling nothing but the figure): the figure now books the whole way ahead.
    for (let i = 0; i < 10; i++) await limiter.settle({ model, tpm: TPM, headroom: 1, slotAt: first.slotAt, estimatedTokens: first.tokens, actualTokens: PROMPT + MAX_TOKENS, meteredPromptTokens: PROMPT });
    const booked: Array<{ slotAt: number; tokens: number }> = [];
    let lastWait = 0;
    for (let i = 0; i < 40; i++) {
      const reply = await limiter.reserve(input);
      if (reply.reserved) booked.push({ slotAt: reply.slotAt, tokens: reply.tokens });
      else lastWait = reply.waitMs;
    }
    expect(lastWait).toBeGreaterThan(20_000);
    await limiter.release({ model, tpm: TPM, headroom: 1, reservations: booked, forgetTurns: { line: '' } });
    const resumed = await limiter.reserve(input);
    expect(resumed.waitMs).toBeLessThan(2000);
  });
});

describe('the running figure of answers', () => {
  it('is the plain mean of the first answers, not the first answer weighted up', async () => {
    const limiter = new ModelLimiter(redis, { prefix });
    const model = 'mean';
    const first = await limiter.reserve({ model, tpm: TPM, headroom: 1, tokens: PROMPT + MAX_TOKENS, meteredPromptTokens: PROMPT, maxWaitMs: 60_000 });
    if (!first.reserved) throw new Error('not reserved');
    for (const answer of [120, 20]) await limiter.settle({ model, tpm: TPM, headroom: 1, slotAt: first.slotAt, estimatedTokens: first.tokens, actualTokens: PROMPT + answer, meteredPromptTokens: PROMPT });
    expect(await redis.hmget(limiterKey(prefix, model), 'ans', 'anc')).toEqual(['70000', '2']);
  });
});

describe('settled credit', () => {
  it('is carried to the next booking when calls booked after it keep the next start from moving back', async () => {
    const limiter = new ModelLimiter(redis, { prefix });
    const model = 'credit';
    // 100 tokens a second: a call booked at 100 tokens holds 1 s of the pace.
    const input = { model, tpm: 6000, headroom: 1, tokens: 100, maxWaitMs: 600_000 };
    const slots: number[] = [];
    for (let i = 0; i < 3; i++) {
      const reply = await limiter.reserve(input);
      if (!reply.reserved) throw new Error('not reserved');
      slots.push(reply.slotAt);
    }
    // The first two used 30 each: 1.4 s given back, of which 1 s moves the next start back to the third's (no start before it).
    for (const slotAt of slots.slice(0, 2)) await limiter.settle({ model, tpm: 6000, headroom: 1, slotAt, estimatedTokens: 100, actualTokens: 30 });
    const fourth = await limiter.reserve(input);
    const fifth = await limiter.reserve(input);
    if (!fourth.reserved || !fifth.reserved) throw new Error('not reserved');
    expect(fourth.slotAt).toBe(slots[2]);
    // The 0.4 s that could not move it back shortens the fourth call's share: the fifth starts 0.6 s after it, not 1 s (as before: the credit was lost).
    expect(fifth.slotAt - fourth.slotAt).toBeGreaterThanOrEqual(595);
    expect(fifth.slotAt - fourth.slotAt).toBeLessThanOrEqual(605);
  });
});

describe('tpm_counts: requested never overshoots', () => {
  it('books every call at prompt + max_tokens and starts them no faster than those fit in the tpm, however little they used', async () => {
    const model = 'requested';
    const { starts } = await runBatch(gateFor(model, 'requested'), model, 30, 4000);
    // 1.054 s of the minute's tokens per call: at most 4 starts in 4 s, each at least 1.054 s after the one before.
    expect(starts.length).toBeLessThanOrEqual(4);
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(1054 - 25);
    // Nothing given back: the model's window holds whole bookings of prompt + max_tokens, the started ones among them.
    const sum = Number(await redis.hget(windowKey(model), 'sum'));
    expect(sum % (PROMPT + MAX_TOKENS)).toBe(0);
    expect(sum).toBeGreaterThanOrEqual(starts.length * (PROMPT + MAX_TOKENS));
  }, 20_000);
});
