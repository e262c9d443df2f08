import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { advanceEnsembleRow } from '../../src/ensemble/ensemble-row.ts';
import { freshProgress } from '../../src/execution/row-progress.ts';
import type { RowInput, RowRunnerDeps } from '../../src/execution/row-runner.ts';
import { createProviderClients } from '../../src/models/provider-clients.ts';
import { startSimulator, type Simulator } from '../../src/sim/server.ts';
import { openRowGate } from '../helpers/open-row-gate.ts';

/** What an ensemble row's result records of members and syntheses that did not go as configured: the simulator over HTTP, an in-memory gate. */
describe("an ensemble row's record", () => {
  let sim: Simulator;
  beforeAll(async () => {
    sim = await startSimulator({ models: { dead: { fail_status: 500 } } });
  });
  afterAll(() => sim.close());

  const row: RowInput = { batchId: 'b', row: 1, id: 'r1', messages: [{ role: 'user', content: 'Hello' }], metadata: {} };
  const price = { input_per_mtok: 1, output_per_mtok: 2 };

  function deps(models: Record<string, object>, ensemble: { members: string[]; synthesizer: string }, gate: RowRunnerDeps['gate']): RowRunnerDeps {
    const config = parseConfig({ providers: { sim: { base_url: sim.url } }, models, default_model: 'a', retry: { max_attempts: 2, base_delay_ms: 0, max_delay_ms: 0 }, ensembles: { council: { ...ensemble, min_answers: 2 } } }, 'test');
    return { config, providers: createProviderClients(config), gate, plan: async () => ({ waitMs: 0 }), sleep: async () => undefined };
  }

  it('gives a member its first call\'s 500 in costs.jsonl, and no HTTP status for its retry the open circuit refused unsent (QA: the member read http_status 500)', async () => {
    const models = Object.fromEntries(['a', 'b', 'dead', 'synth'].map((m) => [m, { provider: 'sim', price }]));
    // dead's circuit opens on its first failure: the retry finds it open, and nothing is sent.
    let deadFailed = false;
    const { gate } = openRowGate({
      breaker: async (model) => (model === 'dead' && deadFailed ? { allowed: false, retryInMs: 30_000, lastError: 'model "dead" failed with 500' } : { allowed: true, retryInMs: 0 }),
      settle: async (settlement) => {
        if (settlement.model === 'dead' && settlement.health === 'failure') deadFailed = true;
        return 'open';
      },
    });
    const config = deps(models, { members: ['a', 'b', 'dead'], synthesizer: 'synth' }, gate);
    const step = await advanceEnsembleRow(row, freshProgress(), config, { name: 'council', config: config.config.ensembles!.council! });
    if (step.kind !== 'finished') throw new Error(`expected finished, got ${step.kind}`);
    const deadCalls = step.event.calls.filter((call) => call.model === 'dead');
    expect(deadCalls.map((call) => [call.status, call.http_status])).toEqual([['failed', 500]]);
    const dead = step.event.result.ensemble?.members.find((member) => member.model === 'dead');
    expect(dead).toMatchObject({ status: 'failed', error: { code: 'server_error', http_status: null } });
    expect(dead?.error?.message).toMatch(/^dead failed: circuit open after repeated failures \(last error: model "dead" failed with 500; next probe in 30 s, at /);
  });

  it("names the model that wrote the synthesis as its synthesizer, a fallback of the configured one's included (QA: it named the configured one)", async () => {
    const models = { a: { provider: 'sim', price }, b: { provider: 'sim', price }, dead: { provider: 'sim', price, fallbacks: ['spare'] }, spare: { provider: 'sim', price } };
    const { gate } = openRowGate();
    const config = deps(models, { members: ['a', 'b'], synthesizer: 'dead' }, gate);
    const step = await advanceEnsembleRow(row, freshProgress(), config, { name: 'council', config: config.config.ensembles!.council! });
    if (step.kind !== 'finished') throw new Error(`expected finished, got ${step.kind}`);
    expect(step.event.result).toMatchObject({ status: 'succeeded', model: 'spare', final_model: 'spare', ensemble: { synthesizer: 'spare' } });
    expect(step.event.result.fallback_reason).toBe('synthesis: dead: server_error after 2 attempts');
  });
});
