import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { advanceEnsembleRow } from '../../src/ensemble/ensemble-row.ts';
import { freshProgress } from '../../src/execution/row-progress.ts';
import type { RowInput, RowRunnerDeps } from '../../src/execution/row-runner.ts';
import { ModelCallError } from '../../src/models/model-error.ts';
import { createProviderClients } from '../../src/models/provider-clients.ts';
import { startSimulator, type Simulator } from '../../src/sim/server.ts';
import { openRowGate } from '../helpers/open-row-gate.ts';

/** An ensemble row's members against rate limits, with the simulator over HTTP and an in-memory gate. */
describe('an ensemble member limited past limits.max_wait_ms', () => {
  let sim: Simulator;
  beforeAll(async () => {
    sim = await startSimulator({ models: { throttled: { fail_status: 429 } } });
  });
  afterAll(() => sim.close());

  const row: RowInput = { batchId: 'b', row: 1, id: 'r1', messages: [{ role: 'user', content: 'Hello' }], metadata: {} };

  /** Members a, b and slow; slow's next slot is `slowSlotMs` away (a minute unless said). */
  function advance(limits: Record<string, unknown>, minAnswers: number, slowSlotMs = 60_000) {
    const models = Object.fromEntries(['a', 'b', 'slow', 'synth'].map((m) => [m, { provider: 'sim', price: { input_per_mtok: 1, output_per_mtok: 2 } }]));
    const config = parseConfig({ providers: { sim: { base_url: sim.url } }, models, default_model: 'a', limits, ensembles: { council: { members: ['a', 'b', 'slow'], synthesizer: 'synth', min_answers: minAnswers } } }, 'test');
    const released: string[] = [];
    const { gate } = openRowGate({
      reserveCapacity: async (model, _tokens, maxWaitMs) => (model !== 'slow' ? { reserved: true, waitMs: 0, slotAt: 0 } : maxWaitMs < slowSlotMs ? { reserved: false, waitMs: slowSlotMs, limitedBy: 'requests' } : { reserved: true, waitMs: slowSlotMs, slotAt: 7 }),
      releaseSlot: async (model) => {
        released.push(model);
      },
    });
    const deps: RowRunnerDeps = { config, providers: createProviderClients(config), gate, plan: async () => ({ waitMs: 0 }), sleep: async () => undefined };
    return { step: advanceEnsembleRow(row, freshProgress(), deps, { name: 'council', config: config.ensembles!.council! }), released };
  }

  it('under on_limit fallback, is given up once the other members have answered min_answers: the row is synthesized, not parked (review: it waited a minute with its answers paid for)', async () => {
    const { step: stepping, released } = advance({ on_limit: 'fallback', max_wait_ms: 1000 }, 2);
    const step = await stepping;
    if (step.kind !== 'finished') throw new Error(`expected finished, got ${step.kind}`);
    expect(step.event.result).toMatchObject({ status: 'succeeded', final_model: 'synth' });
    const slow = step.event.result.ensemble?.members.find((member) => member.model === 'slow');
    expect(slow).toMatchObject({ status: 'failed', error: { code: 'no_model_available' } });
    expect(slow?.error?.message).toMatch(/^slow: rate limited, its next call \S+ s away, over limits\.max_wait_ms; given up, as 2 other members answered \(min_answers 2\)$/);
    expect(released).toEqual(['slow']); // the slot it booked goes back
    // The row's fallback_reason says so too (QA: it read null for a row synthesized from one answer fewer).
    expect(step.event.result.fallback_reason).toMatch(/^member slow: slow: rate limited, its next call \S+ s away, over limits\.max_wait_ms, given up as 2 other members answered \(min_answers 2\)$/);
  });

  it('still waits for it when the others are too few without it, or under on_limit wait', async () => {
    expect((await advance({ on_limit: 'fallback', max_wait_ms: 1000 }, 3).step).kind).toBe('park');
    expect((await advance({ on_limit: 'wait', max_wait_ms: 1000 }, 2).step).kind).toBe('park');
  });

  it('is given up when its slot is 10.5 s away and max_wait_ms is 10 s (the park is WAKE_LEAD_MS shorter than the wait)', async () => {
    const step = await advance({ on_limit: 'fallback', max_wait_ms: 10_000 }, 2, 10_500).step;
    expect(step.kind).toBe('finished');
  });

  it('is not given up as the process stops: a park for the stop is no rate limit, whatever its last error (review: a member answered 429, under max_wait_ms < 1 s, was failed at a Ctrl-C)', async () => {
    const models = Object.fromEntries(['a', 'b', 'throttled', 'synth'].map((m) => [m, { provider: 'sim', price: { input_per_mtok: 1, output_per_mtok: 2 } }]));
    // The simulator's 429 asks for 1 s, waited out in the worker (inline_wait_ms); a limit past 0.5 s sends rows on.
    const limits = { on_limit: 'fallback', max_wait_ms: 500, inline_wait_ms: 2000 };
    const config = parseConfig({ providers: { sim: { base_url: sim.url } }, models, default_model: 'a', limits, ensembles: { council: { members: ['a', 'b', 'throttled'], synthesizer: 'synth', min_answers: 2 } } }, 'test');
    let stopping = false;
    const { gate } = openRowGate();
    const deps: RowRunnerDeps = { config, providers: createProviderClients(config), gate, plan: async () => ({ waitMs: 0 }), sleep: async () => undefined, stopping: () => stopping };
    // Ctrl-C while throttled's call is in flight: it comes back 429, and its retry finds the process stopping.
    deps.callSlot = async (call) => {
      try {
        return await call();
      } catch (error) {
        if (error instanceof ModelCallError && error.code === 'rate_limited') stopping = true;
        throw error;
      }
    };
    const progress = freshProgress();
    const step = await advanceEnsembleRow(row, progress, deps, { name: 'council', config: config.ensembles!.council! });
    expect(step.kind).toBe('park');
    const members = progress.ensemble?.members.map((member) => [member.model, member.outcome?.status ?? 'waiting']);
    // The resume runs throttled (its limit may be gone by then) rather than synthesize without it.
    expect(members).toEqual([['a', 'succeeded'], ['b', 'succeeded'], ['throttled', 'waiting']]);
  });

  it('says how far its slot really is (60 s, not 59 s)', async () => {
    const step = await advance({ on_limit: 'fallback', max_wait_ms: 10_000 }, 2).step;
    if (step.kind !== 'finished') throw new Error(step.kind);
    const slow = step.event.result.ensemble?.members.find((member) => member.model === 'slow');
    expect(slow?.error?.message).toMatch(/next call 60 s away/);
  });
});
