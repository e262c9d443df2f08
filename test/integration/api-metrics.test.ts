import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BatchView } from '../../src/api/batch-view.ts';
import type { CallRecord } from '../../src/output/records.ts';
import { startRedisServer, type RedisServerHandle } from '../../src/queue/redis-server-process.ts';
import { waitFor } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';
import { useServers } from '../helpers/serve.ts';


const servers = useServers();
const startServer = servers.start;

/** The samples of a scrape, by their name and labels as written ('m{a="b"}'). */
function samples(page: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of page.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return values;
}

/** The sum of a metric's samples whose labels include `having` (e.g. 'code="500"'). */
function sumOf(values: Map<string, number>, name: string, having = ''): number {
  let sum = 0;
  for (const [key, value] of values) if ((key === name || key.startsWith(`${name}{`)) && key.includes(having)) sum += value;
  return sum;
}

describe('GET /metrics: Prometheus metrics of a server and of the batches in its Redis', () => {
  const h = useSimulatorAndRedis('api-metrics', { failure_rate: 0.15, latency_ms: 2, seed: 11 });
  const token = 'metrics-test-token';
  const auth = { authorization: `Bearer ${token}` };

  it("counts a finished batch's rows, cost and calls as its outputs do, and an open batch's rows as they wait", async () => {
    const dir = await tempDir('api-metrics');
    // The LLM classifier too: its calls are made in the row planner, not the row runner, and are counted as well.
    const config = await writeSimConfig(dir, h.sim.url, { budget: { monthly_usd: 50 }, routing: { classifier: 'llm', llm_classifier: { model: 'fast' } } });
    const input = await writePromptsCsv(dir, 40, { model: (row) => (row === 3 ? 'no-such-model' : row % 2 === 0 ? 'slow' : undefined) });
    const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env({ SWITCHYARD_API_TOKEN: token }));

    // Behind the token like every endpoint but /healthz: it names batches and what they cost.
    const refused = await fetch(`${server.url}/metrics`);
    expect(refused.status).toBe(401);
    expect((await fetch(`${server.url}/metrics`, { method: 'POST', headers: auth })).status).toBe(405);
    expect((await fetch(`${server.url}/metrics?x=1`, { headers: auth })).status).toBe(400);

    const posted = await fetch(`${server.url}/v1/batches?batch_id=m-done&budget=3`, { method: 'POST', body: await readFile(input, 'utf8'), headers: { 'content-type': 'text/csv', ...auth } });
    expect(posted.status).toBe(202);
    let view: BatchView | null = null;
    await waitFor(async () => {
      view = (await (await fetch(`${server.url}/v1/batches/m-done`, { headers: auth })).json()) as BatchView;
      return view.finished;
    }, 60_000);
    const calls = await readJsonLines<CallRecord>(join(dir, 'out', 'm-done', 'costs.jsonl'));
    const failedCalls = calls.filter((c) => c.status === 'failed').length;
    expect(failedCalls).toBeGreaterThan(0); // the injected 500s, retried
    expect(calls.some((c) => c.purpose === 'classify')).toBe(true);

    // The month's spend reaches Redis within a second of the calls (month-spend.ts) when the config's cap reserves it, at once.
    let page = '';
    await waitFor(async () => {
      const answer = await fetch(`${server.url}/metrics`, { headers: auth });
      expect(answer.status).toBe(200);
      expect(answer.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      page = await answer.text();
      return samples(page).get('switchyard_month_spent_usd')! > 0;
    }, 10_000);
    const values = samples(page);
    const done = view!;
    expect(done).toMatchObject({ status: 'completed', rows: { total: 39, succeeded: 39, invalid: 1 } });

    expect(values.get('switchyard_redis_up')).toBe(1);
    expect(values.get('switchyard_batches{status="completed"}')).toBe(1);
    expect(values.get('switchyard_batches{status="running"}')).toBe(0);
    expect(values.get('switchyard_batches_in_redis')).toBe(1);
    expect(values.get('switchyard_batch_info{batch_id="m-done",status="completed"}')).toBe(1);
    expect(values.get('switchyard_batch_rows{batch_id="m-done"}')).toBe(39);
    expect(values.get('switchyard_batch_rows_finished{batch_id="m-done"}')).toBe(39);
    expect(values.get('switchyard_batch_rows_succeeded{batch_id="m-done"}')).toBe(39);
    expect(values.get('switchyard_batch_rows_failed{batch_id="m-done"}')).toBe(0);
    expect(values.get('switchyard_batch_rows_queued{batch_id="m-done"}')).toBe(0);
    expect(values.get('switchyard_batch_rows_invalid{batch_id="m-done"}')).toBe(1);
    expect(values.get('switchyard_batch_budget_usd{batch_id="m-done"}')).toBe(3);
    expect(values.get('switchyard_batch_cost_usd{batch_id="m-done"}')).toBeCloseTo(done.cost_usd, 12);
    expect(values.get('switchyard_month_spent_usd')).toBeCloseTo(done.cost_usd, 12);
    expect(values.get('switchyard_month_budget_usd')).toBe(50);
    expect(values.get('switchyard_workers_connected')).toBeGreaterThanOrEqual(1);
    expect(values.get(`switchyard_batch_started_timestamp_seconds{batch_id="m-done"}`)).toBe(Date.parse(done.started_at!) / 1000);

    // This server's workers made every call, so its in-memory counts are the batch's cost records.
    expect(sumOf(values, 'switchyard_process_model_calls_total')).toBe(calls.length);
    expect(sumOf(values, 'switchyard_process_model_calls_total', 'outcome="failed"')).toBe(failedCalls);
    expect(sumOf(values, 'switchyard_process_model_calls_total', 'code="500"')).toBe(calls.filter((c) => c.http_status === 500).length);
    expect(sumOf(values, 'switchyard_process_model_calls_total', 'model="slow"')).toBe(calls.filter((c) => c.model === 'slow').length);
    expect(sumOf(values, 'switchyard_process_model_retries_total')).toBe(calls.filter((c) => c.attempt > 1).length);
    expect(sumOf(values, 'switchyard_process_model_cost_usd_total')).toBeCloseTo(done.cost_usd, 12);
    expect(sumOf(values, 'switchyard_process_model_call_duration_seconds_count')).toBe(calls.length);
    expect(values.get('switchyard_process_model_call_duration_seconds_bucket{model="fast",le="+Inf"}')).toBe(calls.filter((c) => c.model === 'fast').length);

    // An open batch: posted to a server without workers (on a prefix of its own), its rows wait in the queue.
    const idle = await startServer(['--config', config, '--out', join(dir, 'out-idle'), '--no-worker'], h.env({ SWITCHYARD_API_TOKEN: token, SWITCHYARD_PREFIX: `${h.prefix}-idle` }));
    expect((await fetch(`${idle.url}/v1/batches?batch_id=m-open`, { method: 'POST', body: await readFile(input, 'utf8'), headers: { 'content-type': 'text/csv', ...auth } })).status).toBe(202);
    let open = new Map<string, number>();
    await waitFor(async () => {
      open = samples(await (await fetch(`${idle.url}/metrics`, { headers: auth })).text());
      return open.get('switchyard_batch_rows{batch_id="m-open"}') === 39;
    }, 20_000);
    expect(open.get('switchyard_batch_info{batch_id="m-open",status="running"}')).toBe(1);
    expect(open.get('switchyard_batches{status="running"}')).toBe(1);
    expect(open.get('switchyard_batch_rows_queued{batch_id="m-open"}')).toBe(39);
    expect(open.get('switchyard_batch_rows_finished{batch_id="m-open"}')).toBe(0);
    expect(open.get('switchyard_batch_cost_usd{batch_id="m-open"}')).toBe(0);
    expect(open.get('switchyard_workers_connected')).toBe(0);
    // Not the other prefix's batch, and no calls made here: no call counts at all.
    expect([...open.keys()].some((key) => key.includes('m-done'))).toBe(false);
    expect(sumOf(open, 'switchyard_process_model_calls_total')).toBe(0);
  });

  it('still answers while Redis is away or frozen, saying so (switchyard_redis_up 0) beside the process figures, and reads it again once it is back', async () => {
    const dir = await tempDir('api-metrics-redis');
    const config = await writeSimConfig(dir, h.sim.url);
    const own = await startRedisServer({ dir: join(dir, 'redis'), persist: false });
    let redisServer: RedisServerHandle | null = own;
    try {
      const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env({ REDIS_URL: own.url }));
      const scrape = async () => {
        const answer = await fetch(`${server.url}/metrics`);
        return { status: answer.status, values: samples(await answer.text()) };
      };
      expect((await scrape()).values.get('switchyard_redis_up')).toBe(1);
      await own.stop();
      redisServer = null;
      await waitFor(async () => (await fetch(`${server.url}/healthz`)).status === 503, 10_000);
      const started = Date.now();
      const away = await scrape();
      expect(Date.now() - started).toBeLessThan(2000);
      expect(away.status).toBe(200);
      expect(away.values.get('switchyard_redis_up')).toBe(0);
      expect(away.values.has('process_start_time_seconds')).toBe(true);
      expect(away.values.has('switchyard_batches_in_redis')).toBe(false);

      redisServer = await startRedisServer({ dir: join(dir, 'redis'), persist: false, port: own.port });
      await waitFor(async () => (await scrape()).values.get('switchyard_redis_up') === 1, 20_000);

      // Connections open, nothing answered: the scrape gives up on Redis after 5 s, within Prometheus' default 10 s scrape timeout.
      const frozen = redisServer.pid;
      process.kill(frozen, 'SIGSTOP');
      try {
        const slow = Date.now();
        const stuck = await scrape();
        expect(Date.now() - slow).toBeLessThan(8000);
        expect(stuck.status).toBe(200);
        expect(stuck.values.get('switchyard_redis_up')).toBe(0);
      } finally {
        process.kill(frozen, 'SIGCONT');
      }
      await waitFor(async () => (await scrape()).values.get('switchyard_redis_up') === 1, 20_000);
    } finally {
      await redisServer?.stop();
    }
  });
});
