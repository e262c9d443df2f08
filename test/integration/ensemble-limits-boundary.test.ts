import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { advanceEnsembleRow } from '../../src/ensemble/ensemble-row.ts';
import { freshProgress } from '../../src/execution/row-progress.ts';
import type { RowInput, RowRunnerDeps } from '../../src/execution/row-runner.ts';
import { createProviderClients } from '../../src/models/provider-clients.ts';
import { startSimulator, type Simulator } from '../../src/sim/server.ts';
import { openRowGate } from '../helpers/open-row-gate.ts';

describe('an ensemble member whose slot is just past limits.max_wait_ms', () => {
  let sim: Simulator;
  beforeAll(async () => {
    sim = await startSimulator({ models: {} });
  });
  afterAll(() => sim.close());
  const row: RowInput = { batchId: 'b', row: 1, id: 'r1', messages: [{ role: 'user', content: 'Hello' }], metadata: {} };

  function advance(slotMs: number) {
    const models = Object.fromEntries(['a', 'b', 'slow', 'synth'].map((m) => [m, { provider: 'sim', price: { input_per_mtok: 1, output_per_mtok: 2 } }]));
    const config = parseConfig({ providers: { sim: { base_url: sim.url } }, models, default_model: 'a', limits: { on_limit: 'fallback', max_wait_ms: 10_000 }, ensembles: { council: { members: ['a', 'b', 'slow'], synthesizer: 'synth', min_answers: 2 } } }, 'test');
    const { gate } = openRowGate({
      reserveCapacity: async (model, _tokens, maxWaitMs) => (model !== 'slow' ? { reserved: true, waitMs: 0, slotAt: 0 } : maxWaitMs < slotMs ? { reserved: false, waitMs: slotMs, limitedBy: 'requests' } : { reserved: true, waitMs: slotMs, slotAt: 7 }),
      releaseSlot: async () => undefined,
    });
    const deps: RowRunnerDeps = { config, providers: createProviderClients(config), gate, plan: async () => ({ waitMs: 0 }), sleep: async () => undefined };
    return advanceEnsembleRow(row, freshProgress(), deps, { name: 'council', config: config.ensembles!.council! });
  }

  it('is given up when its slot is 10.5 s away and max_wait_ms is 10 s (the park is WAKE_LEAD_MS shorter than the wait)', async () => {
    const step = await advance(10_500);
    expect(step.kind).toBe('finished');
  });

  it('says how far its slot really is (60 s, not 59 s)', async () => {
    const step = await advance(60_000);
    if (step.kind !== 'finished') throw new Error(step.kind);
    const slow = step.event.result.ensemble?.members.find((member) => member.model === 'slow');
    expect(slow?.error?.message).toMatch(/next call 60 s away/);
  });
});
