import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { CallsStopped } from '../../src/execution/call-slots.ts';
import { createRedisRowGate } from '../../src/execution/redis-row-gate.ts';
import type { CallSettlement, RowGate } from '../../src/execution/row-gate.ts';
import { freshProgress, type RoutePlan } from '../../src/execution/row-progress.ts';
import { advanceRow, type RowInput, type RowRunnerDeps } from '../../src/execution/row-runner.ts';
import { callCostNanos, nanosToUsd, usdToNanos } from '../../src/models/pricing.ts';
import { createProviderClients } from '../../src/models/provider-clients.ts';
import { countMessageTokens } from '../../src/routing/token-count.ts';
import { startSimulator, type Simulator } from '../../src/sim/server.ts';
import { BatchStore } from '../../src/queue/batch-state.ts';
import { openRowGate } from '../helpers/open-row-gate.ts';
import { cleanupPrefix, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';

/** The row runner's decisions, against the simulator over HTTP, with an in-memory gate. */
describe('advanceRow', () => {
  let sim: Simulator;
  beforeAll(async () => {
    sim = await startSimulator({ models: { broken: { fail_status: 500 }, invalid: { fail_status: 400 }, missing: { fail_status: 404 }, gated: { fail_status: 403 }, throttled: { fail_status: 429 } } });
  });
  afterAll(() => sim.close());

  const row: RowInput = { batchId: 'b', row: 1, id: 'r1', messages: [{ role: 'user', content: 'Hello' }], metadata: {} };

  function setup(chain: string[], gate: Partial<RowGate> = {}, extra: Record<string, unknown> = {}, planExtra: Partial<RoutePlan> = {}) {
    const models = Object.fromEntries(['ok', 'broken', 'invalid', 'missing', 'limited', 'gated', 'throttled'].map((m) => [m, { provider: 'sim', price: { input_per_mtok: 1, output_per_mtok: 2 } }]));
    const config = parseConfig({ providers: { sim: { base_url: sim.url } }, models, default_model: 'ok', retry: { max_attempts: 3, base_delay_ms: 1, max_delay_ms: 5 }, ...extra }, 'test');
    const plan: RoutePlan = { taskType: 'simple', routeReason: 'test', chain, skipped: [], promptTokens: 5, promptTokensCounted: false, ...planExtra };
    const { gate: fullGate, settled } = openRowGate(gate);
    const deps: RowRunnerDeps = { config, providers: createProviderClients(config), gate: fullGate, plan: async () => ({ plan, calls: [] }), sleep: async () => undefined };
    return { deps, settled };
  }

  it('answers on the first model and records one call', async () => {
    const { deps, settled } = setup(['ok']);
    const step = await advanceRow(row, freshProgress(), deps);
    expect(step.kind).toBe('finished');
    if (step.kind !== 'finished') return;
    expect(step.event.result).toMatchObject({ status: 'succeeded', final_model: 'ok', attempts: 1, fallback_reason: null });
    expect(step.event.calls).toHaveLength(1);
    expect(settled).toEqual(['ok:success']);
  });

  it('retries a 500 up to max_attempts, then falls back, with a cost record per call', async () => {
    const { deps, settled } = setup(['broken', 'ok']);
    const step = await advanceRow(row, freshProgress(), deps);
    if (step.kind !== 'finished') throw new Error('expected finished');
    expect(step.event.result).toMatchObject({ status: 'succeeded', final_model: 'ok', models_tried: ['broken', 'ok'] });
    expect(step.event.result.fallback_reason).toContain('broken: server_error after 3 attempts');
    expect(step.event.calls.map((c) => `${c.model}#${c.attempt}@${c.chain_position}`)).toEqual(['broken#1@0', 'broken#2@0', 'broken#3@0', 'ok#1@1']);
    expect(settled.filter((s) => s === 'broken:failure')).toHaveLength(3);
  });

  it('says a model left after its one attempt in the singular', async () => {
    const { deps } = setup(['broken', 'ok'], {}, { retry: { max_attempts: 1, base_delay_ms: 1, max_delay_ms: 5 } });
    const step = await advanceRow(row, freshProgress(), deps);
    if (step.kind !== 'finished') throw new Error('expected finished');
    expect(step.event.result.fallback_reason).toBe('broken: server_error after 1 attempt');
  });

  it('fails at once on a 400 (no retry, no fallback) and goes on after a 404', async () => {
    const bad = setup(['invalid', 'ok']);
    const badStep = await advanceRow(row, freshProgress(), bad.deps);
    if (badStep.kind !== 'finished') throw new Error('expected finished');
    expect(badStep.event.result).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'bad_request', http_status: 400 } });

    const missing = setup(['missing', 'ok']);
    const missingStep = await advanceRow(row, freshProgress(), missing.deps);
    if (missingStep.kind !== 'finished') throw new Error('expected finished');
    expect(missingStep.event.result).toMatchObject({ status: 'succeeded', final_model: 'ok' });
    expect(missingStep.event.result.fallback_reason).toContain('not found');
  });

  it('says what to do about a 403 (not retried) and a 429 (here past limits.max_wait_ms)', async () => {
    const gated = await advanceRow(row, freshProgress(), setup(['gated', 'ok']).deps);
    if (gated.kind !== 'finished') throw new Error('expected finished');
    expect(gated.event.result).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'forbidden', http_status: 403 } });
    expect(gated.event.result.error?.message).toMatch(/refused access \(403\): .*; check that the key may use this model/);

    // With on_limit fallback, a retry-after past max_wait_ms sends the row on to the next model rather than parking it...
    const fallback = { limits: { on_limit: 'fallback', max_wait_ms: 0 } };
    const throttled = await advanceRow(row, freshProgress(), setup(['throttled', 'ok'], {}, fallback).deps);
    if (throttled.kind !== 'finished') throw new Error('expected finished');
    expect(throttled.event.result).toMatchObject({ status: 'succeeded', final_model: 'ok' });
    expect(throttled.event.result.fallback_reason).toMatch(/^throttled: rate limited for \S+ s, over limits\.max_wait_ms$/);
    expect(throttled.event.calls.map((call) => call.model)).toEqual(['throttled', 'ok']);
    // ...but the chain's last model has none to send it to: the row waits out the retry-after (parked) and calls it again, as under `wait`.
    const last = await advanceRow(row, freshProgress(), setup(['throttled'], {}, fallback).deps);
    if (last.kind !== 'park') throw new Error(`expected park, got ${last.kind}`);
    expect(last.progress.calls.map((call) => call.model)).toEqual(['throttled']);
    expect(last.progress).toMatchObject({ chainIndex: 0, retryAt: expect.any(Number) });

    // Under `wait`, a 429 whose attempts are used up fails the row, saying what paces the calls.
    const spent = await advanceRow(row, freshProgress(), setup(['throttled'], {}, { limits: { inline_wait_ms: 60_000 } }).deps);
    if (spent.kind !== 'finished') throw new Error(`expected finished, got ${spent.kind}`);
    expect(spent.event.result).toMatchObject({ status: 'failed', error: { code: 'rate_limited', http_status: 429 } });
    expect(spent.event.result.error?.message).toMatch(/^throttled failed: rate_limited after 3 attempts; the last call's error: .* is rate limited \(429\): .*; models\.throttled\.rpm and tpm, set to the provider's limits, pace every worker's calls below them\.$/);
  });

  it('records no call and no attempt when the key is rejected while the row waits for its call slot', async () => {
    const { deps, settled } = setup(['ok']);
    // Another row's call is answered 401 while this one waits for a slot: its request never goes out.
    deps.callSlot = async (call) => {
      deps.providers.get('sim')!.keyRejection.record('model "ok" rejected the API key (401)');
      return call();
    };
    const step = await advanceRow(row, freshProgress(), deps);
    if (step.kind !== 'finished') throw new Error('expected finished');
    expect(step.event.calls).toEqual([]);
    expect(step.event.result).toMatchObject({ status: 'failed', attempts: 0, error: { code: 'unauthorized', http_status: null, message: expect.stringMatching(/^not sent, the key was just rejected/) } });
    expect(settled).toEqual(['ok:neutral']); // its rate-limit slot and budget hold handed back
  });

  it('parks for the resume a row whose call failed while the process was stopping, though the failure opened the circuit (QA: a Ctrl-C with every stream stalled failed the rows, exit 1)', async () => {
    let stopping = false;
    let open = false;
    const { deps, settled } = setup(['broken', 'ok'], {
      breaker: async () => (open ? { allowed: false, retryInMs: 30_000, lastError: 'failed with 500' } : { allowed: true, retryInMs: 0 }),
      settle: async (settlement) => {
        settled.push(`${settlement.model}:${settlement.health}`);
        open = settlement.health === 'failure';
        return open ? 'open' : undefined;
      },
    });
    // The stop comes while the call is in flight; the call ends (a 500) and its failure opens the circuit.
    deps.callSlot = async (call) => {
      stopping = true;
      return call();
    };
    deps.stopping = () => stopping;
    const step = await advanceRow(row, freshProgress(), deps);
    if (step.kind !== 'park') throw new Error(`expected park, got ${step.kind}`);
    expect(step.progress.calls.map((call) => `${call.model}:${call.status}`)).toEqual(['broken:failed']);
    expect(step.progress).toMatchObject({ chainIndex: 0, attempt: 1 });
    expect(settled).toEqual(['broken:failure']);
  });

  it('gives back the rate-limit slot it booked when the process stops while the row waits for a call slot (review: each such row kept one, and the resume waited behind them)', async () => {
    const redis = new Redis(testRedisUrl());
    const prefix = uniquePrefix('row-runner-stop-slot');
    try {
      // rpm 6: one request every 10 s; the stop comes as the row waits for a call slot.
      const { deps } = setup(['limited'], {}, { models: { limited: { provider: 'sim', rpm: 6, price: { input_per_mtok: 1, output_per_mtok: 2 } } }, default_model: 'limited' });
      deps.gate = createRedisRowGate({ redis, space: { prefix }, store: new BatchStore(redis, { prefix }), batchId: 'b', config: deps.config });
      deps.callSlot = async () => {
        throw new CallsStopped();
      };
      const step = await advanceRow(row, freshProgress(), deps);
      expect(step.kind).toBe('park');
      expect(step.kind === 'park' && step.progress.calls).toEqual([]);
      // The slot it booked is free again: the resume's first call need not wait 10 s behind nobody.
      const next = await deps.gate.reserveCapacity('limited', 5 + 1024, Number.POSITIVE_INFINITY);
      expect(next).toMatchObject({ reserved: true, waitMs: 0 });
    } finally {
      await cleanupPrefix(redis, prefix);
      redis.disconnect();
    }
  });

  it('parks the row until shortly before its slot, then sleeps the rest and calls without re-booking', async () => {
    let reservations = 0;
    let clock = 1_000_000;
    const slept: number[] = [];
    const { deps } = setup(['limited'], { reserveCapacity: async () => ({ reserved: true, waitMs: 5_000, slotAt: 123 + reservations++ }) });
    deps.now = () => clock;
    deps.sleep = async (ms) => void slept.push(ms);
    const first = await advanceRow(row, freshProgress(), deps);
    // Woken one second early: BullMQ queues a due delayed job behind the waiting ones.
    expect(first).toMatchObject({ kind: 'park', waitMs: 4_000 });
    if (first.kind !== 'park') return;
    expect(first.progress).toMatchObject({ reservedModel: 'limited', slotAt: 123, wakeAt: 1_005_000, attempt: 0 });
    clock += 4_100;
    // The job comes back with its progress (as BullMQ hands back the updated data).
    const second = await advanceRow(row, JSON.parse(JSON.stringify(first.progress)), deps);
    expect(second.kind).toBe('finished');
    expect(slept).toEqual([900]);
    expect(reservations).toBe(1);
  });

  it("records in the call how long the model's rate limits made it wait, over parks and asks, for the summary (QA: another batch on the same limits set the pace, and the summary said nothing)", async () => {
    let clock = 1_000_000;
    let asks = 0;
    // Deferred 30 s (a metered tpm), then booked 5 s ahead: 35 s waited in all.
    const { deps } = setup(['limited'], {
      reserveCapacity: async () => (++asks === 1 ? { reserved: false, waitMs: 30_000, limitedBy: 'tokens', deferred: true, turnTicket: 3 } : { reserved: true, waitMs: 5_000, slotAt: 9, limitedBy: 'requests' }),
    });
    deps.now = () => clock;
    let step = await advanceRow(row, freshProgress(), deps);
    while (step.kind === 'park') {
      clock += step.waitMs;
      step = await advanceRow(row, JSON.parse(JSON.stringify(step.progress)), deps);
    }
    expect(step.kind === 'finished' && step.event.calls.map((call) => call.limit_wait_ms)).toEqual([35_000]);
    // Woken 5 s into a 30 s wait (another batch's budget refusal wakes every parked row) and let through at once: 5 s
    // waited, not the 30 s it was first told (review: a wait cut short was counted whole, and again when told anew).
    clock = 1_000_000;
    asks = 0;
    const { deps: early } = setup(['limited'], {
      reserveCapacity: async () => (++asks === 1 ? { reserved: false, waitMs: 30_000, limitedBy: 'tokens', deferred: true, turnTicket: 3 } : asks === 2 ? { reserved: false, waitMs: 20_000, limitedBy: 'tokens', deferred: true, turnTicket: 3 } : { reserved: true, waitMs: 0, slotAt: 9, limitedBy: null }),
    });
    early.now = () => clock;
    let earlyStep = await advanceRow(row, freshProgress(), early);
    for (const after of [5_000, 20_000]) {
      if (earlyStep.kind !== 'park') throw new Error('expected park');
      clock += after;
      earlyStep = await advanceRow(row, JSON.parse(JSON.stringify(earlyStep.progress)), early);
    }
    expect(earlyStep.kind === 'finished' && earlyStep.event.calls.map((call) => call.limit_wait_ms)).toEqual([25_000]);
    // A call that waited for no slot says nothing of it.
    const { deps: open } = setup(['ok']);
    const unlimited = await advanceRow(row, freshProgress(), open);
    expect(unlimited.kind === 'finished' && unlimited.event.calls[0]).not.toHaveProperty('limit_wait_ms');
  });

  it('parks holding nothing when its slot is too far ahead to book (a provider that meters usage), then books, and settles from what it booked', async () => {
    const limitedModels = { models: { ok: { provider: 'sim' }, limited: { provider: 'sim', tpm: 40_000 } } };
    let clock = 1_000_000;
    const asked: Array<{ promptTokens: number; turnTicket?: number | undefined } | undefined> = [];
    const settlements: CallSettlement[] = [];
    const { deps } = setup(
      ['limited'],
      {
        reserveCapacity: async (_model, _tokens, _maxWaitMs, call) => {
          asked.push(call);
          // The first ask: its turn is 30 s away, nothing booked; the second (with its ticket): booked at its prompt + the answers' running length.
          return asked.length === 1 ? { reserved: false, waitMs: 30_000, limitedBy: 'tokens', deferred: true, turnTicket: 7, tokens: 5 + 70 } : { reserved: true, waitMs: 0, slotAt: 42, tokens: 5 + 70 };
        },
        settle: async (settlement) => void settlements.push(settlement),
      },
      limitedModels,
    );
    deps.now = () => clock;
    const first = await advanceRow(row, freshProgress(), deps);
    if (first.kind !== 'park') throw new Error(`expected park, got ${first.kind}`);
    expect(first.waitMs).toBe(30_000);
    expect(first.progress.reservedModel).toBeUndefined();
    expect(first.progress.turnTicket).toEqual({ model: 'limited', ticket: 7, since: 1_000_000 });
    expect(first.note).toContain('tpm_counts: usage');
    clock += 30_000;
    const second = await advanceRow(row, JSON.parse(JSON.stringify(first.progress)), deps);
    expect(second.kind).toBe('finished');
    expect(asked).toEqual([{ promptTokens: 5, turnTicket: undefined }, { promptTokens: 5, turnTicket: 7 }]);
    expect(second.kind === 'finished' && second.event.calls).toHaveLength(1);
    expect(settlements).toHaveLength(1);
    expect(settlements[0]).toMatchObject({ slotAt: 42, estimatedTokens: 75, promptTokens: 5, health: 'success' });
  });

  it('with on_limit fallback, a row deferred by a metered tpm waits max_wait_ms in all, not max_wait_ms at each ask (review: 15 of 115 rows waited up to 11.5 s at max_wait_ms 10 s)', async () => {
    const limitedModels = { models: { ok: { provider: 'sim' }, limited: { provider: 'sim', tpm: 40_000 } }, limits: { on_limit: 'fallback', max_wait_ms: 30_000 } };
    let clock = 1_000_000;
    const asked: number[] = [];
    const { deps } = setup(
      ['limited', 'ok'],
      {
        // Its turn keeps coming 25 s away (the calls before it used more than the running mean): within the wait it is given, each time.
        reserveCapacity: async (model, _tokens, maxWaitMs) => {
          if (model !== 'limited') return { reserved: true, waitMs: 0, slotAt: 0 };
          asked.push(maxWaitMs);
          return maxWaitMs >= 25_000 ? { reserved: false, waitMs: 25_000, limitedBy: 'tokens', deferred: true, turnTicket: 7, tokens: 75 } : { reserved: false, waitMs: 25_000, limitedBy: 'tokens' };
        },
      },
      limitedModels,
    );
    deps.now = () => clock;
    const first = await advanceRow(row, freshProgress(), deps);
    if (first.kind !== 'park') throw new Error(`expected park, got ${first.kind}`);
    clock += 25_000;
    const second = await advanceRow(row, JSON.parse(JSON.stringify(first.progress)), deps);
    if (second.kind !== 'finished') throw new Error(`expected finished, got ${second.kind}`);
    expect(asked).toEqual([30_000, 5_000]);
    expect(second.event.result).toMatchObject({ status: 'succeeded', final_model: 'ok' });
    expect(second.event.result.fallback_reason).toMatch(/limited: rate limited \(tokens\)/);
    // Back an hour after it was deferred (its run killed, then resumed): that was no wait for a slot, and it asks afresh.
    clock += 3_600_000;
    const resumed = await advanceRow(row, JSON.parse(JSON.stringify(first.progress)), deps);
    expect(resumed.kind).toBe('park');
    expect(asked.at(-1)).toBe(30_000);
  });

  it("says why a row waits long for its slot, tpm or rpm, once the wait is long enough to pass for a stall (QA: runs at 0.6 rows/s said only \"no row finished\")", async () => {
    const limitedModels = { models: { ok: { provider: 'sim' }, limited: { provider: 'sim', rpm: 60, tpm: 40_000 } } };
    const parkedFor = async (waitMs: number, limitedBy: 'requests' | 'tokens') => {
      const { deps } = setup(['limited'], { reserveCapacity: async () => ({ reserved: true, waitMs, slotAt: 1, limitedBy }) }, limitedModels);
      const step = await advanceRow(row, freshProgress(), deps);
      if (step.kind !== 'park') throw new Error('expected park');
      return step.note;
    };
    // The row books its prompt (5) and the config's max_tokens (1024): 39,200 tokens a minute hold 38 such calls.
    expect(await parkedFor(40_000, 'tokens')).toBe(
      "rows wait for limited's rate limit: each call books its prompt and max_tokens (1,029 tokens for this row) against models.limited.tpm (40,000, shared by every worker on its endpoint, the batches on it taking turns), so about 38 such calls start a minute, and this row's turn is 40 s away; a max_tokens nearer the answers' length lets more calls start, and so does models.limited.tpm_counts: usage where the provider counts the tokens calls use rather than max_tokens (OpenAI counts max_tokens)",
    );
    expect(await parkedFor(75_000, 'requests')).toBe(
      "rows wait for limited's rate limit: models.limited.rpm (60, shared by every worker on its endpoint, the batches on it taking turns) lets one call start every 1.0 s, and this row's turn is 75 s away",
    );
    // A fast pace is said as calls a second, at limits.headroom (0.98) of rpm (QA: 6,000 rpm read "lets one call start every 0.0 s").
    const { deps: fastDeps } = setup(['fast'], { reserveCapacity: async () => ({ reserved: true, waitMs: 34_000, slotAt: 1, limitedBy: 'requests' }) }, { models: { ok: { provider: 'sim' }, fast: { provider: 'sim', rpm: 6_000 } } });
    const fastStep = await advanceRow(row, freshProgress(), fastDeps);
    expect(fastStep.kind === 'park' && fastStep.note).toBe(
      "rows wait for fast's rate limit: models.fast.rpm (6,000, shared by every worker on its endpoint, the batches on it taking turns) lets about 98 calls start a second, and this row's turn is 34 s away",
    );
    // Between one and a few calls a second: said with its tenth, never "about 1 calls" (70 rpm at 0.98 is 1.14 a second).
    const { deps: briskDeps } = setup(['brisk'], { reserveCapacity: async () => ({ reserved: true, waitMs: 34_000, slotAt: 1, limitedBy: 'requests' }) }, { models: { ok: { provider: 'sim' }, brisk: { provider: 'sim', rpm: 70 } } });
    const briskStep = await advanceRow(row, freshProgress(), briskDeps);
    expect(briskStep.kind === 'park' && briskStep.note).toContain('models.brisk.rpm (70, shared by every worker on its endpoint, the batches on it taking turns) lets about 1.1 calls start a second,');
    const { deps: steadyDeps } = setup(['steady'], { reserveCapacity: async () => ({ reserved: true, waitMs: 34_000, slotAt: 1, limitedBy: 'requests' }) }, { models: { ok: { provider: 'sim' }, steady: { provider: 'sim', rpm: 62 } } });
    const steadyStep = await advanceRow(row, freshProgress(), steadyDeps);
    expect(steadyStep.kind === 'park' && steadyStep.note).toContain('lets one call start every 1.0 s,');
    // A short wait is the pace working as it should: nothing to say.
    expect(await parkedFor(5_000, 'tokens')).toBeUndefined();
  });

  it("asks the breaker again when it comes back for its slot (QA: a down provider was called at the pace of its rpm)", async () => {
    let clock = 1_000_000;
    const released: string[] = [];
    const { deps } = setup(['limited', 'ok'], {
      breaker: async (model) => (model === 'limited' && clock > 1_000_000 ? { allowed: false, retryInMs: 20_000, lastError: 'connect ECONNREFUSED' } : { allowed: true, retryInMs: 0 }),
      reserveCapacity: async (model) => (model === 'limited' ? { reserved: true, waitMs: 5_000, slotAt: 7 } : { reserved: true, waitMs: 0, slotAt: 0 }),
      releaseSlot: async (model) => void released.push(model),
    });
    deps.now = () => clock;
    deps.sleep = async () => undefined;
    const first = await advanceRow(row, freshProgress(), deps);
    if (first.kind !== 'park') throw new Error('expected park');
    clock += 4_100; // the circuit opened meanwhile
    const second = await advanceRow(row, JSON.parse(JSON.stringify(first.progress)), deps);
    if (second.kind !== 'finished') throw new Error('expected finished');
    expect(second.event.calls.map((c) => c.model)).toEqual(['ok']);
    expect(second.event.result.fallback_reason).toContain('limited: circuit open after repeated failures');
    expect(released).toEqual(['limited']);
  });

  it("books again when it wakes well after its slot (QA: every slot passed while the workers were stopped was used at once, over rpm)", async () => {
    let reservations = 0;
    let clock = 1_000_000;
    const { deps } = setup(['limited'], { reserveCapacity: async () => ({ reserved: true, waitMs: reservations++ === 0 ? 5_000 : 3_000, slotAt: 123 + reservations }) });
    deps.now = () => clock;
    deps.sleep = async () => undefined;
    const first = await advanceRow(row, freshProgress(), deps);
    if (first.kind !== 'park') throw new Error('expected park');
    // The worker was away for 30 s: the slot passed long ago.
    clock += 35_000;
    const second = await advanceRow(row, JSON.parse(JSON.stringify(first.progress)), deps);
    expect(reservations).toBe(2);
    expect(second).toMatchObject({ kind: 'park', waitMs: 2_000, progress: { reservedModel: 'limited', wakeAt: clock + 3_000 } });
  });

  it('once the budget is spent, refuses a row of a rate-limited model before it books or waits out a slot', async () => {
    let reservations = 0;
    const released: string[] = [];
    const spent = setup(['limited'], {
      budgetRefusal: async () => 'not run: spent',
      reserveCapacity: async () => ({ reserved: true, waitMs: 60_000, slotAt: ++reservations }),
      releaseSlot: async (model, slotAt, tokens) => void released.push(`${model}@${slotAt}:${tokens}`),
    }, {
      models: { limited: { provider: 'sim', rpm: 10, price: { input_per_mtok: 1, output_per_mtok: 2 } } },
      default_model: 'limited',
    });
    // Woken from its park (the batch's parked rows are woken once a row is refused), holding a slot a minute away.
    const step = await advanceRow(row, { ...freshProgress(), reservedModel: 'limited', reservedTokens: 40, slotAt: 77, wakeAt: Date.now() + 60_000 }, spent.deps);
    if (step.kind !== 'finished') throw new Error('expected finished');
    expect(step.event.result).toMatchObject({ status: 'failed', error: { code: 'budget_exceeded', message: 'not run: spent' }, attempts: 0 });
    expect(reservations).toBe(0);
    // The slot it held goes back, for the calls after it.
    expect(released).toEqual(['limited@77:40']);
    // A model with no rate limit waits for no slot: it is not asked (reserveBudget decides, as before).
    let asked = 0;
    const unlimited = setup(['ok'], {
      budgetRefusal: async () => {
        asked++;
        return null;
      },
    });
    expect((await advanceRow(row, freshProgress(), unlimited.deps)).kind).toBe('finished');
    expect(asked).toBe(0);
  });

  it('a row woken before the end of its retry backoff parks again for the rest, without calling', async () => {
    let clock = 1_000_000;
    // Every backoff parks (no wait in the worker), whatever the jitter draws.
    const { deps } = setup(['throttled', 'ok'], {}, { retry: { max_attempts: 3, base_delay_ms: 10_000, max_delay_ms: 10_000 }, limits: { inline_wait_ms: 0 } });
    deps.now = () => clock;
    const first = await advanceRow(row, freshProgress(), deps);
    if (first.kind !== 'park') throw new Error('expected park');
    expect(first.progress.retryAt).toBe(clock + first.waitMs);
    const calls = first.progress.calls.length;
    const earlyBy = Math.ceil(first.waitMs / 2);
    clock += first.waitMs - earlyBy; // woken early
    const early = await advanceRow(row, JSON.parse(JSON.stringify(first.progress)), deps);
    if (early.kind !== 'park') throw new Error('expected park');
    expect(early.waitMs).toBe(earlyBy);
    expect(early.progress.calls).toHaveLength(calls);
  });

  it('with on_limit fallback, a model limited for longer than max_wait_ms sends the row to the next model', async () => {
    const { deps } = setup(['limited', 'ok'], {
      reserveCapacity: async (model, _tokens, maxWaitMs) => (model === 'limited' ? { reserved: false, waitMs: maxWaitMs + 1, limitedBy: 'requests' } : { reserved: true, waitMs: 0, slotAt: 0 }),
    }, { limits: { on_limit: 'fallback', max_wait_ms: 1000 } });
    const step = await advanceRow(row, freshProgress(), deps);
    if (step.kind !== 'finished') throw new Error('expected finished');
    expect(step.event.result).toMatchObject({ final_model: 'ok', models_tried: ['ok'] });
    expect(step.event.result.fallback_reason).toMatch(/limited: rate limited \(requests\)/);
  });

  it("with on_limit fallback, the chain's last model waits for its rate-limit slot: it has no model to send the row to (QA: rows failed no_model_available at limits a wait would meet)", async () => {
    const asked: Array<[string, number]> = [];
    const { deps } = setup(['limited'], {
      reserveCapacity: async (model, _tokens, maxWaitMs) => {
        asked.push([model, maxWaitMs]);
        return { reserved: true, waitMs: 0, slotAt: 0 };
      },
    }, { limits: { on_limit: 'fallback', max_wait_ms: 1000 } });
    const step = await advanceRow(row, freshProgress(), deps);
    if (step.kind !== 'finished') throw new Error('expected finished');
    expect(step.event.result).toMatchObject({ status: 'succeeded', final_model: 'limited' });
    expect(asked).toEqual([['limited', Number.POSITIVE_INFINITY]]);
  });

  it('with on_limit fallback, a model limited past max_wait_ms whose later models all have their circuits open waits for its slot rather than failing the row (review)', async () => {
    const open = { breaker: async (model: string) => (model === 'broken' ? { allowed: false, retryInMs: 30_000 } : { allowed: true, retryInMs: 0 }) };
    const asked: number[] = [];
    const limited = setup(['limited', 'broken'], {
      ...open,
      reserveCapacity: async (_model, _tokens, maxWaitMs) => {
        asked.push(maxWaitMs);
        return maxWaitMs < 5000 ? { reserved: false, waitMs: 5000, limitedBy: 'requests' } : { reserved: true, waitMs: 5000, slotAt: 0 };
      },
    }, { limits: { on_limit: 'fallback', max_wait_ms: 1000 } });
    const step = await advanceRow(row, freshProgress(), limited.deps);
    if (step.kind !== 'park') throw new Error(`expected park, got ${step.kind === 'finished' ? step.event.result.error?.message : 'another step'}`);
    expect(step.progress).toMatchObject({ chainIndex: 0, reservedModel: 'limited' });
    expect(asked).toEqual([1000, Number.POSITIVE_INFINITY]);

    // A 429 whose retry-after is past max_wait_ms: waited out on the model, as its fallback is down.
    const throttled = await advanceRow(row, freshProgress(), setup(['throttled', 'broken'], open, { limits: { on_limit: 'fallback', max_wait_ms: 0 } }).deps);
    if (throttled.kind !== 'park') throw new Error(`expected park, got ${throttled.kind}`);
    expect(throttled.progress).toMatchObject({ chainIndex: 0, retryAt: expect.any(Number) });
  });

  it("says what the last call said when the whole chain failed, and that no model was available when none could be called", async () => {
    // The circuit opens after broken's three 500s: the next model's reason alone would hide the cause.
    const failing = setup(['broken', 'limited'], { breaker: async (model) => ({ allowed: model === 'broken', retryInMs: 30_000 }) });
    const failed = await advanceRow(row, freshProgress(), failing.deps);
    if (failed.kind !== 'finished') throw new Error('expected finished');
    expect(failed.event.result.error?.code).toBe('server_error');
    expect(failed.event.result.model).toBe('broken'); // the model it called, not "limited", which it could not
    expect(failed.event.result.error?.message).toMatch(
      /^every model in the chain failed; the last call's error: model "broken" at \S+ failed with 500: The server had an error while processing your request\. Sorry about that! By model: broken: server_error after 3 attempts; limited: circuit open after repeated failures \(next probe in 30 s, at \d\d:\d\d:\d\d UTC\)$/,
    );

    const closed = setup(['broken', 'limited'], { breaker: async () => ({ allowed: false, retryInMs: 30_000 }) });
    const none = await advanceRow(row, freshProgress(), closed.deps);
    if (none.kind !== 'finished') throw new Error('expected finished');
    expect(none.event.result.model).toBe('broken'); // its first choice
    expect(none.event.result.error).toMatchObject({
      code: 'no_model_available',
      message: expect.stringMatching(/^no model was available: broken: circuit open after repeated failures \(next probe in 30 s, at \d\d:\d\d:\d\d UTC\); limited: circuit open after repeated failures \(next probe in 30 s, at \d\d:\d\d:\d\d UTC\)$/),
    });
  });

  it('says what became of each model in the order the row met them, skips included, in the terms of the config (QA: "b: skipped" came before "bad: server_error", bad being called first)', async () => {
    const skip = { model: 'wide', reason: 'context window 800 < 1207 prompt + 64 output tokens', at: 1, contextWindow: 800 };
    // Pinned to broken, whose fallbacks are [wide, ok]: broken is called and fails, wide is skipped, ok answers.
    const pinned = { routeReason: 'row model "broken"', skipped: [skip], chainFrom: 'models.broken.fallbacks' };
    const answered = await advanceRow(row, freshProgress(), setup(['broken', 'ok'], {}, {}, pinned).deps);
    if (answered.kind !== 'finished') throw new Error('expected finished');
    expect(answered.event.result).toMatchObject({ status: 'succeeded', final_model: 'ok' });
    expect(answered.event.result.fallback_reason).toBe(`broken: server_error after 3 attempts; wide: skipped, ${skip.reason}`);

    // Its fallbacks all skipped: the row fails on broken, and its error's "By model" names the skip too, after broken.
    const failed = await advanceRow(row, freshProgress(), setup(['broken'], {}, {}, pinned).deps);
    if (failed.kind !== 'finished') throw new Error('expected finished');
    expect(failed.event.result.fallback_reason).toBe(`broken: server_error after 3 attempts; wide: skipped, ${skip.reason}`);
    expect(failed.event.result.error?.message).toMatch(
      /^broken and its fallbacks \(models\.broken\.fallbacks\) failed; the last call's error: model "broken" at \S+ failed with 500: .*! By model: broken: server_error after 3 attempts; wide: skipped, context window 800 < 1207 prompt \+ 64 output tokens$/,
    );

    // A skip before the first model called comes first, one between two called models between them.
    const routed = { skipped: [{ ...skip, at: 0 }, { ...skip, model: 'mid', at: 1 }], chainFrom: 'routing.routes.simple' };
    const both = await advanceRow(row, freshProgress(), setup(['broken', 'missing'], {}, {}, routed).deps);
    if (both.kind !== 'finished') throw new Error('expected finished');
    expect(both.event.result.error?.message).toMatch(/^every model of routing\.routes\.simple failed; the last call's error: .* By model: wide: skipped, .*; broken: server_error after 3 attempts; mid: skipped, .*; missing: .*not found/);

    // One model, no fallbacks: no chain to speak of, that model's failure is said.
    const alone = await advanceRow(row, freshProgress(), setup(['broken'], {}, {}, { routeReason: 'row model "broken"', chainFrom: 'models.broken.fallbacks' }).deps);
    if (alone.kind !== 'finished') throw new Error('expected finished');
    expect(alone.event.result.error?.message).toMatch(/^broken failed: server_error after 3 attempts; the last call's error: model "broken" at \S+ failed with 500: The server had an error while processing your request\. Sorry about that!$/);

    // Its circuit shut by its first failure: the reason quotes that error, which is not said a second time (QA).
    let shutBy: string | undefined;
    const shut = setup(['broken'], {
      breaker: async () => (shutBy ? { allowed: false, retryInMs: 20_000, lastError: shutBy } : { allowed: true, retryInMs: 0 }),
      settle: async (settlement) => void (shutBy = settlement.failureMessage ?? shutBy),
    }, {}, { routeReason: 'row model "broken"', chainFrom: 'models.broken.fallbacks' });
    const shutStep = await advanceRow(row, freshProgress(), shut.deps);
    if (shutStep.kind !== 'finished') throw new Error('expected finished');
    expect(shutStep.event.result.error?.message).toMatch(/^broken failed: circuit open after repeated failures \(last error: model "broken" at \S+ failed with 500: The server had an error while processing your request\. Sorry about that!; next probe in 20 s, at \d\d:\d\d:\d\d UTC\)$/);
  });

  it('skips a model whose circuit is open, and stops with budget_exceeded when the budget refuses', async () => {
    const open = setup(['broken', 'ok'], { breaker: async (model) => ({ allowed: model !== 'broken', retryInMs: 9_000 }) });
    const openStep = await advanceRow(row, freshProgress(), open.deps);
    if (openStep.kind !== 'finished') throw new Error('expected finished');
    expect(openStep.event.result.fallback_reason).toContain('circuit open');
    expect(openStep.event.calls.map((c) => c.model)).toEqual(['ok']);

    const broke = setup(['ok'], { reserveBudget: async () => ({ ok: false, message: 'over budget', heldByCallsInFlight: false }) });
    const brokeStep = await advanceRow(row, freshProgress(), broke.deps);
    if (brokeStep.kind !== 'finished') throw new Error('expected finished');
    expect(brokeStep.event.result).toMatchObject({ status: 'failed', error: { code: 'budget_exceeded' }, attempts: 0 });
  });

  it('holds budget for the most a call can cost: its prompt at one token per UTF-8 byte, whatever the routing estimate', async () => {
    // UUIDs: o200k counts ~2.5 times the chars/4 estimate; the plan says 5 tokens (QA: a $0.10 cap spent $0.24).
    const prompt = Array.from({ length: 20 }, (_, i) => `3f2b${i}c9e-8d1a-4b7f-a0e2-5c6d7e8f9a0b`).join(' ');
    const held: number[] = [];
    const { deps } = setup(['ok'], { reserveBudget: async (estimateNanos) => (held.push(estimateNanos), { ok: true, hold: null }) }, { max_tokens: 100 });
    const step = await advanceRow({ ...row, messages: [{ role: 'user', content: prompt }] }, freshProgress(), deps);
    expect(step.kind).toBe('finished');
    const bytes = Buffer.byteLength(prompt, 'utf8');
    expect(held).toHaveLength(1);
    // At least the prompt's bytes as input tokens (plus the chat overhead), and max_tokens as output, at $1 / $2 per Mtok.
    expect(held[0]).toBeGreaterThanOrEqual(callCostNanos({ input_per_mtok: 1, output_per_mtok: 2 }, { input_tokens: bytes, output_tokens: 100 })!);
    expect(held[0]).toBeGreaterThanOrEqual(callCostNanos({ input_per_mtok: 1, output_per_mtok: 2 }, { input_tokens: countMessageTokens([{ role: 'user', content: prompt }]), output_tokens: 100 })!);
  });

  it("holds budget for the request fields sent beside the prompt too: a response_format's JSON schema is read, and billed, as prompt", async () => {
    // QA: a $0.02 cap spent $0.128 on ten rows whose 53 KB schema the hold left out (it held 20 tokens of prompt each).
    const schema = { type: 'object', properties: Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`field_${i}`, { type: 'string', description: `What field ${i} holds, in a sentence.` }])) };
    const params = { response_format: { type: 'json_schema', json_schema: { name: 'form', schema } } };
    const held: number[] = [];
    const { deps } = setup(['ok'], { reserveBudget: async (estimateNanos) => (held.push(estimateNanos), { ok: true, hold: null }) }, { max_tokens: 100 });
    const step = await advanceRow({ ...row, params }, freshProgress(), deps);
    expect(step.kind).toBe('finished');
    const bytes = Buffer.byteLength('Hello', 'utf8') + Buffer.byteLength(JSON.stringify(params), 'utf8');
    expect(held).toHaveLength(1);
    expect(held[0]).toBeGreaterThanOrEqual(callCostNanos({ input_per_mtok: 1, output_per_mtok: 2 }, { input_tokens: bytes, output_tokens: 100 })!);
  });

  it('with breaker.max_wait_ms, a row whose chain ended on open circuits waits for the probe and runs its chain again', async () => {
    let clock = 1_000_000;
    let openUntil = clock + 30_000;
    const breaker = async () => (clock < openUntil ? { allowed: false, retryInMs: openUntil - clock, lastError: 'failed with 503' } : { allowed: true, retryInMs: 0 });
    // Without it (the default): the row fails at once.
    const failing = setup(['ok'], { breaker });
    failing.deps.now = () => clock;
    expect(await advanceRow(row, freshProgress(), failing.deps)).toMatchObject({ kind: 'finished', event: { result: { status: 'failed', error: { code: 'no_model_available' } } } });

    const { deps } = setup(['ok'], { breaker }, { breaker: { max_wait_ms: 120_000 } });
    deps.now = () => clock;
    const parked = await advanceRow(row, freshProgress(), deps);
    if (parked.kind !== 'park') throw new Error('expected park');
    expect(parked.waitMs).toBeGreaterThanOrEqual(30_000);
    expect(parked.waitMs).toBeLessThanOrEqual(33_000); // up to 10% later, so parked rows do not all wake at once
    expect(parked.note).toBe('rows wait for the circuits of ok to close (a probe call every breaker.cooldown_ms), for up to 120 s each (breaker.max_wait_ms)');
    expect(parked.progress).toMatchObject({ chainIndex: 0, attempt: 0, fallbackReasons: [], circuitWaitSince: 1_000_000 });
    // The probe closed the circuit: the row runs its chain again and answers.
    clock += parked.waitMs;
    const answered = await advanceRow(row, parked.progress, deps);
    expect(answered).toMatchObject({ kind: 'finished', event: { result: { status: 'succeeded', final_model: 'ok' } } });

    // A circuit that stays open: the row waits until breaker.max_wait_ms is used up, then fails and says so.
    openUntil = Number.POSITIVE_INFINITY;
    const breakerStaysOpen = async () => ({ allowed: false, retryInMs: 30_000 });
    const stuck = setup(['ok'], { breaker: breakerStaysOpen }, { breaker: { max_wait_ms: 120_000 } });
    stuck.deps.now = () => clock;
    const started = clock;
    let step = await advanceRow(row, freshProgress(), stuck.deps);
    let parks = 0;
    while (step.kind === 'park') {
      parks++;
      clock += step.waitMs;
      step = await advanceRow(row, step.progress, stuck.deps);
    }
    expect(parks).toBe(3);
    expect(clock - started).toBeLessThanOrEqual(120_000);
    expect(step.event.result).toMatchObject({ status: 'failed', error: { code: 'no_model_available' } });
    expect(step.event.result.error?.message).toMatch(/ok: circuit open after repeated failures \(next probe in 30 s, at \d\d:\d\d:\d\d UTC\); waited 9\d s in all for open circuits \(breaker.max_wait_ms: 120 s\)/);
  });

  it("waits for another row's probe of a model (a half-open circuit) instead of failing, even without breaker.max_wait_ms", async () => {
    let clock = 1_000_000;
    let probeEndsAt = clock + 300;
    let probeCloses = true;
    const breaker = async () => {
      if (clock < probeEndsAt) return { allowed: false, retryInMs: 29_000, lastError: 'connect ECONNREFUSED', probing: true };
      return probeCloses ? { allowed: true, retryInMs: 0 } : { allowed: false, retryInMs: 30_000, lastError: 'connect ECONNREFUSED' };
    };
    const { deps } = setup(['ok'], { breaker });
    deps.now = () => clock;
    const parked = await advanceRow(row, freshProgress(), deps);
    if (parked.kind !== 'park') throw new Error('expected park');
    // Looked at again about a call's time later, not after the probe lock's 29 s.
    expect(parked.waitMs).toBeGreaterThanOrEqual(250);
    expect(parked.waitMs).toBeLessThanOrEqual(300);
    expect(parked.note).toBe("rows wait while one call tests ok after repeated failures (its circuit breaker's probe)");
    expect(parked.progress).toMatchObject({ chainIndex: 0, attempt: 0, fallbackReasons: [] });
    expect(parked.progress.awaitingProbe).toBeUndefined();
    clock += parked.waitMs;
    const again = await advanceRow(row, parked.progress, deps);
    if (again.kind !== 'park') throw new Error('expected a second park while the probe is out');
    clock += again.waitMs;
    expect(await advanceRow(row, again.progress, deps)).toMatchObject({ kind: 'finished', event: { result: { status: 'succeeded', final_model: 'ok', attempts: 1 } } });

    // The probe failed and the circuit opened again: without breaker.max_wait_ms the row fails, saying why.
    probeEndsAt = clock + 300;
    probeCloses = false;
    let step = await advanceRow(row, freshProgress(), deps);
    while (step.kind === 'park') {
      clock += step.waitMs;
      step = await advanceRow(row, step.progress, deps);
    }
    expect(step.event.result).toMatchObject({ status: 'failed', attempts: 0, error: { code: 'no_model_available', message: expect.stringMatching(/^no model was available: ok: circuit open after repeated failures \(last error: connect ECONNREFUSED; next probe in 30 s, at \d\d:\d\d:\d\d UTC\)$/) } });

    // A row with another model to go to does not wait: it falls back.
    probeEndsAt = Number.POSITIVE_INFINITY;
    const withFallback = setup(['broken', 'ok'], { breaker: async (model) => (model === 'broken' ? { allowed: false, retryInMs: 29_000, probing: true } : { allowed: true, retryInMs: 0 }) });
    const fellBack = await advanceRow(row, freshProgress(), withFallback.deps);
    expect(fellBack).toMatchObject({ kind: 'finished', event: { result: { status: 'succeeded', final_model: 'ok', fallback_reason: 'broken: one call is testing it after repeated failures' } } });
  });

  it('falls back at once past a model that answers with no chat completion (a proxy page): asking it again would not help', async () => {
    const portal = createServer((_request, response) => response.writeHead(200, { 'content-type': 'text/html' }).end('<html>log in</html>'));
    await new Promise<void>((resolve) => portal.listen(0, '127.0.0.1', resolve));
    try {
      const models = { walled: { provider: 'portal', price: { input_per_mtok: 1, output_per_mtok: 2 } }, ok: { provider: 'sim', price: { input_per_mtok: 1, output_per_mtok: 2 } } };
      const providers = { sim: { base_url: sim.url }, portal: { base_url: `http://127.0.0.1:${(portal.address() as AddressInfo).port}/v1` } };
      const config = parseConfig({ providers, models, default_model: 'walled', retry: { max_attempts: 3, base_delay_ms: 1, max_delay_ms: 5 } }, 'test');
      const plan: RoutePlan = { taskType: 'simple', routeReason: 'test', chain: ['walled', 'ok'], skipped: [], promptTokens: 5, promptTokensCounted: false };
      const deps: RowRunnerDeps = { config, providers: createProviderClients(config), gate: openRowGate().gate, plan: async () => ({ plan, calls: [] }), sleep: async () => undefined };
      const step = await advanceRow(row, freshProgress(), deps);
      if (step.kind !== 'finished') throw new Error('expected finished');
      expect(step.event.result).toMatchObject({ status: 'succeeded', final_model: 'ok', models_tried: ['walled', 'ok'], fallback_reason: 'walled: answered with no chat completion' });
      expect(step.event.calls.map((c) => `${c.model}#${c.attempt}`)).toEqual(['walled#1', 'ok#1']);
    } finally {
      portal.close();
    }
  });

  it("goes on past a provider's refusal of the key or account only to a model on another provider, and past a prompt too long to any later model", async () => {
    const refusing = createServer((_request, response) => response.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.", code: 'context_length_exceeded' } })));
    await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', resolve));
    try {
      const price = { input_per_mtok: 1, output_per_mtok: 2 };
      const providers = { sim: { base_url: sim.url }, other: { base_url: sim.url }, small: { base_url: `http://127.0.0.1:${(refusing.address() as AddressInfo).port}/v1` } };
      const models = { gated: { provider: 'sim', price }, ok: { provider: 'sim', price }, 'ok-elsewhere': { provider: 'other', upstream: 'ok', price }, short: { provider: 'small', price } };
      const config = parseConfig({ providers, models, default_model: 'ok', retry: { max_attempts: 3, base_delay_ms: 1, max_delay_ms: 5 } }, 'test');
      const runChain = async (chain: string[]) => {
        const plan: RoutePlan = { taskType: 'simple', routeReason: 'test', chain, skipped: [], promptTokens: 5, promptTokensCounted: false };
        const deps: RowRunnerDeps = { config, providers: createProviderClients(config), gate: openRowGate().gate, plan: async () => ({ plan, calls: [] }), sleep: async () => undefined };
        const step = await advanceRow(row, freshProgress(), deps);
        if (step.kind !== 'finished') throw new Error('expected finished');
        return step.event.result;
      };
      expect(await runChain(['gated', 'ok-elsewhere'])).toMatchObject({ status: 'succeeded', final_model: 'ok-elsewhere', fallback_reason: expect.stringMatching(/^gated: forbidden \(403\) at its provider: model "gated" at http:\/\/\S+ refused access \(403\): .*; check that the key may use this model/) });
      // The same provider would refuse the same key: the row fails at once, as before.
      expect(await runChain(['gated', 'ok'])).toMatchObject({ status: 'failed', attempts: 1, models_tried: ['gated'], error: { code: 'forbidden' } });
      // In the provider's words, which say how the prompt and max_tokens split the window; no context_window set: said how to skip it (QA).
      expect(await runChain(['short', 'ok'])).toMatchObject({
        status: 'succeeded',
        final_model: 'ok',
        fallback_reason: expect.stringMatching(/^short: its context window refused the prompt and max_tokens \(400: model "short" at http:\/\/\S+ rejected the request \(400\): This model's maximum context length is 8192 tokens\. However, your messages resulted in 9000 tokens\); set models\.short\.context_window, and rows it cannot hold skip it without a call$/),
      });
      expect(await runChain(['short'])).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'bad_request' } });
    } finally {
      refusing.close();
    }
  });

  it('charges a call that timed out its prompt, counted, at the input price and against the budget; a refused connection or a 500 costs nothing', async () => {
    // Takes the request and never answers: the provider may be working on it, and would bill its prompt.
    const silent = createServer(() => undefined);
    const refusing = createServer();
    await Promise.all([silent, refusing].map((server) => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))));
    const urlOf = (server: typeof silent) => `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
    const refusedUrl = urlOf(refusing);
    await new Promise((resolve) => refusing.close(resolve)); // nothing listens there now: ECONNREFUSED
    try {
      const price = { input_per_mtok: 3, output_per_mtok: 15 };
      const providers = { sim: { base_url: sim.url }, silent: { base_url: urlOf(silent), timeout_ms: 150 }, gone: { base_url: refusedUrl } };
      const models = { slow: { provider: 'silent', price }, broken: { provider: 'sim', price }, down: { provider: 'gone', price } };
      const config = parseConfig({ providers, models, default_model: 'slow', retry: { max_attempts: 2, base_delay_ms: 1, max_delay_ms: 5 } }, 'test');
      const plan: RoutePlan = { taskType: 'simple', routeReason: 'test', chain: ['slow', 'broken', 'down'], skipped: [], promptTokens: 5, promptTokensCounted: false };
      const settlements: CallSettlement[] = [];
      const { gate } = openRowGate({ settle: async (settlement) => void settlements.push(settlement) });
      const deps: RowRunnerDeps = { config, providers: createProviderClients(config), gate, plan: async () => ({ plan, calls: [] }), sleep: async () => undefined };
      const step = await advanceRow(row, freshProgress(), deps);
      if (step.kind !== 'finished') throw new Error('expected finished');

      const prompt = countMessageTokens(row.messages);
      const timedOutNanos = callCostNanos(price, { input_tokens: prompt, output_tokens: 0 })!;
      expect(timedOutNanos).toBeGreaterThan(0);
      const { calls } = step.event;
      expect(calls.map((c) => `${c.model}:${c.error_code}`)).toEqual(['slow:timeout', 'slow:timeout', 'broken:server_error', 'broken:server_error', 'down:connection_error', 'down:connection_error']);
      for (const call of calls.filter((c) => c.model === 'slow')) {
        expect(call).toMatchObject({ status: 'failed', http_status: null, input_tokens: prompt, output_tokens: 0, cost_usd: nanosToUsd(timedOutNanos), usage_estimated: true });
      }
      for (const call of calls.filter((c) => c.model !== 'slow')) {
        expect(call).toMatchObject({ input_tokens: 0, output_tokens: 0, cost_usd: 0 });
        expect(call.usage_estimated).toBeUndefined();
      }
      // The budget books what costs.jsonl records, call by call.
      expect(settlements.map((s) => s.actualNanos)).toEqual(calls.map((c) => usdToNanos(c.cost_usd!)));
      expect(settlements.map((s) => s.actualTokens)).toEqual([prompt, prompt, 0, 0, 0, 0]);
      expect(step.event.result).toMatchObject({ status: 'failed', usage: { input_tokens: 2 * prompt, output_tokens: 0 }, cost_usd: nanosToUsd(2 * timedOutNanos) });
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  it("gives up a half-open circuit's probe it was let through as when it sends no call: refused by the budget, or limited past max_wait_ms", async () => {
    const settlements: CallSettlement[] = [];
    const released: string[] = [];
    const probeGate = { breaker: async () => ({ allowed: true, retryInMs: 0, probe: 'token-1' }), releaseProbe: async (model: string, probe: string) => void released.push(`${model}:${probe}`) };
    const refused = setup(['ok'], { ...probeGate, reserveBudget: async () => ({ ok: false, message: 'spent', heldByCallsInFlight: false }), settle: async (settlement) => void settlements.push(settlement) });
    const refusedStep = await advanceRow(row, freshProgress(), refused.deps);
    if (refusedStep.kind !== 'finished') throw new Error('expected finished');
    expect(refusedStep.event.result).toMatchObject({ status: 'failed', error: { code: 'budget_exceeded' } });
    expect(settlements).toEqual([]);
    expect(released).toEqual(['ok:token-1']);

    const limited = setup(['ok'], { ...probeGate, reserveCapacity: async () => ({ reserved: false, waitMs: 90_000, limitedBy: 'requests' as const }) }, { limits: { on_limit: 'fallback', max_wait_ms: 1000 } });
    await advanceRow(row, freshProgress(), limited.deps);
    expect(released).toEqual(['ok:token-1', 'ok:token-1']);

    // A probe that calls settles with its token, whatever the answer.
    const answered = setup(['ok'], { ...probeGate, settle: async (settlement) => void settlements.push(settlement) });
    await advanceRow(row, freshProgress(), answered.deps);
    expect(settlements.at(-1)).toMatchObject({ model: 'ok', health: 'success', probe: 'token-1' });
  });

  it('gives back the rate-limit slot it came to when the budget makes it wait or refuses it (review: each wake used up a slot with no call)', async () => {
    for (const outcome of ['held', 'spent'] as const) {
      const released: string[] = [];
      const { deps } = setup(['limited'], {
        reserveCapacity: async () => ({ reserved: true, waitMs: 0, slotAt: 55 }),
        reserveBudget: async () => ({ ok: false, message: outcome, heldByCallsInFlight: outcome === 'held' }),
        releaseSlot: async (model, slotAt, tokens) => void released.push(`${model}@${slotAt}:${tokens}`),
      }, { models: { limited: { provider: 'sim', rpm: 60, price: { input_per_mtok: 1, output_per_mtok: 2 } } }, default_model: 'limited' });
      const step = await advanceRow(row, freshProgress(), deps);
      expect(step.kind).toBe(outcome === 'held' ? 'park' : 'finished');
      expect(released).toEqual([`limited@55:${5 + 1024}`]);
      if (step.kind === 'park') expect(step.progress.reservedModel).toBeUndefined(); // it books again when it wakes
    }
  });

  it('waits for budget that calls in flight hold on their estimates, and calls once it comes back', async () => {
    let asked = 0;
    const slept: number[] = [];
    // Refused three times while other calls hold the room, then admitted as they settle.
    const waiting = setup(['ok'], { reserveBudget: async () => (++asked > 3 ? { ok: true, hold: null } : { ok: false, message: 'held', heldByCallsInFlight: true }) });
    waiting.deps.sleep = async (ms) => void slept.push(ms);
    const step = await advanceRow(row, freshProgress(), waiting.deps);
    if (step.kind !== 'finished') throw new Error('expected finished');
    expect(step.event.result).toMatchObject({ status: 'succeeded', attempts: 1 });
    expect(slept).toEqual([100, 100, 100]);

    // Holds that do not come back within 30 s (a worker killed mid-call leaves them for minutes) are
    // waited for parked, 5 s at a time, until they lapse; then the row runs or finds the budget spent.
    for (const outcome of ['room', 'spent'] as const) {
      let clock = 1_000_000;
      let rechecks = 0;
      const lapseAfterMs = 150_000;
      const held = setup(['ok'], {
        reserveBudget: async () => {
          rechecks++;
          if (clock - 1_000_000 < lapseAfterMs) return { ok: false, message: 'held by a dead worker', heldByCallsInFlight: true, waitNote: 'waiting for holds' };
          return outcome === 'room' ? { ok: true, hold: null } : { ok: false, message: 'spent', heldByCallsInFlight: false };
        },
      });
      held.deps.now = () => clock;
      held.deps.sleep = async (ms) => void (clock += ms);
      const progress = freshProgress();
      const parks: number[] = [];
      let step = await advanceRow(row, progress, held.deps);
      while (step.kind === 'park') {
        expect(step.note).toBe('waiting for holds'); // the worker logs it once per batch
        parks.push(step.waitMs);
        clock += step.waitMs;
        step = await advanceRow(row, progress, held.deps);
      }
      // 30 s in the worker (a recheck every 100 ms), then one recheck per 5 s parked.
      expect(parks).toEqual(Array.from({ length: 24 }, () => 5_000));
      expect(rechecks).toBe(1 + 300 + 24);
      expect(progress.waitingForBudget).toBeUndefined();
      const expected = outcome === 'room' ? { status: 'succeeded', attempts: 1 } : { status: 'failed', error: { code: 'budget_exceeded', message: 'spent' }, attempts: 0 };
      expect(step.event.result).toMatchObject(expected);
    }
  });
});
