import { describe, expect, it } from 'vitest';
import { createMetricsPage } from '../../src/api/metrics-page.ts';
import { formatExposition, formatValue } from '../../src/metrics/exposition.ts';
import { CALL_SECONDS_BUCKETS, ProcessCallMetrics } from '../../src/metrics/process-calls.ts';
import type { CallRecord } from '../../src/output/records.ts';

describe('the Prometheus text exposition', () => {
  it('writes HELP and TYPE once per family, then its samples with their labels', () => {
    const text = formatExposition([
      { name: 'switchyard_batches', type: 'gauge', help: 'Batches by status.', samples: [{ labels: { status: 'running' }, value: 2 }, { labels: { status: 'completed' }, value: 0 }] },
      { name: 'switchyard_batches_in_redis', type: 'gauge', help: 'All.', samples: [{ value: 7 }] },
    ]);
    expect(text).toBe(
      [
        '# HELP switchyard_batches Batches by status.',
        '# TYPE switchyard_batches gauge',
        'switchyard_batches{status="running"} 2',
        'switchyard_batches{status="completed"} 0',
        '# HELP switchyard_batches_in_redis All.',
        '# TYPE switchyard_batches_in_redis gauge',
        'switchyard_batches_in_redis 7',
        '',
      ].join('\n'),
    );
  });

  it('escapes label values (backslash, quote, newline) and HELP text (backslash, newline), as the format says', () => {
    const text = formatExposition([{ name: 'm', type: 'gauge', help: 'a\\b\nc "q"', samples: [{ labels: { batch_id: 'x"y\\z\nw' }, value: 1 }] }]);
    expect(text.split('\n')).toEqual(['# HELP m a\\\\b\\nc "q"', '# TYPE m gauge', 'm{batch_id="x\\"y\\\\z\\nw"} 1', '']);
  });

  it('spells NaN and the infinities as Prometheus reads them, and small and large numbers in full', () => {
    expect([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0.000001095185, 1.5e21, -3].map(formatValue)).toEqual(['NaN', '+Inf', '-Inf', '0.000001095185', '1.5e+21', '-3']);
  });

  it('leaves out a family without samples, and writes nothing for none', () => {
    expect(formatExposition([{ name: 'switchyard_month_budget_usd', type: 'gauge', help: 'x', samples: [] }])).toBe('');
  });

  it('writes a histogram as cumulative buckets up to +Inf, then _sum and _count', () => {
    const text = formatExposition([{ name: 'd_seconds', type: 'histogram', help: 'h', samples: [{ labels: { model: 'm' }, buckets: [0.1, 1], cumulativeCounts: [1, 3], count: 4, sum: 12.5 }] }]);
    expect(text.split('\n')).toEqual(['# HELP d_seconds h', '# TYPE d_seconds histogram', 'd_seconds_bucket{model="m",le="0.1"} 1', 'd_seconds_bucket{model="m",le="1"} 3', 'd_seconds_bucket{model="m",le="+Inf"} 4', 'd_seconds_sum{model="m"} 12.5', 'd_seconds_count{model="m"} 4', '']);
  });

  it('refuses a metric or label name Prometheus would not read (a bug here, not a page the scraper drops whole)', () => {
    expect(() => formatExposition([{ name: 'bad-name', type: 'gauge', help: '', samples: [{ value: 1 }] }])).toThrow('not a valid Prometheus metric name');
    expect(() => formatExposition([{ name: 'ok', type: 'gauge', help: '', samples: [{ labels: { 'batch-id': 'x' }, value: 1 }] }])).toThrow('not a valid Prometheus label name');
  });
});

function call(fields: Partial<CallRecord>): CallRecord {
  return { batch_id: 'b', row: 1, id: '1', model: 'fast', attempt: 1, purpose: 'answer', task_type: null, chain_position: 0, status: 'succeeded', http_status: 200, input_tokens: 10, output_tokens: 5, cost_usd: 0.0001, latency_ms: 40, started_at: '2026-12-05T00:00:00.000Z', ...fields };
}

