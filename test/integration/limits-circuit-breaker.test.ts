import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { breakerKey, CircuitBreaker } from '../../src/limits/circuit-breaker.ts';
import { modelEndpoint } from '../../src/limits/model-endpoint.ts';
import { configSchema } from '../../src/config/schema.ts';
import { createRedisRowGate } from '../../src/execution/redis-row-gate.ts';
import { shutCircuits, shutCircuitsText } from '../../src/batch/shut-circuits.ts';
import { BatchStore } from '../../src/queue/batch-state.ts';
import { cleanupPrefix, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';

const prefix = uniquePrefix('limits-circuit-breaker');
const clients: Redis[] = [];
const COOLDOWN_MS = 300;
let breakers: CircuitBreaker[] = [];

beforeAll(() => {
  for (let i = 0; i < 5; i++) clients.push(new Redis(testRedisUrl()));
  breakers = clients.map((redis) => new CircuitBreaker(redis, { prefix, breaker: { failure_threshold: 3, cooldown_ms: COOLDOWN_MS } }));
});

afterAll(async () => {
  const first = clients[0];
  if (first) await cleanupPrefix(first, prefix);
  await Promise.all(clients.map((redis) => redis.quit()));
});

function breaker(i = 0): CircuitBreaker {
  const found = breakers[i % breakers.length];
  if (!found) throw new Error('no breaker');
  return found;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function openCircuit(model: string): Promise<void> {
  for (let i = 0; i < 3; i++) await breaker(i).recordFailure(model);
  expect((await breaker().check(model)).state).toBe('open');
}

/** A worker's row gate (one batch's) over a config with `model` alone. */
function rowGateFor(model: string) {
  const config = configSchema.parse({
    providers: { p: { base_url: 'http://127.0.0.1:1/v1' } },
    models: { [model]: { provider: 'p' } },
    default_model: model,
    breaker: { failure_threshold: 3, cooldown_ms: COOLDOWN_MS },
  });
  const redis = clients[0] as Redis;
  return { config, gate: createRedisRowGate({ redis, space: { prefix }, store: new BatchStore(redis, { prefix }), batchId: model, config }) };
}

describe('CircuitBreaker', () => {
  it('opens after failure_threshold consecutive failures and rejects while open', async () => {
    const model = 'opens';
    expect(await breaker(0).check(model)).toEqual({ allowed: true, state: 'closed', retryInMs: 0, failures: 0 });
    expect(await breaker(1).recordFailure(model)).toBe('closed');
    expect(await breaker(2).recordFailure(model)).toBe('closed');
    expect(await breaker(3).check(model)).toEqual({ allowed: true, state: 'closed', retryInMs: 0, failures: 2 });
    expect(await breaker(4).recordFailure(model)).toBe('open');
    const rejected = await breaker(0).check(model);
    expect(rejected).toMatchObject({ allowed: false, state: 'open' });
    expect(rejected.retryInMs).toBeGreaterThan(0);
    expect(rejected.retryInMs).toBeLessThanOrEqual(COOLDOWN_MS);
    // A failure of a call that started before it opened does not extend the cooldown.
    await breaker(1).recordFailure(model);
    expect((await breaker(2).check(model)).retryInMs).toBeLessThanOrEqual(rejected.retryInMs);
  });

  it('keeps what the latest failure said, so callers turned away while it is open learn why it opened', async () => {
    const model = 'says-why';
    await breaker(0).recordFailure(model, 'server_error: 502 Bad Gateway');
    await breaker(1).recordFailure(model, 'cannot reach provider "local" at http://127.0.0.1:9/v1: connect ECONNREFUSED 127.0.0.1:9');
    expect(await breaker(2).check(model)).toEqual({ allowed: true, state: 'closed', retryInMs: 0, failures: 2 });
    await breaker(3).recordFailure(model, 'x'.repeat(1000));
    const rejected = await breaker(0).check(model);
    expect(rejected).toMatchObject({ allowed: false, state: 'open' });
    expect(rejected.lastError).toBe(`${'x'.repeat(299)}…`); // long messages are cut: every passed-over row repeats it
    await breaker(1).recordSuccess(model);
    expect(await breaker(2).check(model)).toEqual({ allowed: true, state: 'closed', retryInMs: 0, failures: 0 });
  });

  it('counts consecutive failures only: a success starts the count again', async () => {
    const model = 'resets';
    await breaker(0).recordFailure(model);
    await breaker(1).recordFailure(model);
    await breaker(2).recordSuccess(model);
    expect(await breaker(3).recordFailure(model)).toBe('closed');
    expect(await breaker(4).recordFailure(model)).toBe('closed');
    expect(await breaker(0).recordFailure(model)).toBe('open');
  });

  it('lets exactly one of 20 concurrent callers probe after the cooldown; its success closes the circuit', async () => {
    const model = 'probe-ok';
    await openCircuit(model);
    await sleep(COOLDOWN_MS + 20);
    const checks = await Promise.all(Array.from({ length: 20 }, (_, i) => breaker(i).check(model)));
    expect(checks.filter((check) => check.allowed)).toHaveLength(1);
    expect(checks.every((check) => check.state === 'half_open')).toBe(true);
    for (const check of checks.filter((c) => !c.allowed)) expect(check.retryInMs).toBeGreaterThan(0); // until the probe lock expires
    await breaker(3).recordSuccess(model);
    expect(await breaker(4).check(model)).toEqual({ allowed: true, state: 'closed', retryInMs: 0, failures: 0 });
    // Closed again with a fresh count.
    expect(await breaker(0).recordFailure(model)).toBe('closed');
  });

  it('lets one probe through a worker whose rows all ask at once (the row gate shares closed answers only)', async () => {
    const model = 'gate-probe';
    const { config, gate } = rowGateFor(model);
    // Closed: 20 rows asking together get one shared answer, all allowed.
    expect((await Promise.all(Array.from({ length: 20 }, () => gate.breaker(model)))).every((answer) => answer.allowed)).toBe(true);
    // The gate keys a model's circuit by the endpoint its name stands for in the config.
    await openCircuit(modelEndpoint(config, model));
    await sleep(COOLDOWN_MS + 20);
    const answers = await Promise.all(Array.from({ length: 20 }, () => gate.breaker(model)));
    expect(answers.filter((answer) => answer.allowed)).toHaveLength(1);
  });

  it('lets the next caller probe at once when the probe sends no call (the budget refused it, a 400, a 429), not one cooldown later', async () => {
    const model = 'probe-unsent';
    const { config, gate } = rowGateFor(model);
    await openCircuit(modelEndpoint(config, model));
    await sleep(COOLDOWN_MS + 20);
    const first = await gate.breaker(model);
    expect(first).toMatchObject({ allowed: true, probe: expect.any(String) });
    expect(await gate.breaker(model)).toMatchObject({ allowed: false, probing: true });
    // Settled as told nothing of the model's health: the lock goes with it.
    await gate.settle({ model, slotAt: 0, estimatedTokens: 0, actualTokens: 0, budgetHold: null, actualNanos: 0, health: 'neutral', coolDownMs: null, probe: first.probe });
    const second = await gate.breaker(model);
    expect(second).toMatchObject({ allowed: true, probe: expect.any(String) });
    await gate.releaseProbe(model, second.probe!);
    const third = await gate.breaker(model);
    expect(third.allowed).toBe(true);
    // A stale token (a probe whose lock expired and was taken again) releases nothing.
    await gate.releaseProbe(model, first.probe!);
    expect(await gate.breaker(model)).toMatchObject({ allowed: false, probing: true });
  });

  it('re-opens at once when the probe fails', async () => {
    const model = 'probe-fails';
    await openCircuit(model);
    await sleep(COOLDOWN_MS + 20);
    expect(await breaker(0).check(model)).toMatchObject({ allowed: true, state: 'half_open' });
    expect(await breaker(0).recordFailure(model)).toBe('open');
    const reopened = await breaker(1).check(model);
    expect(reopened).toMatchObject({ allowed: false, state: 'open' });
    expect(reopened.retryInMs).toBeGreaterThan(COOLDOWN_MS - 50);
  });

  it('lets another caller probe once a probe lock expires (the prober died)', async () => {
    const model = 'probe-dies';
    const quick = new CircuitBreaker(clients[0] as Redis, { prefix, breaker: { failure_threshold: 1, cooldown_ms: 100 }, probeLockMs: 150 });
    await quick.recordFailure(model);
    await sleep(120);
    expect((await quick.check(model)).allowed).toBe(true); // this prober never reports back
    expect((await quick.check(model)).allowed).toBe(false);
    await sleep(170);
    expect(await quick.check(model)).toMatchObject({ allowed: true, state: 'half_open' });
  });

  it('keeps an expiring hash per model', async () => {
    const model = 'ttl';
    await breaker(0).recordFailure(model);
    const key = breakerKey(prefix, model);
    expect(key).toBe(`${prefix}:breaker:{ttl}`);
    const ttl = await (clients[0] as Redis).pttl(key);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(600_000);
    await breaker(0).recordSuccess(model);
    expect(await (clients[0] as Redis).exists(key)).toBe(0);
  });
  it('is asked whether a half-open circuit lets calls through without taking its probe: the row whose model it is still gets it (review: laterModelOpenToCalls took it and turned that row away)', async () => {
    const model = 'peeked';
    const { config, gate } = rowGateFor(model);
    const endpoint = modelEndpoint(config, model);
    await openCircuit(endpoint);
    expect(await gate.opensToCalls(model)).toBe(false); // open, cooling down
    await sleep(COOLDOWN_MS + 50);
    const asked = gate.opensToCalls(model);
    const caller = breaker(1).check(endpoint); // the row, on another worker, whose model it is
    expect(await asked).toBe(true);
    expect(await caller).toMatchObject({ allowed: true, state: 'half_open', probe: expect.any(String) });
    // Its probe out: no further call goes.
    expect(await gate.opensToCalls(model)).toBe(false);
  });

  it('says how long a circuit stays shut, and which of a batch\'s models are shut until when (QA: a resume within the cooldown failed every row, and nothing said until when)', async () => {
    const model = 'shut-for';
    const { config } = rowGateFor(model);
    const endpoint = modelEndpoint(config, model);
    expect(await breaker().shutForMs(endpoint)).toBe(0); // closed
    await openCircuit(endpoint);
    const left = await breaker().shutForMs(endpoint);
    expect(left).toBeGreaterThan(COOLDOWN_MS - 100);
    expect(left).toBeLessThanOrEqual(COOLDOWN_MS);
    const now = Date.now();
    const shut = await shutCircuits(clients[0] as Redis, prefix, config, [model], now);
    // A model the batch does not reach is not asked about.
    expect(await shutCircuits(clients[0] as Redis, prefix, config, [], now)).toEqual([]);
    expect(shut).toEqual([{ model, opensAt: expect.any(Number) }]);
    expect(shut[0]!.opensAt - now).toBeGreaterThan(COOLDOWN_MS - 100);
    expect(shutCircuitsText([{ model, opensAt: Date.UTC(2026, 11, 5, 6, 30, 25) }], Date.UTC(2026, 11, 5, 6, 29, 56))).toBe(`${model}'s circuit stays shut until 06:30:25 UTC (in 29.0 s)`);
    // Once the cooldown is over, a call may go: nothing is shut (its probe not taken by asking).
    await sleep(COOLDOWN_MS + 50);
    expect(await breaker().shutForMs(endpoint)).toBe(0);
    expect(await shutCircuits(clients[0] as Redis, prefix, config)).toEqual([]);
    expect(await breaker(1).check(endpoint)).toMatchObject({ allowed: true, state: 'half_open' });
  });
});