describe("a process's call counts", () => {
  it('counts calls by model, outcome and HTTP status, retries, fallback calls, cost and latency', () => {
    const metrics = new ProcessCallMetrics();
    metrics.record(call({}));
    metrics.record(call({ status: 'failed', http_status: 429, cost_usd: 0, latency_ms: 3 }));
    metrics.record(call({ attempt: 2, latency_ms: 700, cost_usd: 0.0002 }));
    metrics.record(call({ model: 'slow', chain_position: 1, status: 'failed', http_status: null, cost_usd: null, latency_ms: 400_000 }));
    metrics.record(call({ model: 'slow', chain_position: null, purpose: 'classify' }));
    const text = formatExposition(metrics.families());
    const lines = text.split('\n');
    expect(lines).toContain('switchyard_process_model_calls_total{model="fast",outcome="succeeded",code="200"} 2');
    expect(lines).toContain('switchyard_process_model_calls_total{model="fast",outcome="failed",code="429"} 1');
    expect(lines).toContain('switchyard_process_model_calls_total{model="slow",outcome="failed",code="none"} 1');
    expect(lines).toContain('switchyard_process_model_retries_total{model="fast"} 1');
    expect(lines).toContain('switchyard_process_model_fallback_calls_total{model="slow"} 1');
    expect(lines).toContain('switchyard_process_model_fallback_calls_total{model="fast"} 0');
    // 0.0001 + 0 + 0.0002, summed exactly (in nano-dollars), not 0.00030000000000000003.
    expect(lines).toContain('switchyard_process_model_cost_usd_total{model="fast"} 0.0003');
    expect(lines).toContain('switchyard_process_model_call_duration_seconds_bucket{model="fast",le="0.05"} 2');
    expect(lines).toContain('switchyard_process_model_call_duration_seconds_bucket{model="fast",le="1"} 3');
    expect(lines).toContain('switchyard_process_model_call_duration_seconds_count{model="fast"} 3');
    expect(lines).toContain('switchyard_process_model_call_duration_seconds_sum{model="fast"} 0.743');
    // 400 s is past the last bound: only +Inf holds it.
    expect(lines).toContain(`switchyard_process_model_call_duration_seconds_bucket{model="slow",le="${CALL_SECONDS_BUCKETS.at(-1)}"} 1`);
    expect(lines).toContain('switchyard_process_model_call_duration_seconds_bucket{model="slow",le="+Inf"} 2');
    expect(text).toContain('# TYPE switchyard_process_model_calls_total counter');
    expect(text).toContain('# HELP switchyard_process_model_calls_total Model calls made by this process');
  });

  it('has nothing to say before its first call', () => {
    expect(formatExposition(new ProcessCallMetrics().families())).toBe('');
  });
});

describe('the /metrics page', () => {
  it("with Redis away, still gives this process's figures and says Redis was not read, reading nothing from it", async () => {
    const untouchable = new Proxy({}, { get: () => { throw new Error('Redis was read while away'); } });
    const page = await createMetricsPage({ store: untouchable as never, openKey: 'k', connectedWorkers: () => Promise.reject(new Error('asked')), monthlyBudgetUsd: 5, unavailable: () => 'Redis at x is not answering', readFailed: () => undefined, calls: new ProcessCallMetrics() })();
    expect(page).toContain('\nswitchyard_redis_up 0\n');
    expect(page).toMatch(/\nprocess_start_time_seconds \d+\n/);
    expect(page).not.toContain('switchyard_batches');
    expect(page).not.toContain('switchyard_month_budget_usd');
  });

  it('gives up on a Redis that does not answer within its deadline, and says so', async () => {
    const hanging = new Proxy({}, { get: () => () => new Promise(() => undefined) });
    const started = Date.now();
    const page = await createMetricsPage({ store: { redis: hanging, space: { prefix: 'p' }, recentBatchIds: () => new Promise(() => undefined), batchCount: () => new Promise(() => undefined), keys: () => ({}) } as never, openKey: 'k', connectedWorkers: async () => 1, monthlyBudgetUsd: undefined, unavailable: () => null, readFailed: () => undefined, calls: new ProcessCallMetrics(), deadlineMs: 100 })();
    expect(Date.now() - started).toBeLessThan(2000);
    expect(page).toContain('\nswitchyard_redis_up 0\n');
  });

  it('says a read Redis refused, and tells the server why (its log shows it)', async () => {
    const refused = new Error('READONLY You can\'t write against a read only replica.');
    const told: unknown[] = [];
    const failing = { redis: { hget: () => Promise.reject(refused), sscan: () => Promise.reject(refused) }, space: { prefix: 'p' }, recentBatchIds: () => Promise.reject(refused), batchCount: () => Promise.reject(refused) };
    const page = await createMetricsPage({ store: failing as never, openKey: 'k', connectedWorkers: async () => 1, monthlyBudgetUsd: undefined, unavailable: () => null, readFailed: (error) => told.push(error), calls: new ProcessCallMetrics() })();
    expect(page).toContain('\nswitchyard_redis_up 0\n');
    expect(told).toEqual([refused]);
  });

  it('lets scrapes that come during a read share it, so reads do not pile up behind a Redis that hangs', async () => {
    let reads = 0;
    const hangingStore = { redis: { hget: () => new Promise(() => undefined), sscan: () => new Promise(() => undefined) }, space: { prefix: 'p' }, recentBatchIds: () => (reads++, new Promise(() => undefined)), batchCount: () => new Promise(() => undefined) };
    const page = createMetricsPage({ store: hangingStore as never, openKey: 'k', connectedWorkers: async () => 1, monthlyBudgetUsd: undefined, unavailable: () => null, readFailed: () => undefined, calls: new ProcessCallMetrics(), deadlineMs: 50 });
    const pages = await Promise.all([page(), page(), page()]);
    await page();
    expect(pages.every((text) => text.includes('\nswitchyard_redis_up 0\n'))).toBe(true);
    expect(reads).toBe(1);
  });
});
