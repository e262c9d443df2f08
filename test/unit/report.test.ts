import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mulberry32 } from '../../src/sim/prng.ts';
import { callCostNanos, formatUsd, nanosToUsd, usdToNanos } from '../../src/models/pricing.ts';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import { countInvalidRow, type InvalidRowCounts, type RowError } from '../../src/input/row.ts';
import { readJsonl } from '../../src/output/read-jsonl.ts';
import { reportModels, ReportTally, type ReportSpan } from '../../src/output/report.ts';
import type { Report } from '../../src/output/report-json.ts';
import { renderHeadline, renderReportMarkdown } from '../../src/output/report-markdown.ts';
import { renderSummaryLines } from '../../src/output/report-summary.ts';
import { readWrittenReport, writeReport } from '../../src/output/write-report.ts';
import { reportSchema } from '../../src/output/report-schema.ts';

/** Deterministic, so failures are reproducible. */
const rng = mulberry32;

const random = rng(42);
const int = (min: number, max: number): number => min + Math.floor(random() * (max - min + 1));
const MODELS = ['alpha', 'beta', 'gamma', 'no-price'] as const;
const PRICES = new Map<string, { input_per_mtok: number; output_per_mtok: number }>(
  MODELS.filter((m) => m !== 'no-price').map((m) => [
    m,
    { input_per_mtok: Math.round(random() * 5000) / 1000, output_per_mtok: Math.round(random() * 20000) / 1000 },
  ]),
);

interface Expected {
  rows: number;
  succeeded: number;
  calls: number;
  failedCalls: number;
  inputTokens: number;
  outputTokens: number;
  costNanos: number;
  unpriced: number;
  perModel: Map<string, { rows: number; succeeded: number; failed: number; calls: number; failedCalls: number; inputTokens: number; outputTokens: number; costNanos: number; unpriced: number; latencies: number[] }>;
  rowErrors: Record<string, number>;
  callErrors: Record<string, number>;
}

/** 10,000 results and 12,000 calls: every 5th row's first call fails (429) and falls back; every 50th row fails for good (timeout). */
function generate(): { results: string; costs: string; expected: Expected } {
  const expected: Expected = {
    rows: 0, succeeded: 0, calls: 0, failedCalls: 0, inputTokens: 0, outputTokens: 0, costNanos: 0, unpriced: 0,
    perModel: new Map(), rowErrors: {}, callErrors: {},
  };
  const model = (name: string) => {
    let m = expected.perModel.get(name);
    if (!m) {
      m = { rows: 0, succeeded: 0, failed: 0, calls: 0, failedCalls: 0, inputTokens: 0, outputTokens: 0, costNanos: 0, unpriced: 0, latencies: [] };
      expected.perModel.set(name, m);
    }
    return m;
  };
  const resultLines: string[] = [];
  const costLines: string[] = [];

  for (let row = 1; row <= 10_000; row += 1) {
    const first = MODELS[int(0, MODELS.length - 1)]!;
    const chain = row % 5 === 0 ? [first, MODELS[(MODELS.indexOf(first) + 1) % MODELS.length]!] : [first];
    let finalStatus: 'succeeded' | 'failed' = 'succeeded';
    let errorCode: string | undefined;
    chain.forEach((name, index) => {
      const last = index === chain.length - 1;
      const failed = !last || row % 50 === 0;
      const code = !last ? 'rate_limited' : 'timeout';
      const usage = failed ? { input_tokens: last ? 0 : int(5, 50), output_tokens: 0 } : { input_tokens: int(5, 2000), output_tokens: int(1, 800) };
      const nanos = callCostNanos(PRICES.get(name), usage);
      const latency = failed ? (last ? 30_000 : int(1, 20)) : Math.round(Math.exp(5 + random() * 3 + random()) * 10) / 10;
      const call: CallRecord = {
        batch_id: 'b1', row, id: String(row), model: name, attempt: 1, purpose: 'answer', task_type: row % 2 ? 'simple' : 'coding', chain_position: index,
        status: failed ? 'failed' : 'succeeded', http_status: failed ? (last ? null : 429) : 200,
        ...usage, cost_usd: nanos === null ? null : nanosToUsd(nanos), latency_ms: latency,
        started_at: '2026-11-02T10:00:00.000Z', ...(failed ? { error_code: code } : {}),
      };
      costLines.push(JSON.stringify(call));
      const m = model(name);
      expected.calls += 1;
      m.calls += 1;
      expected.inputTokens += usage.input_tokens;
      expected.outputTokens += usage.output_tokens;
      m.inputTokens += usage.input_tokens;
      m.outputTokens += usage.output_tokens;
      if (call.cost_usd === null) {
        expected.unpriced += 1;
        m.unpriced += 1;
      } else {
        expected.costNanos += usdToNanos(call.cost_usd);
        m.costNanos += usdToNanos(call.cost_usd);
      }
      if (failed) {
        expected.failedCalls += 1;
        m.failedCalls += 1;
        expected.callErrors[code] = (expected.callErrors[code] ?? 0) + 1;
      } else {
        m.latencies.push(latency);
      }
      if (last && failed) {
        finalStatus = 'failed';
        errorCode = code;
      }
    });
    const finalModel = chain[chain.length - 1]!;
    const result: RowResult = {
      id: String(row), row, status: finalStatus, model: finalModel, output: finalStatus === 'succeeded' ? `answer ${row}` : null,
      usage: { input_tokens: 1, output_tokens: 1 }, cost_usd: null, latency_ms: 1, attempts: chain.length,
      metadata: {}, completed_at: '2026-11-02T10:00:00.000Z',
      task_type: row % 2 ? 'simple' : 'coding', route_reason: 'rules', models_tried: chain, final_model: finalStatus === 'succeeded' ? finalModel : null,
      fallback_reason: chain.length > 1 ? 'rate limited' : null,
      ...(errorCode ? { error: { code: errorCode, message: 'no answer', http_status: null } } : {}),
    };
    resultLines.push(JSON.stringify(result));
    const m = model(finalModel);
    expected.rows += 1;
    m.rows += 1;
    if (finalStatus === 'succeeded') {
      expected.succeeded += 1;
      m.succeeded += 1;
    } else {
      m.failed += 1;
      expected.rowErrors[errorCode!] = (expected.rowErrors[errorCode!] ?? 0) + 1;
    }
  }
  return { results: resultLines.join('\n') + '\n', costs: costLines.join('\n') + '\n', expected };
}

function nearestRank(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
}

/** A report from a results.jsonl and a costs.jsonl, tallied as finalizing a batch does. */
async function buildReport(options: ReportSpan & { resultsPath: string; costsPath: string }): Promise<Report> {
  const tally = new ReportTally();
  for await (const result of readJsonl<RowResult>(options.resultsPath)) tally.addResult(result);
  for await (const call of readJsonl<CallRecord>(options.costsPath)) tally.addCall(call);
  return tally.build(options);
}

describe('buildReport', () => {
  let dir: string;
  let report: Report;
  let expected: Expected;
  let costsText: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'switchyard-report-'));
    const fixture = generate();
    expected = fixture.expected;
    costsText = fixture.costs;
    await writeFile(join(dir, 'results.jsonl'), fixture.results);
    await writeFile(join(dir, 'costs.jsonl'), fixture.costs);
    report = await buildReport({
      resultsPath: join(dir, 'results.jsonl'),
      costsPath: join(dir, 'costs.jsonl'),
      batchId: 'b1',
      startedAt: new Date('2026-11-02T10:00:00.000Z'),
      finishedAt: '2026-11-02T10:00:04.100Z',
    });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('has the fixture sizes', () => {
    expect(expected.rows).toBe(10_000);
    expect(expected.calls).toBe(12_000);
  });

  it('totals rows from results.jsonl and calls, tokens, cost from costs.jsonl', () => {
    expect(report.batch_id).toBe('b1');
    expect(report.started_at).toBe('2026-11-02T10:00:00.000Z');
    expect(report.finished_at).toBe('2026-11-02T10:00:04.100Z');
    expect(report.totals).toEqual({
      rows: 10_000,
      succeeded: expected.succeeded,
      failed: 10_000 - expected.succeeded,
      calls: 12_000,
      failed_calls: expected.failedCalls,
      input_tokens: expected.inputTokens,
      output_tokens: expected.outputTokens,
      cost_usd: nanosToUsd(expected.costNanos),
      unpriced_calls: expected.unpriced,
      usage_estimated_calls: 0,
      elapsed_ms: 4100,
      rows_this_run: 10_000,
      rows_per_second: 2439,
      invalid_rows: 0,
      unfinished_rows: 0,
    });
    expect(report.totals.failed).toBe(200);
    expect(report.totals.unpriced_calls).toBeGreaterThan(0);
  });

  it('cost_usd is exactly the nano-dollar sum of costs.jsonl, read back independently', () => {
    let nanos = 0;
    for (const line of costsText.split('\n')) {
      if (line === '') continue;
      const cost = (JSON.parse(line) as CallRecord).cost_usd;
      if (cost !== null) nanos += usdToNanos(cost);
    }
    expect(Number.isSafeInteger(nanos)).toBe(true);
    expect(report.totals.cost_usd).toBe(nanosToUsd(nanos));
    expect(usdToNanos(report.totals.cost_usd)).toBe(nanos);
    // per-model costs add up to the total, exactly, in nanos
    const perModel = Object.values(report.models).reduce((sum, m) => sum + usdToNanos(m.cost_usd), 0);
    expect(perModel).toBe(nanos);
  });

  it('per-model numbers match', () => {
    expect(Object.keys(report.models).sort()).toEqual([...MODELS].sort());
    for (const [name, m] of expected.perModel) {
      const got = report.models[name]!;
      expect(got).toMatchObject({
        rows: m.rows,
        succeeded: m.succeeded,
        failed: m.failed,
        calls: m.calls,
        failed_calls: m.failedCalls,
        input_tokens: m.inputTokens,
        output_tokens: m.outputTokens,
        cost_usd: nanosToUsd(m.costNanos),
        unpriced_calls: m.unpriced,
      });
      const p50 = nearestRank(m.latencies, 0.5);
      const p95 = nearestRank(m.latencies, 0.95);
      expect(Math.abs(got.latency_p50_ms! - p50) / p50).toBeLessThan(0.02);
      expect(Math.abs(got.latency_p95_ms! - p95) / p95).toBeLessThan(0.02);
    }
    expect(report.models['no-price']!.cost_usd).toBe(0);
    // most rows first
    const rows = Object.values(report.models).map((m) => m.rows);
    expect(rows).toEqual([...rows].sort((a, b) => b - a));
  });

  it('counts errors by code: failed rows and failed calls', () => {
    expect(report.errors).toEqual({ timeout: 200 });
    expect(report.call_errors).toEqual(expected.callErrors);
    expect(report.call_errors).toEqual({ rate_limited: 2000, timeout: 200 });
    expect(report.error_examples).toEqual({ timeout: 'no answer' });
  });

  it('renders markdown with the headline, model table and errors', () => {
    const md = renderReportMarkdown(report);
    const headline = renderHeadline(report);
    expect(headline).toMatch(/^9,800 of 10,000 rows succeeded in 4\.1 s \(2,439 rows\/s\), 12,000 calls, \$[\d.]+ \+ [\d,]+ unpriced calls$/);
    expect(md).toContain(`**${headline}**`);
    expect(md).toContain('| Model | Rows | OK | Failed | Calls | Tokens in | Tokens out | Cost | p50 | p95 |');
    for (const name of MODELS) expect(md).toMatch(new RegExp(`^\\| ${name} \\| [\\d,]+ \\|`, 'm'));
    expect(md).toContain('| no-price |');
    expect(md).toContain('n/a (no price configured)');
    expect(md).toContain('## Errors by code');
    expect(md).toContain('| Code | Rows | Example |');
    expect(md).toContain('| timeout | 200 | no answer |');
    expect(md).toContain('| rate_limited | 2,000 |');
    expect(md).toContain('- Rows: 10,000 (9,800 succeeded, 200 failed); `switchyard run --resume b1` runs the failed rows again (once what their errors say is fixed, if it needs fixing: see Errors)');
  });

  it("tells a batch posted to the API to post its file again, not to run the CLI's resume", () => {
    const md = renderReportMarkdown(report, 'api');
    expect(md).toContain('- Rows: 10,000 (9,800 succeeded, 200 failed); posting the file again with `batch_id=b1` runs the failed rows again');
    expect(md).not.toContain('switchyard run');
  });

  it('renders aligned summary lines', () => {
    const lines = renderSummaryLines(report);
    expect(lines[0]).toBe('Rows     9,800 of 10,000 succeeded, 200 failed');
    // Why calls failed, so a batch slowed by 429s says so.
    expect(lines.find((line) => line.startsWith('Calls'))).toMatch(/^Calls    12,000, [\d,]+ failed \(rate_limited 2,000(, \w+ [\d,]+)*\)$/);
    const errorsAt = lines.findIndex((line) => line.startsWith('Errors   timeout 200'));
    expect(errorsAt).toBeGreaterThan(0);
    expect(lines[errorsAt + 1]).toBe('         timeout: no answer');
    expect(lines.some((line) => /^Retries  0 calls \(\$0\); fallbacks 2,000 calls/.test(line))).toBe(true);
    const modelLines = lines.slice(lines.indexOf('Models') + 1);
    expect(modelLines).toHaveLength(4);
    // columns line up: every model line has the same length
    expect(new Set(modelLines.map((line) => line.length)).size).toBe(1);
  });

  it('shows each of the top error codes with one message, on one line and cut to length', () => {
    const long = `model "m" rejected the API key (401):\n  check $KEY ${'x'.repeat(400)}`;
    const lines = renderSummaryLines({ ...report, errors: { unauthorized: 3, timeout: 2, server_error: 1, budget_exceeded: 1 }, error_examples: { unauthorized: long, timeout: 'slow', budget_exceeded: 'over budget' } });
    const examples = lines.filter((line) => line.startsWith('         ') && line.includes(': '));
    expect(examples.map((line) => line.trim().split(':')[0])).toEqual(['unauthorized', 'timeout']);
    expect(examples[0]).toMatch(/^ {9}unauthorized: model "m" rejected the API key \(401\): check \$KEY x+…$/);
    expect(examples[0]!.length).toBe(9 + 'unauthorized: '.length + 300);
  });

  it('splits rows and cost by task type and counts fallback calls', () => {
    expect(Object.keys(report.task_types).sort()).toEqual(['coding', 'simple']);
    const taskRows = Object.values(report.task_types).reduce((sum, t) => sum + t.rows, 0);
    expect(taskRows).toBe(10_000);
    const taskCost = Object.values(report.task_types).reduce((sum, t) => sum + usdToNanos(t.cost_usd), 0);
    expect(taskCost).toBe(usdToNanos(report.totals.cost_usd));
    expect(report.extra_calls.fallback_calls).toBe(2000);
    expect(report.baseline).toBeNull();
  });

  it("keeps fallback calls to an unpriced model out of the fallbacks' cost, and says how many they were", () => {
    const fallbacks = costsText.trim().split('\n').map((line) => JSON.parse(line) as CallRecord).filter((call) => (call.chain_position ?? 0) > 0);
    const unpriced = fallbacks.filter((call) => call.cost_usd === null).length;
    const nanos = fallbacks.reduce((sum, call) => sum + (call.cost_usd === null ? 0 : usdToNanos(call.cost_usd)), 0);
    expect(unpriced).toBeGreaterThan(0);
    expect(report.extra_calls).toMatchObject({ fallback_calls: 2000, fallback_unpriced_calls: unpriced, fallback_cost_usd: nanosToUsd(nanos) });
    const retries = renderSummaryLines(report).find((line) => line.startsWith('Retries'));
    expect(retries).toContain(`fallbacks 2,000 calls (${formatUsd(nanosToUsd(nanos))} + ${unpriced.toLocaleString('en-US')} unpriced calls)`);
  });

  it('writes report.json and report.md', async () => {
    const paths = writeReport(report, dir);
    expect(paths).toEqual({ jsonPath: join(dir, 'report.json'), markdownPath: join(dir, 'report.md') });
    expect(JSON.parse(await readFile(paths.jsonPath, 'utf8'))).toEqual(report);
    expect(await readFile(paths.markdownPath, 'utf8')).toBe(renderReportMarkdown(report));
    // Read back, it passes the check collect makes of it (report-schema.ts) unchanged.
    expect(await readWrittenReport(dir, report.batch_id)).toEqual(report);
  });
});

describe('buildReport on an empty batch', () => {
  it('gives zeros, nulls and no models', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-report-empty-'));
    try {
      await writeFile(join(dir, 'results.jsonl'), '');
      await writeFile(join(dir, 'costs.jsonl'), '');
      const report = await buildReport({
        resultsPath: join(dir, 'results.jsonl'),
        costsPath: join(dir, 'costs.jsonl'),
        batchId: 'empty',
        startedAt: '2026-11-02T10:00:00.000Z',
        finishedAt: '2026-11-02T10:00:00.000Z',
      });
      expect(report.totals).toMatchObject({ rows: 0, calls: 0, cost_usd: 0, elapsed_ms: 0, rows_per_second: null });
      expect(report.models).toEqual({});
      expect(renderHeadline(report)).toBe('0 of 0 rows succeeded in 0 ms (n/a rows/s), 0 calls, $0');
      expect(renderReportMarkdown(report)).toContain('No rows failed.');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a run stopped before any row finished', () => {
  it('says 0 rows finished and how many are not run yet, not "0 of 0 succeeded, 0 failed" (QA)', () => {
    const built = new ReportTally().build({ batchId: 'b1', startedAt: '2026-11-02T10:00:00.000Z', finishedAt: '2026-11-02T10:00:03.000Z' }, {});
    const stopped: Report = { ...built, totals: { ...built.totals, unfinished_rows: 100 } };
    expect(renderSummaryLines(stopped)[0]).toBe('Rows    0 finished; 100 not run yet');
    expect(renderHeadline(stopped)).toBe('Stopped early: 0 rows finished in 3.0 s (0 rows/s), 0 calls, $0; 100 rows not run yet');
    const readToNoEnd: Report = { ...built, totals: { ...built.totals, unfinished_rows: null } };
    expect(renderSummaryLines(readToNoEnd)[0]).toBe('Rows    0 finished; the rest of the file not run yet');
    // A row finished: the line scripts look for ("Rows +N of N succeeded, F failed") is as before.
    const oneDone: Report = { ...built, totals: { ...built.totals, rows: 1, succeeded: 1, unfinished_rows: 99 } };
    expect(renderSummaryLines(oneDone)[0]).toBe('Rows    1 of 1 succeeded, 0 failed; 99 rows not run yet');
  });
});

describe('a cancelled batch', () => {
  it('says it was cancelled, not that its run stopped early (QA: a team read its cancelled batch as one that broke)', () => {
    const built = new ReportTally().build({ batchId: 'b1', startedAt: '2026-11-02T10:00:00.000Z', finishedAt: '2026-11-02T10:00:03.000Z' }, {});
    const cancelled: Report = { ...built, cancelled: true, totals: { ...built.totals, rows: 4, succeeded: 4, unfinished_rows: 96 } };
    expect(renderHeadline(cancelled)).toBe('Cancelled: 4 of 4 rows succeeded in 3.0 s (0 rows this run, 0 rows/s), 0 calls, $0; 96 rows not run yet');
    expect(renderReportMarkdown(cancelled, 'api')).toContain('96 rows not run yet: the batch was cancelled, and posting the file again with `batch_id=b1` runs the rest');
    expect(reportSchema.safeParse(JSON.parse(JSON.stringify(cancelled))).success).toBe(true);
  });
});

describe('invalid input rows', () => {
  it('are counted by code beside the rows, with their first message, in report.md and the summary', () => {
    const invalid: InvalidRowCounts = {};
    const rowError = (line: number, code: RowError['code'], message: string): RowError => ({ row: line, line, code, message });
    countInvalidRow(invalid, rowError(2, 'bad_json', 'invalid JSON: Unexpected token'));
    countInvalidRow(invalid, rowError(3, 'bad_encoding', 'line 3 is not UTF-8 text (some bytes cannot be decoded); save the file as UTF-8'));
    countInvalidRow(invalid, rowError(5, 'bad_encoding', 'line 5 is not UTF-8 text'));
    const report = new ReportTally().build({ batchId: 'b1', startedAt: '2026-11-02T10:00:00.000Z', finishedAt: '2026-11-02T10:00:01.000Z' }, invalid);
    expect(report.totals.invalid_rows).toBe(3);
    expect(report.invalid_input).toEqual({ bad_encoding: 2, bad_json: 1 });
    expect(report.invalid_input_examples).toEqual({ bad_encoding: 'line 3 is not UTF-8 text (some bytes cannot be decoded); save the file as UTF-8', bad_json: 'line 2: invalid JSON: Unexpected token' });
    expect(renderHeadline(report)).toBe('0 of 0 rows succeeded in 1.0 s (0 rows/s), 0 calls, $0; 3 invalid rows not run');
    const md = renderReportMarkdown(report);
    expect(md).toContain('- Rows: 0 (0 succeeded, 0 failed); 3 invalid input rows not run (errors.jsonl)');
    expect(md).toContain('Fix them in place (the other rows keep their lines): `switchyard run --resume b1` runs them, and rows that succeeded are not run again.');
    expect(renderReportMarkdown(report, 'api')).toContain('Fix them in place (the other rows keep their lines): posting the file again with `batch_id=b1` runs them');
    expect(md).toContain('| bad_encoding | 2 | line 3 is not UTF-8 text (some bytes cannot be decoded); save the file as UTF-8 |');
    const lines = renderSummaryLines(report);
    expect(lines).toContain('Invalid  3 rows not run (errors.jsonl): bad_encoding 2, bad_json 1');
    expect(lines).toContain('         bad_json: line 2: invalid JSON: Unexpected token');
  });

  it("show the control characters of the text they quote in report.md, which `cat` would otherwise send to the terminal (QA: a provider's error cleared the screen)", () => {
    const invalid: InvalidRowCounts = {};
    countInvalidRow(invalid, { row: 1, line: 1, code: 'unknown_model', message: 'unknown model "evil\x1b[2J\x1b]0;owned\x07"' });
    const md = renderReportMarkdown(new ReportTally().build({ batchId: 'b1', startedAt: '2026-11-02T10:00:00.000Z', finishedAt: '2026-11-02T10:00:01.000Z' }, invalid));
    expect(md).toContain('| unknown_model | 1 | line 1: unknown model "evil\\x1b[2J\\x1b]0;owned\\x07" |');
    expect(md).not.toMatch(/[\x07\x1b]/);
  });

  it('leave the report as it was when there are none', () => {
    const report = new ReportTally().build({ batchId: 'b2', startedAt: '2026-11-02T10:00:00.000Z', finishedAt: '2026-11-02T10:00:01.000Z' });
    expect(report.totals.invalid_rows).toBe(0);
    expect(report.invalid_input).toEqual({});
    expect(renderReportMarkdown(report)).not.toContain('Invalid input rows');
    expect(renderSummaryLines(report).some((line) => line.startsWith('Invalid'))).toBe(false);
  });
});

describe('failed calls', () => {
  const span = { batchId: 'outage', startedAt: '2026-11-02T10:00:00.000Z', finishedAt: '2026-11-02T10:00:30.000Z' };
  const refused = 'model "flash" at http://127.0.0.1:18916/v1 failed: connect ECONNREFUSED 127.0.0.1:18916 (nothing listens there)';
  const call = (row: number, status: CallRecord['status'], error?: { code: string; message?: string }): CallRecord => ({
    batch_id: 'outage', row, id: `r${row}`, model: 'flash', attempt: 1, purpose: 'answer', task_type: null, chain_position: 0, status, http_status: status === 'succeeded' ? 200 : null,
    input_tokens: status === 'succeeded' ? 10 : 0, output_tokens: status === 'succeeded' ? 5 : 0, cost_usd: 0, latency_ms: 5, started_at: span.startedAt,
    ...(error ? { error_code: error.code, ...(error.message !== undefined && { error_message: error.message }) } : {}),
  });
  const succeeded = (row: number): RowResult => ({
    id: `r${row}`, row, status: 'succeeded', model: 'flash', output: 'ok', usage: { input_tokens: 10, output_tokens: 5 }, cost_usd: 0, latency_ms: 5, attempts: 2,
    metadata: {}, task_type: null, route_reason: 'default', models_tried: ['flash'], final_model: 'flash', fallback_reason: null, completed_at: span.finishedAt,
  });

  it("name an outage the rows rode out: the first message of each code, in report.json, report.md and the summary (QA: \"connection_error | 43\" alone)", () => {
    const tally = new ReportTally();
    for (let row = 1; row <= 3; row++) {
      tally.addResult(succeeded(row));
      tally.addCall(call(row, 'failed', { code: 'connection_error', message: row === 1 ? refused : `another refusal ${row}` }));
      tally.addCall(call(row, 'succeeded'));
    }
    // A call recorded before calls kept their message (an older costs.jsonl): counted, no example from it.
    tally.addCall(call(4, 'failed', { code: 'timeout' }));
    const report = tally.build(span);
    expect(report.call_errors).toEqual({ connection_error: 3, timeout: 1 });
    expect(report.call_error_examples).toEqual({ connection_error: refused });
    expect(renderReportMarkdown(report)).toMatch(/### Failed calls by code\n\n\| Code +\| Calls \| Example +\|\n.*\n\| connection_error \| +3 \| model "flash" at http:\/\/127\.0\.0\.1:18916\/v1 failed: connect ECONNREFUSED .*\|\n\| timeout +\| +1 \| +\|/);
    const lines = renderSummaryLines(report);
    const calls = lines.findIndex((line) => line.startsWith('Calls'));
    expect(lines[calls]).toBe('Calls   7, 4 failed (connection_error 3, timeout 1)');
    expect(lines[calls + 1]).toBe(`        connection_error: ${refused}`);
  });

  it("count the rows a model's rate limit sent on to their fallbacks (on_limit: fallback), in report.json and report.md, with what they cost against the same tokens at its price (QA: 293 of 300 rows on a fallback 5 times the price, said nowhere; 584 FAQ rows at 34 times, the cost said nowhere)", () => {
    // lim: $1 in, $2 out a million tokens; each row's 10,000 in and 5,000 out cost $0.02 there, and $0.68 on ok.
    const tally = new ReportTally(undefined, undefined, reportModels({ models: { lim: { price: { input_per_mtok: 1, output_per_mtok: 2 } } } }));
    const past = (row: number, reason: string): RowResult => ({ ...succeeded(row), model: 'ok', final_model: 'ok', models_tried: ['ok'], fallback_reason: reason, usage: { input_tokens: 10_000, output_tokens: 5_000 }, cost_usd: 0.68 });
    tally.addResult(past(1, 'lim: rate limited (requests) for 12 s, over limits.max_wait_ms'));
    tally.addResult(past(2, 'lim: rate limited (tokens) for 3.5 s, over limits.max_wait_ms'));
    tally.addResult(past(3, 'fast: server_error after 3 attempts; lim: rate limited for 30 s, over limits.max_wait_ms'));
    tally.addResult(past(4, 'lim: circuit open after repeated failures (next probe in 20 s, at 10:00:20 UTC)'));
    tally.addResult(succeeded(5));
    const report = tally.build(span);
    expect(report.extra_calls.rows_past_rate_limit).toEqual({ lim: 3 });
    expect(report.extra_calls.past_rate_limit_cost).toEqual({ lim: { rows: 3, cost_usd: 2.04, unpriced_rows: 0, cost_at_its_price_usd: 0.06 } });
    expect(renderReportMarkdown(report)).toContain(
      "\n- Rate limits: 3 rows went on past lim for its rate limit (on_limit: fallback; the next slot over limits.max_wait_ms away); their answers cost $2.04, 34x the $0.0600 of the same tokens at lim's price\n",
    );
    expect(renderReportMarkdown(new ReportTally().build(span))).not.toContain('- Rate limits:');
  });

  it("count an ensemble's rows past a rate limit under the model's name, not \"flash: flash\" (QA: `75 rows went on past flash: flash`)", () => {
    const tally = new ReportTally();
    const past = (row: number, reason: string): RowResult => ({ ...succeeded(row), model: 'ok', final_model: 'ok', models_tried: ['ok'], fallback_reason: reason });
    // As ensemble-row.ts words them: the member's name, then its own fallback_reason, whose first model is the member's.
    tally.addResult(past(1, 'member flash: flash: rate limited (requests) for 2.0 s, over limits.max_wait_ms'));
    tally.addResult(past(2, 'member qwen: qwen: server_error after 3 attempts; flash: rate limited for 3 s, over limits.max_wait_ms'));
    tally.addResult(past(3, 'member glm: glm: server_error after 3 attempts; synthesis: pro: rate limited (requests) for 33 s, over limits.max_wait_ms'));
    tally.addResult(past(4, 'member llama3:8b: llama3:8b: rate limited (tokens) for 4 s, over limits.max_wait_ms'));
    const report = tally.build(span);
    expect(report.extra_calls.rows_past_rate_limit).toEqual({ flash: 2, 'llama3:8b': 1, pro: 1 });
  });

  it("count an ensemble's succeeded rows synthesized from fewer answers than its members, in report.json, report.md and the summary (QA: 28 of 28 council rows on 2 of 3 answers, said nowhere)", () => {
    const tally = new ReportTally();
    const member = (model: string, ok: boolean) => ({ model, status: ok ? 'succeeded' as const : 'failed' as const, output: ok ? 'a' : null, final_model: ok ? model : null, ...(ok ? {} : { error: { code: 'server_error', message: `${model} failed` } }) });
    const councilRow = (row: number, glmAnswered: boolean, status: RowResult['status'] = 'succeeded'): RowResult => ({
      ...succeeded(row), model: 'pro', final_model: 'pro', status,
      ensemble: { name: 'council', synthesizer: 'pro', members: [member('flash', true), member('qwen', true), member('glm', glmAnswered)] },
    });
    tally.addResult(councilRow(1, false));
    tally.addResult(councilRow(2, false));
    tally.addResult(councilRow(3, true));
    tally.addResult({ ...councilRow(4, false, 'failed'), output: null, error: { code: 'budget_exceeded', message: 'spent' } }); // no answer: not "short"
    const report = tally.build(span);
    expect(report.ensembles.council).toMatchObject({ rows: 4, succeeded: 3, rows_short_of_members: 2 });
    expect(renderReportMarkdown(report)).toContain('Synthesized from fewer answers than the ensemble has members (a member failed after its retries and fallbacks, or was given up for its rate limit): council: 2 of its 3 succeeded rows.');
    expect(renderSummaryLines(report).find((line) => line.startsWith('  council'))).toMatch(/ 2 from fewer answers than members$/);
  });

  it("leave a code some row failed with to the Errors line, which gives that row's message", () => {
    const tally = new ReportTally();
    tally.addResult({ ...succeeded(1), status: 'failed', output: null, final_model: null, error: { code: 'connection_error', message: `every model in the chain failed; the last call's error: ${refused}` } });
    tally.addCall(call(1, 'failed', { code: 'connection_error', message: refused }));
    const lines = renderSummaryLines(tally.build(span));
    expect(lines.filter((line) => line.includes(refused))).toHaveLength(1);
    expect(lines.find((line) => line.includes(refused))).toMatch(/^ +connection_error: every model in the chain failed/);
  });

  it('read back a report.json written before calls kept their message, and render it as before', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-report-old-'));
    try {
      const tally = new ReportTally();
      tally.addCall(call(1, 'failed', { code: 'timeout' }));
      const { call_error_examples: _none, ...older } = tally.build(span);
      await writeFile(join(dir, 'report.json'), JSON.stringify(older));
      const read = await readWrittenReport(dir, 'outage');
      expect(read?.call_error_examples).toBeUndefined();
      expect(renderReportMarkdown(read!)).toMatch(/### Failed calls by code\n\n\| Code +\| Calls \|\n.*\n\| timeout \| +1 \|/);
      expect(renderSummaryLines(read!).some((line) => line.includes('timeout:'))).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a resumed batch', () => {
  it('rates only the rows this run finished, and says how many they were', () => {
    const runStartedAt = new Date('2026-11-02T10:00:00.000Z');
    const tally = new ReportTally(undefined, runStartedAt);
    const result = (row: number, completedAt: string): RowResult => ({
      id: String(row), row, status: 'succeeded', model: 'm', output: 'ok', usage: { input_tokens: 1, output_tokens: 1 },
      cost_usd: 0, latency_ms: 1, attempts: 1, metadata: {}, completed_at: completedAt,
      task_type: null, route_reason: 'pinned', models_tried: ['m'], final_model: 'm', fallback_reason: null,
    });
    for (let row = 1; row <= 600; row++) tally.addResult(result(row, '2026-11-01T09:00:00.000Z')); // the earlier run
    for (let row = 601; row <= 1000; row++) tally.addResult(result(row, '2026-11-02T10:00:01.000Z'));
    const report = tally.build({ batchId: 'resumed', startedAt: runStartedAt, finishedAt: '2026-11-02T10:00:02.000Z' });
    expect(report.totals).toMatchObject({ rows: 1000, rows_this_run: 400, elapsed_ms: 2000, rows_per_second: 200 });
    expect(renderHeadline(report)).toBe('1,000 of 1,000 rows succeeded in 2.0 s (400 rows this run, 200 rows/s), 0 calls, $0');
    // When this run ran, for a log that many nights append to (QA).
    expect(renderSummaryLines(report)).toContain('Time    2.0 s (400 rows this run, 200 rows/s), 2026-11-02 10:00:00 to 10:00:02 UTC');
    expect(renderSummaryLines({ ...report, started_at: '2026-11-02T23:59:59.000Z', finished_at: '2026-11-03T00:00:01.000Z' })).toContain('Time    2.0 s (400 rows this run, 200 rows/s), 2026-11-02 23:59:59 to 2026-11-03 00:00:01 UTC');
    expect(renderSummaryLines({ ...report, finished_at: '2026-11-02T10:00:00.400Z' })).toContain('Time    2.0 s (400 rows this run, 200 rows/s), 2026-11-02 10:00:00 UTC');
  });

  it("counts each model's calls this run apart from the batch's (a resume's pace)", () => {
    const runStartedAt = new Date('2026-11-02T10:00:00.000Z');
    const tally = new ReportTally(undefined, runStartedAt);
    const call = (row: number, model: string, startedAt: string): CallRecord => ({
      batch_id: 'resumed', row, id: String(row), model, attempt: 1, purpose: 'answer', task_type: 'simple', chain_position: 0,
      status: 'succeeded', http_status: 200, input_tokens: 1, output_tokens: 1, cost_usd: 0, latency_ms: 1, started_at: startedAt,
    });
    for (let row = 1; row <= 5; row++) tally.addCall(call(row, 'answerer', '2026-11-01T09:00:00.000Z')); // the earlier run
    for (let row = 1; row <= 5; row++) tally.addCall(call(row, 'judge', '2026-11-02T10:00:01.000Z'));
    tally.addCall(call(6, 'answerer', 'not a time')); // counted as this run's, as a row with no stamp is
    const report = tally.build({ batchId: 'resumed', startedAt: runStartedAt, finishedAt: '2026-11-02T10:00:02.000Z' });
    expect(report.models.answerer).toMatchObject({ calls: 6, calls_this_run: 1 });
    expect(report.models.judge).toMatchObject({ calls: 5, calls_this_run: 5 });
    // Neither waited for a rate-limit slot.
    expect(report.models.judge).not.toHaveProperty('limit_waits_this_run');
  });

  it("sums how long this run's calls waited on each model's rate limits (the summary says so when other batches set the pace)", () => {
    const runStartedAt = new Date('2026-11-02T10:00:00.000Z');
    const tally = new ReportTally(undefined, runStartedAt);
    const call = (row: number, startedAt: string, waitMs?: number): CallRecord => ({
      batch_id: 'shared', row, id: String(row), model: 'm', attempt: 1, purpose: 'answer', task_type: 'simple', chain_position: 0,
      status: 'succeeded', http_status: 200, input_tokens: 1, output_tokens: 1, cost_usd: 0, latency_ms: 1, started_at: startedAt, ...(waitMs !== undefined && { limit_wait_ms: waitMs }),
    });
    tally.addCall(call(1, '2026-11-01T09:00:00.000Z', 60_000)); // the earlier run's
    tally.addCall(call(2, '2026-11-02T10:00:01.000Z', 1_500));
    tally.addCall(call(3, '2026-11-02T10:00:01.000Z', 2_500));
    tally.addCall(call(4, '2026-11-02T10:00:01.000Z'));
    const report = tally.build({ batchId: 'shared', startedAt: runStartedAt, finishedAt: '2026-11-02T10:00:02.000Z' });
    expect(report.models.m).toMatchObject({ calls: 4, calls_this_run: 3, limit_waits_this_run: { calls: 2, wait_ms: 4_000 } });
  });
});

describe('savings against report.baseline_model', () => {
  const span = { batchId: 'b3', startedAt: '2026-11-02T10:00:00.000Z', finishedAt: '2026-11-02T10:00:02.000Z' };
  const baseline = { model: 'pro', price: { input_per_mtok: 1, output_per_mtok: 2 } };
  const call = (row: number, attempt: number, status: CallRecord['status'], cost: number | null, tokens: [number, number]): CallRecord => ({
    batch_id: 'b3', row, id: `r${row}`, model: 'flash', attempt, purpose: 'answer', task_type: 'simple', chain_position: 0, status,
    http_status: status === 'succeeded' ? 200 : 500, input_tokens: tokens[0], output_tokens: tokens[1], cost_usd: cost, latency_ms: 50,
    started_at: span.startedAt, ...(status === 'failed' ? { error_code: 'server_error' } : {}),
  });
  const result = (row: number, status: RowResult['status']): RowResult => ({
    id: `r${row}`, row, status, model: 'flash', output: status === 'succeeded' ? 'ok' : null, usage: { input_tokens: 1000, output_tokens: 500 },
    cost_usd: 0.0004, latency_ms: 50, attempts: 1, metadata: {}, task_type: 'simple', route_reason: 'rules', models_tried: ['flash'],
    final_model: status === 'succeeded' ? 'flash' : null, fallback_reason: null, completed_at: span.finishedAt,
    ...(status === 'failed' ? { error: { code: 'server_error', message: '500 from flash' } } : {}),
  });

  it("compare what the batch paid (retries included) with what its answers' tokens cost on the baseline model", () => {
    const tally = new ReportTally(baseline);
    tally.addResult(result(1, 'succeeded'));
    tally.addCall(call(1, 1, 'failed', 0.0001, [1000, 0])); // a retry is paid for, but is not an answer
    tally.addCall(call(1, 2, 'succeeded', 0.0004, [1000, 500]));
    const report = tally.build(span);
    // On "pro" the answer would cost 1,000 x $1/M + 500 x $2/M = $0.002; the batch paid $0.0005.
    expect(report.baseline).toEqual({ model: 'pro', baseline_cost_usd: 0.002, batch_cost_usd: 0.0005, savings_usd: 0.0015, savings_percent: 75, unpriced_calls: 0 });
    expect(renderSummaryLines(report)).toContain('Savings  This batch cost $0.000500: 75% less than the $0.00200 it would have cost on pro');
    expect(renderReportMarkdown(report)).toContain('- This batch cost $0.000500: 75% less than the $0.00200 it would have cost on pro');
  });

  it('claim no saving when some answers were unpriced, and say "what it would have cost" when the batch ran on the baseline (QA)', () => {
    const unpriced = new ReportTally(baseline);
    unpriced.addResult(result(1, 'succeeded'));
    unpriced.addCall(call(1, 1, 'succeeded', null, [1000, 500]));
    const free = unpriced.build(span);
    expect(free.baseline).toMatchObject({ batch_cost_usd: 0, savings_usd: null, savings_percent: null, unpriced_calls: 1 });
    expect(renderSummaryLines(free).join('\n')).toMatch(/\nBaseline +On pro this batch would have cost \$0\.00200; what it cost is not known in full \(1 call to models with no price configured\)\n/);
    const same = new ReportTally(baseline);
    same.addResult(result(1, 'succeeded'));
    same.addCall(call(1, 1, 'succeeded', 0.002, [1000, 500]));
    expect(renderSummaryLines(same.build(span)).join('\n')).toMatch(/\nSavings +This batch cost \$0\.00200, what it would have cost on pro\n/);
  });

  it("compare the answers alone when a judge scored them: judging would cost the same on the baseline", () => {
    const tally = new ReportTally(baseline);
    tally.addResult({ ...result(1, 'succeeded'), judge: { model: 'judge', final_model: 'judge', score: 7, reason: null, cost_usd: 0.003 } });
    tally.addCall(call(1, 1, 'succeeded', 0.0004, [1000, 500]));
    tally.addCall({ ...call(1, 1, 'succeeded', 0.003, [3000, 100]), model: 'judge', purpose: 'judge' });
    const report = tally.build(span);
    expect(report.totals.cost_usd).toBe(0.0034);
    expect(report.baseline).toEqual({ model: 'pro', baseline_cost_usd: 0.002, batch_cost_usd: 0.0004, savings_usd: 0.0016, savings_percent: 80, unpriced_calls: 0 });
    expect(renderSummaryLines(report)).toContain('Savings  Its answers cost $0.000400 (the judge aside): 80% less than the $0.00200 they would have cost on pro');
  });

  it("count an ensemble row as one answer to its prompt on the baseline, not as its members' calls and the synthesis prompt", () => {
    const tally = new ReportTally(baseline);
    tally.addResult({ ...result(1, 'succeeded'), ensemble: { name: 'council', synthesizer: 'flash', members: [] } });
    tally.addCall({ ...call(1, 1, 'succeeded', 0.0001, [1000, 400]), purpose: 'ensemble_member' });
    tally.addCall({ ...call(1, 1, 'succeeded', 0.0001, [1000, 600]), model: 'glm', purpose: 'ensemble_member' });
    tally.addCall({ ...call(1, 1, 'succeeded', 0.0003, [2200, 500]), purpose: 'synthesis' });
    const report = tally.build(span);
    // On "pro" one answer: the prompt's 1,000 tokens in, the synthesis' 500 out = $0.002 (not 4,200 in and 1,500 out).
    expect(report.baseline).toMatchObject({ baseline_cost_usd: 0.002, batch_cost_usd: 0.0005 });
  });

  it('after a budget stop, set the answered rows\' own calls against their answers on the baseline, leaving out what rows with no answer paid (QA: "2276% more")', () => {
    const tally = new ReportTally(baseline);
    // An answered ensemble row: $0.0005 for its members and synthesis, $0.002 on pro.
    tally.addResult({ ...result(1, 'succeeded'), cost_usd: 0.0005, ensemble: { name: 'council', synthesizer: 'flash', members: [] } });
    tally.addCall({ ...call(1, 1, 'succeeded', 0.0001, [1000, 400]), purpose: 'ensemble_member' });
    tally.addCall({ ...call(1, 1, 'succeeded', 0.0004, [2200, 500]), purpose: 'synthesis' });
    // Nine rows whose members answered ($0.004 each) before the budget refused their synthesis.
    for (let row = 2; row <= 10; row++) {
      tally.addResult({ ...result(row, 'failed'), cost_usd: 0.004, error: { code: 'budget_exceeded', message: 'synthesis: not run' }, ensemble: { name: 'council', synthesizer: 'flash', members: [] } });
      tally.addCall({ ...call(row, 1, 'succeeded', 0.004, [1000, 400]), purpose: 'ensemble_member' });
    }
    const report = tally.build(span);
    // Every paid call against the one answer: 1,825% more. The answered row alone: 75% less.
    expect(report.baseline).toMatchObject({ baseline_cost_usd: 0.002, batch_cost_usd: 0.0365, savings_percent: -1725 });
    expect(report.baseline?.answered_rows).toEqual({ rows: 1, unpriced_rows: 0, baseline_cost_usd: 0.002, batch_cost_usd: 0.0005, savings_usd: 0.0015, savings_percent: 75 });
    const line = 'The 1 answered row cost $0.000500: 75% less than the $0.00200 it would have cost on pro; left out: the other $0.0360 paid, for rows with no answer yet (9 stopped by the budget)';
    expect(renderSummaryLines(report)).toContainEqual(expect.stringMatching(new RegExp(`^Savings +${line.replace(/[.*+?^${}()|[\]\\$]/g, '\\$&')}$`)));
    expect(renderReportMarkdown(report)).toContain(`- ${line}`);
    // Without a budget stop the batch's comparison stands, and report.json has no answered_rows.
    const plain = new ReportTally(baseline);
    plain.addResult(result(1, 'succeeded'));
    plain.addCall(call(1, 1, 'succeeded', 0.0004, [1000, 500]));
    expect(plain.build(span).baseline).not.toHaveProperty('answered_rows');
  });

  it("give the rows outside ensembles their own saving beside the whole's (QA: \"19.6% more than on pro\" for a batch whose routed rows saved 79.4%)", () => {
    const tally = new ReportTally(baseline);
    // A routed row: $0.0004 paid, $0.002 on pro.
    tally.addResult(result(1, 'succeeded'));
    tally.addCall(call(1, 1, 'succeeded', 0.0004, [1000, 500]));
    // An ensemble row: $0.005 paid for two members and a synthesis, $0.002 on pro.
    tally.addResult({ ...result(2, 'succeeded'), ensemble: { name: 'council', synthesizer: 'flash', members: [] } });
    tally.addCall({ ...call(2, 1, 'succeeded', 0.001, [1000, 400]), purpose: 'ensemble_member' });
    tally.addCall({ ...call(2, 1, 'succeeded', 0.001, [1000, 600]), model: 'glm', purpose: 'ensemble_member' });
    tally.addCall({ ...call(2, 1, 'succeeded', 0.003, [2200, 500]), purpose: 'synthesis' });
    const report = tally.build(span);
    expect(report.baseline).toMatchObject({ baseline_cost_usd: 0.004, batch_cost_usd: 0.0054, savings_percent: -35 });
    expect(report.baseline?.outside_ensembles).toEqual({ baseline_cost_usd: 0.002, batch_cost_usd: 0.0004, savings_usd: 0.0016, savings_percent: 80 });
    expect(renderSummaryLines(report)).toContain('Extra cost  This batch cost $0.00540: 35% more than the $0.00400 it would have cost on pro; the rows outside ensembles cost $0.000400, 80% less than the $0.00200 on pro');
    expect(renderReportMarkdown(report)).toContain('; the rows outside ensembles cost $0.000400, 80% less than the $0.00200 on pro');
    // A batch without ensemble rows has no such part.
    const plain = new ReportTally(baseline);
    plain.addResult(result(1, 'succeeded'));
    plain.addCall(call(1, 1, 'succeeded', 0.0004, [1000, 500]));
    expect(plain.build(span).baseline).not.toHaveProperty('outside_ensembles');
  });

  it("count an ensemble row answered by its synthesizer's fallback, or a member's, as answered by a fallback model; one answered as configured not (QA)", () => {
    const tally = new ReportTally(baseline);
    const member = (model: string, finalModel: string) => ({ model, status: 'succeeded' as const, output: 'a', final_model: finalModel });
    const ensembleRow = (row: number, synthesizedBy: string, members: ReturnType<typeof member>[]): RowResult => ({ ...result(row, 'succeeded'), model: 'council', final_model: synthesizedBy, ensemble: { name: 'council', synthesizer: 'flash', members } });
    tally.addResult(ensembleRow(1, 'flash', [member('glm', 'glm'), member('qwen', 'qwen')]));
    tally.addResult(ensembleRow(2, 'pro', [member('glm', 'glm'), member('qwen', 'qwen')]));
    tally.addResult(ensembleRow(3, 'flash', [member('glm', 'pro'), member('qwen', 'qwen')]));
    expect(tally.build(span).extra_calls.rows_on_fallback).toBe(2);
  });

  it("count an ensemble row as answered by a fallback when its synthesizer names the fallback that wrote the synthesis (QA: it named the configured one), by the synthesis' fallback_reason", () => {
    const tally = new ReportTally(baseline);
    const members = [{ model: 'glm', status: 'succeeded' as const, output: 'a', final_model: 'glm' }];
    const byFallback: RowResult = { ...result(1, 'succeeded'), model: 'pro', final_model: 'pro', fallback_reason: 'synthesis: flash: server_error after 4 attempts', ensemble: { name: 'council', synthesizer: 'pro', members } };
    const asConfigured: RowResult = { ...result(2, 'succeeded'), model: 'flash', final_model: 'flash', fallback_reason: null, ensemble: { name: 'council', synthesizer: 'flash', members } };
    tally.addResult(byFallback);
    tally.addResult(asConfigured);
    expect(tally.build(span).extra_calls.rows_on_fallback).toBe(1);
  });

  it('are an extra cost when the baseline is cheaper (QA: "Savings ... 150.1% more")', () => {
    const tally = new ReportTally(baseline);
    tally.addResult(result(1, 'succeeded'));
    tally.addCall(call(1, 1, 'succeeded', 0.005, [1000, 500]));
    const report = tally.build(span);
    expect(report.baseline).toMatchObject({ savings_percent: -150 });
    expect(renderSummaryLines(report)).toContain('Extra cost  This batch cost $0.00500: 150% more than the $0.00200 it would have cost on pro');
  });

  it('say that a retry on a fallback model counts as both, when there are both (QA: 18 + 17 was more than the 27 extra calls)', () => {
    const tally = new ReportTally();
    tally.addResult(result(1, 'succeeded'));
    tally.addCall(call(1, 1, 'failed', 0.0001, [1000, 0]));
    tally.addCall(call(1, 2, 'failed', 0.0001, [1000, 0]));
    tally.addCall({ ...call(1, 1, 'failed', 0.0001, [1000, 0]), model: 'pro', chain_position: 1 });
    tally.addCall({ ...call(1, 2, 'succeeded', 0.0004, [1000, 500]), model: 'pro', chain_position: 1 });
    const report = tally.build(span);
    expect(report.extra_calls).toMatchObject({ retry_calls: 2, fallback_calls: 2 });
    expect(renderSummaryLines(report).find((line) => line.startsWith('Retries'))).toMatch(/; a retry on a fallback model counts in both$/);
  });

  it('are left out of a comparison (--compare): the models are weighed against each other, not against one of them (QA)', () => {
    const tally = new ReportTally(baseline);
    tally.addResult(result(1, 'succeeded'));
    tally.addCall(call(1, 1, 'succeeded', 0.0004, [1000, 500]));
    const report = tally.build(span);
    report.compare = { models: ['flash', 'pro'], prompts: 1 };
    // report.json keeps the figures; the summary and report.md do not claim a saving.
    expect(report.baseline).toMatchObject({ model: 'pro', savings_percent: 80 });
    expect(renderSummaryLines(report).some((line) => /^(Savings|Extra cost|Baseline)\b/.test(line))).toBe(false);
    expect(renderReportMarkdown(report)).not.toContain('would have cost');
  });

  it('are left out when no row succeeded: "it would have cost $0" compares nothing', () => {
    const tally = new ReportTally(baseline);
    tally.addResult(result(1, 'failed'));
    tally.addCall(call(1, 1, 'failed', 0, [0, 0]));
    const report = tally.build(span);
    expect(renderSummaryLines(report).some((line) => line.startsWith('Savings'))).toBe(false);
    expect(renderReportMarkdown(report)).not.toContain('would have cost');
  });
});

describe('the LLM classifier', () => {
  const span = { batchId: 'bc', startedAt: '2026-11-02T10:00:00.000Z', finishedAt: '2026-11-02T10:00:02.000Z' };
  const result = (row: number, routeReason: string): RowResult => ({
    id: `r${row}`, row, status: 'succeeded', model: 'flash', output: 'ok', usage: { input_tokens: 10, output_tokens: 5 }, cost_usd: 0.0001, latency_ms: 50, attempts: 1,
    metadata: {}, task_type: 'simple', route_reason: routeReason, models_tried: ['flash'], final_model: 'flash', fallback_reason: null, completed_at: span.finishedAt,
  });
  const classify = (row: number): CallRecord => ({
    batch_id: 'bc', row, id: `r${row}`, model: 'flash', attempt: 1, purpose: 'classify', task_type: null, chain_position: 0, status: 'succeeded', http_status: 200,
    input_tokens: 50, output_tokens: 2, cost_usd: 0.00001, latency_ms: 20, started_at: span.startedAt,
  });

  it('counts the rows its answers routed; a classifier that routed none is said in the summary, with what to check (QA: paid for, unmentioned)', () => {
    const working = new ReportTally();
    working.addResult(result(1, 'llm: simple'));
    working.addResult(result(2, 'A/B arm "auto": llm: simple'));
    working.addResult(result(3, 'llm answer "maybe" names no task type; rules: no keyword matched -> simple'));
    for (const row of [1, 2, 3]) working.addCall(classify(row));
    const worked = working.build(span);
    expect(worked.extra_calls).toMatchObject({ classifier_calls: 3, classifier_decided_rows: 2 });
    expect(renderSummaryLines(worked).some((line) => line.startsWith('Classifier'))).toBe(false);
    expect(renderReportMarkdown(worked)).toContain('it chose the task type of 2 rows, the rules the rest');

    const useless = new ReportTally();
    useless.addResult(result(1, 'llm call failed: 500; rules: no keyword matched -> simple'));
    useless.addCall(classify(1));
    expect(renderSummaryLines(useless.build(span)).join('\n')).toMatch(/\nClassifier +its 1 call chose no row's task type .*so the rules routed every row; check routing\.llm_classifier's model and prompt/);
  });
});

describe('task types', () => {
  it("keep the LLM classifier's and the judge's calls on lines of their own, not as the rows' calls", () => {
    const tally = new ReportTally();
    const at = '2026-11-02T10:00:00.000Z';
    tally.addCall({ batch_id: 'b', row: 1, id: 'r1', model: 'mini', attempt: 1, purpose: 'classify', task_type: null, chain_position: null, status: 'succeeded', http_status: 200, input_tokens: 50, output_tokens: 2, cost_usd: 0.00001, latency_ms: 20, started_at: at });
    tally.addCall({ batch_id: 'b', row: 1, id: 'r1', model: 'flash', attempt: 1, purpose: 'answer', task_type: 'simple', chain_position: 0, status: 'succeeded', http_status: 200, input_tokens: 50, output_tokens: 80, cost_usd: 0.0001, latency_ms: 90, started_at: at });
    tally.addCall({ batch_id: 'b', row: 1, id: 'r1', model: 'pro', attempt: 1, purpose: 'judge', task_type: 'simple', chain_position: 0, status: 'succeeded', http_status: 200, input_tokens: 200, output_tokens: 20, cost_usd: 0.0004, latency_ms: 90, started_at: at });
    const report = tally.build({ batchId: 'b', startedAt: at, finishedAt: at });
    expect(Object.keys(report.task_types).sort()).toEqual(['(classifier)', '(judge)', 'simple']);
    expect(report.task_types['(classifier)']).toMatchObject({ rows: 0, calls: 1 });
    expect(report.task_types['(judge)']).toMatchObject({ rows: 0, calls: 1, cost_usd: 0.0004 });
    expect(report.task_types.simple).toMatchObject({ calls: 1, cost_usd: 0.0001 });
  });
});

describe('task types by model', () => {
  const at = '2026-11-02T10:00:00.000Z';
  const typed = (row: number, taskType: string, model: string, cost: number, status: RowResult['status'] = 'succeeded'): RowResult => ({
    id: `r${row}`, row, status, model, output: status === 'succeeded' ? 'ok' : null, usage: { input_tokens: 10, output_tokens: 5 }, cost_usd: cost, latency_ms: 100 * row, attempts: 1,
    metadata: {}, task_type: taskType, route_reason: 'rules', models_tried: [model], final_model: status === 'succeeded' ? model : null, fallback_reason: null, completed_at: at,
  });

  it("split each type's rows by the model they are counted under, with cost per answer (failed rows' calls counted against it) and latency, to tune the routes by", () => {
    const tally = new ReportTally();
    tally.addResult(typed(1, 'coding', 'flash', 0.0001));
    tally.addResult(typed(2, 'coding', 'flash', 0.0003, 'failed'));
    tally.addResult(typed(3, 'coding', 'pro', 0.0009));
    tally.addResult(typed(4, 'simple', 'flash', 0.0001));
    const report = tally.build({ batchId: 'b', startedAt: at, finishedAt: at });
    expect(Object.keys(report.task_types.coding!.by_model)).toEqual(['flash', 'pro']);
    expect(report.task_types.coding!.by_model.flash).toMatchObject({ rows: 2, succeeded: 1, failed: 1, cost_usd: 0.0004, cost_per_answer_usd: 0.0004, judged_rows: 0, mean_score: null });
    expect(report.task_types.coding!.by_model.pro).toMatchObject({ rows: 1, cost_per_answer_usd: 0.0009 });
    expect(report.task_types.simple!.by_model).toEqual({ flash: expect.objectContaining({ rows: 1 }) });
    const markdown = renderReportMarkdown(report);
    expect(markdown).toContain('### By model');
    expect(markdown).toContain('| coding | flash | 2 | 1 | $0.000400 |');

    // Each type on one model and no judge: the table would repeat the routes, so it is left out.
    const routed = new ReportTally();
    routed.addResult(typed(1, 'coding', 'pro', 0.0009));
    routed.addResult(typed(2, 'simple', 'flash', 0.0001));
    expect(renderReportMarkdown(routed.build({ batchId: 'b', startedAt: at, finishedAt: at }))).not.toContain('### By model');
  });
});

describe('judge scores', () => {
  const span = { batchId: 'bj', startedAt: '2026-11-02T10:00:00.000Z', finishedAt: '2026-11-02T10:00:02.000Z' };
  const result = (row: number, model: string, judge: RowResult['judge'], ensemble?: string): RowResult => ({
    id: `r${row}`, row, status: 'succeeded', model, output: 'ok', usage: { input_tokens: 10, output_tokens: 5 }, cost_usd: 0.0001, latency_ms: 50, attempts: 1,
    metadata: {}, task_type: null, route_reason: 'A/B arm', models_tried: [model], final_model: model, fallback_reason: null, completed_at: span.finishedAt,
    ...(judge ? { judge } : {}),
    ...(ensemble ? { ensemble: { name: ensemble, synthesizer: model, members: [] } } : {}),
  });
  const scored = (score: number) => ({ model: 'judge', final_model: 'judge', score, reason: 'fine', cost_usd: 0.00002 });
  const judgeCall = (row: number, status: CallRecord['status']): CallRecord => ({
    batch_id: 'bj', row, id: `r${row}`, model: 'judge', attempt: 1, purpose: 'judge', task_type: null, chain_position: 0, status, http_status: status === 'succeeded' ? 200 : 500,
    input_tokens: 100, output_tokens: status === 'succeeded' ? 20 : 0, cost_usd: status === 'succeeded' ? 0.00002 : 0, latency_ms: 30, started_at: span.startedAt,
  });

  it("count the rows the judge's fallback scored, by that model, and say so beside the judge's name (QA: credited to the judge)", () => {
    const tally = new ReportTally();
    tally.addResult(result(1, 'flash', scored(8)));
    tally.addResult(result(2, 'flash', { ...scored(6), final_model: 'cheap' }));
    const report = tally.build(span);
    expect(report.judge).toMatchObject({ model: 'judge', rows_scored: 2, scored_by_fallback: { cheap: 1 } });
    expect(renderReportMarkdown(report)).toContain("- Judge: 2 rows scored by judge (1 of them by its fallback cheap: another judge's scores), mean 7.00");
  });

  it("say which judge calls another model made (an earlier judge's, before a resume changed it): the count is of every run's (QA)", () => {
    const tally = new ReportTally();
    tally.addResult(result(1, 'flash', scored(8)));
    tally.addCall(judgeCall(1, 'succeeded'));
    tally.addCall({ ...judgeCall(1, 'succeeded'), model: 'old-judge' });
    const report = tally.build(span);
    expect(report.judge?.calls_by_model).toEqual({ judge: 1, 'old-judge': 1 });
    expect(renderReportMarkdown(report)).toMatch(/- Judge: 1 row scored by judge, .*; 2 calls, 1 by old-judge \(/);
  });

  it("give each model's and ensemble's mean, count what could not be scored, and keep judge calls out of retries and fallbacks", () => {
    const tally = new ReportTally({ model: 'judge', price: { input_per_mtok: 1, output_per_mtok: 1 } });
    tally.addResult(result(1, 'flash', scored(8)));
    tally.addResult(result(2, 'flash', scored(5)));
    tally.addResult(result(3, 'pro', scored(9), 'council'));
    tally.addResult(result(4, 'pro', { model: 'judge', final_model: null, score: null, reason: null, cost_usd: 0, error: { code: 'server_error', message: '500' } }));
    for (const row of [1, 2, 3]) tally.addCall(judgeCall(row, 'succeeded'));
    tally.addCall(judgeCall(4, 'failed'));
    const report = tally.build(span);
    expect(report.models.flash).toMatchObject({ judged_rows: 2, mean_score: 6.5, score_margin: 19.06 }); // t(1) 12.71 x sd 2.12 / sqrt 2
    // Row 3 is the ensemble's synthesis, by pro: scored under the ensemble alone.
    expect(report.models.pro).toMatchObject({ rows: 2, judged_rows: 0, mean_score: null, score_margin: null });
    expect(report.models.judge).toMatchObject({ rows: 0, calls: 4, judged_rows: 0, mean_score: null });
    expect(report.ensembles.council).toMatchObject({ judged_rows: 1, mean_score: 9 });
    expect(report.judge).toEqual({ model: 'judge', rows_scored: 3, mean_score: 7.33, score_margin: 5.17, rows_unscored: 1, unscored: { server_error: 1 }, scored_by_fallback: {}, calls_by_model: { judge: 4 }, paired: [], paired_left_out: {} });
    expect(report.extra_calls).toMatchObject({ judge_calls: 4, judge_cost_usd: 0.00006, retry_calls: 0, fallback_calls: 0 });
    // Judging would cost the same on the baseline: the comparison leaves it out on both sides.
    expect(report.baseline).toMatchObject({ baseline_cost_usd: 0, batch_cost_usd: 0 });

    const summary = renderSummaryLines(report);
    expect(summary.find((line) => line.startsWith('Judge'))).toMatch(/^Judge +3 rows scored by judge, mean 7\.33 ± 5\.17 of 10; 1 not scored \(server_error 1\); 4 calls \(\$0\.0000600\)$/);
    expect(summary.find((line) => line.startsWith('  flash'))).toMatch(/ score 6\.5 ± 19\.1 \(2\)$/);
    const markdown = renderReportMarkdown(report);
    expect(markdown).toContain('- Judge: 3 rows scored by judge, mean 7.33 ± 5.17 of 10');
    expect(markdown).toMatch(/\| flash \| 2 \|.*\| 6\.5 ± 19\.1 \(2\) \|/);
    expect(markdown).toMatch(/\| council \| 1 \|.*\| 9\.0 \(1\) \|/);
  });

  it('compare models that answered the same prompts (the same id) on those prompts alone', () => {
    const tally = new ReportTally();
    // q1-q3 answered by flash and by the council ensemble (synthesized by pro); q4 by flash alone.
    [[1, 'q1', 'flash', 8], [2, 'q1', 'pro', 6], [3, 'q2', 'flash', 5], [4, 'q2', 'pro', 5], [5, 'q3', 'flash', 9], [6, 'q3', 'pro', 4], [7, 'q4', 'flash', 2]].forEach(([row, id, model, score]) => {
      tally.addResult({ ...result(row as number, model as string, scored(score as number), model === 'pro' ? 'council' : undefined), id: id as string });
    });
    // q4 answered by pro as flash's fallback: no answer of pro's own to pair, and not flash's (QA: it took a slot).
    tally.addResult({ ...result(8, 'pro', scored(1)), id: 'q4', models_tried: ['flash', 'pro'], fallback_reason: 'flash: server_error after 3 attempts' });
    const report = tally.build(span);
    // council - flash over q1-q3: -2, 0, -5: mean -2.33, sd 2.52, margin 1.96 x 2.52 / sqrt 3.
    expect(report.judge?.paired).toEqual([{ a: 'council', b: 'flash', prompts: 3, a_better: 0, ties: 1, b_better: 2, mean_difference: -2.33, difference_margin: 6.25 }]);
    expect(renderSummaryLines(report).find((line) => line.startsWith('Paired'))).toMatch(/^Paired +council vs flash: 3 prompts, council better in 0, tie 1, flash better in 2; council − flash -2\.33 ± 6\.25$/);
    expect(renderReportMarkdown(report)).toContain('| council | flash | 3 | 0 | 1 | 2 | -2.33 ± 6.25 |');
  });

  it("say how many answers a fallback gave were left out of the pairs, and whose (QA: the pairs counted fewer prompts than the comparison had, unsaid)", () => {
    const tally = new ReportTally();
    // A row put to slow and answered by fast, its fallback: its model is the one that answered.
    const byFallback = (row: number, id: string): RowResult => ({ ...result(row, 'fast', scored(3)), id, models_tried: ['slow', 'fast'], fallback_reason: 'slow: server_error after 3 attempts' });
    [[1, 'q1', 'fast', 8], [2, 'q1', 'slow', 6], [3, 'q2', 'fast', 5], [4, 'q2', 'slow', 7], [5, 'q3', 'fast', 9]].forEach(([row, id, model, score]) => {
      tally.addResult({ ...result(row as number, model as string, scored(score as number)), id: id as string });
    });
    // q3's slow row answered by fast, slow's fallback: not slow's answer, so q3 is in no pair.
    tally.addResult(byFallback(6, 'q3'));
    // q9 has no other answer: it would have paired with nothing, and is not counted.
    tally.addResult(byFallback(7, 'q9'));
    const report = tally.build(span);
    expect(report.judge?.paired).toEqual([expect.objectContaining({ a: 'fast', b: 'slow', prompts: 2 })]);
    expect(report.judge?.paired_left_out).toEqual({ slow: 1 });
    const said = "1 answer left out: a fallback gave it in place of the model it was put to (slow 1), so its prompt counts in none of that model's pairs";
    const summary = renderSummaryLines(report);
    const paired = summary.findIndex((line) => line.startsWith('Paired'));
    expect(summary[paired + 1]).toMatch(new RegExp(`^ +${said.replace(/[()]/g, '\\$&')}$`));
    expect(renderReportMarkdown(report)).toContain(`A difference within its margin is no clear winner. ${said[0]!.toUpperCase()}${said.slice(1)}.`);

    // Every pair left out: no table, but the reason there is none.
    const none = new ReportTally();
    none.addResult({ ...result(1, 'fast', scored(8)), id: 'q1' });
    none.addResult(byFallback(2, 'q1'));
    const noPairs = none.build(span);
    expect(noPairs.judge?.paired).toEqual([]);
    expect(renderSummaryLines(noPairs).find((line) => line.startsWith('Paired'))).toMatch(/^Paired +1 answer left out: a fallback gave it/);
    const markdown = renderReportMarkdown(noPairs);
    expect(markdown).toContain('## Judge: models compared on the same prompts');
    expect(markdown).not.toContain('| A | B |');

    // A --compare batch's row is put to the model its number says, even when that model was passed over unsent (its context window too small).
    const compared = new ReportTally(undefined, undefined, {}, ['fast', 'slow']);
    compared.addResult({ ...result(1, 'fast', scored(8)), id: 'q1' });
    compared.addResult({ ...result(2, 'backup', scored(4)), id: 'q1', models_tried: ['backup'], fallback_reason: 'slow: context window too small' });
    expect(compared.build(span).judge?.paired_left_out).toEqual({ slow: 1 });
  });

  it('read back from report.json as written, with a judge, an ensemble, pairs, A/B arms and the split (the check collect makes of it, report-schema.ts)', async () => {
    const tally = new ReportTally();
    [[1, 'q1', 'flash', 8], [2, 'q1', 'pro', 6], [3, 'q2', 'flash', 5], [4, 'q2', 'pro', 5]].forEach(([row, id, model, score]) => {
      tally.addResult({ ...result(row as number, model as string, scored(score as number), model === 'pro' ? 'council' : undefined), id: id as string, ab_arm: model === 'pro' ? 'council' : 'flash' });
      tally.addCall({ ...judgeCall(row as number, 'succeeded'), model: model as string, purpose: 'answer', ab_arm: model === 'pro' ? 'council' : 'flash' });
    });
    tally.addCall(judgeCall(1, 'failed'));
    const report = tally.build(span);
    report.ab_split = [{ model: 'flash', weight: 1 }, { model: 'council', weight: 1 }];
    expect(report.judge?.paired).toHaveLength(1);
    expect(Object.keys(report.ensembles)).toEqual(['council']);
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-report-read-'));
    try {
      writeReport(report, dir);
      expect(await readWrittenReport(dir, span.batchId)).toEqual(report);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('show the three clearest pairs in the summary, and say how many more report.md has (QA: the one clear difference was dropped)', () => {
    const tally = new ReportTally();
    let row = 0;
    // Four models on the same 5 prompts: d scores far above the rest, a pair only d's would show.
    for (const [model, scores] of [['a', [5, 6, 5, 6, 5]], ['b', [5, 5, 6, 6, 5]], ['c', [6, 5, 5, 5, 6]], ['d', [9, 9, 9, 9, 9]]] as const) {
      scores.forEach((score, i) => tally.addResult({ ...result(++row, model, scored(score)), id: `q${i}` }));
    }
    const summary = renderSummaryLines(tally.build(span));
    const shown = summary.filter((line) => / vs /.test(line));
    expect(shown).toHaveLength(3);
    expect(shown.every((line) => /\bd\b/.test(line.split(':')[0]!))).toBe(true);
    expect(summary).toContainEqual(expect.stringMatching(/^ +and 3 more pairs in report\.md$/));
  });

  it('list the pairs of a comparison in its --compare order, in the summary as in report.md (QA: the summary ordered them by how clear their difference was)', () => {
    const tally = new ReportTally();
    let row = 0;
    // a and b far apart (the clearest pair), c between them, noisy.
    for (const [model, scores] of [['a', [9, 9, 9, 9, 9]], ['b', [2, 2, 2, 2, 2]], ['c', [4, 7, 5, 8, 6]]] as const) {
      scores.forEach((score, i) => tally.addResult({ ...result(++row, model, scored(score)), id: `q${i}` }));
    }
    const report = tally.build(span);
    report.compare = { models: ['c', 'a', 'b'], prompts: 5 };
    // Each pair is named in code-point order (report.json's a and b); the pairs go by their models' places in --compare.
    const inCompareOrder = ['a vs c', 'b vs c', 'a vs b'];
    expect(renderSummaryLines(report).filter((line) => / vs /.test(line)).map((line) => / (\w vs \w):/.exec(line)![1])).toEqual(inCompareOrder);
    const tableRows = renderReportMarkdown(report).split('\n').filter((line) => /^\| [abc] \| [abc] \|/.test(line));
    expect(tableRows.map((line) => line.split(' | ').slice(0, 2).join(' vs ').replace('| ', ''))).toEqual(inCompareOrder);
  });

  it('set the arms of an A/B split side by side: their rows, and the cost of every call made for them in any run but the judge\'s', () => {
    const tally = new ReportTally();
    const armRow = (row: number, arm: string, model: string, latency: number, score: number | null, status: RowResult['status'] = 'succeeded'): RowResult => ({
      ...result(row, model, score === null ? undefined : scored(score)),
      ab_arm: arm,
      latency_ms: latency,
      status,
      final_model: status === 'succeeded' ? model : null,
    });
    const call = (row: number, arm: string, model: string, cost: number | null, purpose: CallRecord['purpose'] = 'answer'): CallRecord => ({
      ...judgeCall(row, 'succeeded'), model, purpose, ab_arm: arm, cost_usd: cost,
    });
    tally.addResult(armRow(1, 'auto', 'flash', 40, 6));
    tally.addResult(armRow(2, 'auto', 'flash', 60, 8));
    tally.addResult(armRow(3, 'auto', 'pro', 200, 9));
    tally.addResult(armRow(4, 'auto', 'flash', 10, null, 'failed'));
    tally.addResult(armRow(5, 'pro', 'pro', 150, 8));
    tally.addResult(armRow(6, 'pro', 'pro', 170, 7));
    tally.addResult({ ...result(7, 'flash', undefined), route_reason: 'row model "flash"' });
    for (const [row, model, cost] of [[1, 'flash', 0.0001], [2, 'flash', 0.0001], [3, 'pro', 0.0007], [4, 'flash', 0.00005]] as const) tally.addCall(call(row, 'auto', model, cost));
    tally.addCall(call(1, 'auto', 'mini', 0.00001, 'classify'));
    // A free model's call (no price), and a call of a run before the row's result: both the arm's.
    tally.addCall(call(3, 'auto', 'free', null));
    tally.addCall(call(4, 'auto', 'flash', 0.00004));
    tally.addCall(call(1, 'auto', 'judge', 0.005, 'judge'));
    tally.addCall(call(5, 'pro', 'pro', 0.0006));
    tally.addCall(call(6, 'pro', 'pro', 0.0006));
    const report = tally.build(span);
    expect(Object.keys(report.ab_arms)).toEqual(['auto', 'pro']);
    // Latency quantiles come from a bucketed histogram (latency-histogram.ts): 59.4 for the 60 ms row.
    expect(report.ab_arms.auto).toEqual({
      rows: 4, succeeded: 3, failed: 1, cached_rows: 0, cost_usd: 0.001, unpriced_calls: 1, cost_per_answer_usd: 0.000333333,
      latency_p50_ms: 59.4, latency_p95_ms: 200, answered_by: { flash: 2, pro: 1 }, judged_rows: 3, mean_score: 7.67, score_margin: 3.79,
    });
    expect(report.ab_arms.pro).toMatchObject({ rows: 2, cost_usd: 0.0012, cost_per_answer_usd: 0.0006, unpriced_calls: 0, answered_by: { pro: 2 }, judged_rows: 2, mean_score: 7.5 });
    const markdown = renderReportMarkdown(report);
    expect(markdown).toContain('| auto | 4 | 3 | 1 | $0.00100 + 1 unpriced call | $0.000333 | 59 ms | 200 ms | 7.7 ± 3.8 (3) | — | flash 2, pro 1 |');
    expect(markdown).toContain('| pro | 2 | 2 | 0 | $0.00120 | $0.000600 |');
    expect(markdown).toContain('The arms hold 6 of the 7 rows: the others named a model of their own');
    const summary = renderSummaryLines(report);
    expect(summary).toContain("A/B arms (every call of their rows but the judge's)");
    expect(summary.find((line) => line.startsWith('  auto'))).toMatch(/^ {2}auto +4 rows +1 failed +\$0\.00100 \+ 1 unpriced call +\$0\.000333\/answer +p50 59 ms +p95 200 ms +score 7\.7 ± 3\.8 \(3\) +answered by flash 2, pro 1$/);
    expect(new ReportTally().build(span).ab_arms).toEqual({});

    // Every call unpriced: the cost of an answer is unknown, not $0.
    const free = new ReportTally();
    free.addResult(armRow(1, 'free', 'free', 40, null));
    free.addCall(call(1, 'free', 'free', null));
    expect(free.build(span).ab_arms.free).toMatchObject({ cost_usd: 0, unpriced_calls: 1, cost_per_answer_usd: null });
    const freeSummary = renderSummaryLines(free.build(span));
    expect(freeSummary[freeSummary.indexOf("A/B arms (every call of their rows but the judge's)") + 1]).toMatch(/^ {2}free +1 row +0 failed +n\/a \(no price configured\) +n\/a per answer/);
  });

  it("set each A/B arm's score against the split's first arm, with the margin of the difference, not of each mean (QA: 4.8 ± 2.0 against 7.1 ± 1.8, noise, read as a clear winner)", () => {
    const tally = new ReportTally();
    const armRow = (row: number, arm: string, score: number): RowResult => ({ ...result(row, arm, scored(score)), ab_arm: arm });
    [6, 8, 9].forEach((score, i) => tally.addResult(armRow(i + 1, 'auto', score)));
    [8, 7].forEach((score, i) => tally.addResult(armRow(i + 4, 'pro', score)));
    const report = { ...tally.build(span), ab_split: [{ model: 'pro', weight: 0.5 }, { model: 'auto', weight: 0.5 }] };
    expect(report.ab_arms.auto).toMatchObject({ mean_score: 7.67, score_margin: 3.79 });
    expect(report.ab_arms.pro).toMatchObject({ mean_score: 7.5, score_margin: 6.35 });
    const markdown = renderReportMarkdown(report);
    // 7.67 - 7.5, ± √(3.79² + 6.35²): the margin of the difference, not of either mean.
    expect(markdown).toMatch(/\| auto \| 3 \|.*\| 7\.7 ± 3\.8 \(3\) \| \+0\.17 ± 7\.40 \| auto 3 \|/);
    expect(markdown).toMatch(/\| pro \| 2 \|.*\| 7\.5 ± 6\.3 \(2\) \| — \| pro 2 \|/);
    expect(markdown).toContain('| Score vs pro |');
    expect(markdown).not.toContain('means closer than their margins');
    // An arm with a single score has no margin, and its difference says so rather than read as a clear win (QA: a bare +3.91).
    const lone = new ReportTally();
    [6, 8, 9].forEach((score, i) => lone.addResult(armRow(i + 1, 'pro', score)));
    lone.addResult(armRow(4, 'auto', 10));
    const loneMarkdown = renderReportMarkdown({ ...lone.build(span), ab_split: [{ model: 'pro', weight: 0.5 }, { model: 'auto', weight: 0.5 }] });
    expect(loneMarkdown).toMatch(/\| auto \| 1 \|.*\| 10\.0 \(1\) \| \+2\.33 \(1 score: no margin\) \| auto 1 \|/);
    // Without a judge, or with one arm, there is nothing to set against.
    const single = new ReportTally();
    single.addResult(armRow(1, 'auto', 6));
    expect(renderReportMarkdown(single.build(span))).not.toContain('Score vs');
  });

  it('leave the report without scores when there is no judge', () => {
    const tally = new ReportTally();
    tally.addResult(result(1, 'flash', undefined));
    const report = tally.build(span);
    expect(report.judge).toBeNull();
    expect(report.models.flash).toMatchObject({ judged_rows: 0, mean_score: null });
    expect(renderReportMarkdown(report)).not.toContain('Score');
    expect(renderSummaryLines(report).some((line) => line.startsWith('Judge'))).toBe(false);
  });
});

describe('answers longer than an Excel cell holds', () => {
  // Rows in the order they finish: row 5 first.
  const result = (row: number, output: string | null): RowResult => ({
    id: `c${row}`, row, status: output === null ? 'failed' : 'succeeded', model: 'alpha', output,
    usage: { input_tokens: 1, output_tokens: 1 }, cost_usd: null, latency_ms: 1, attempts: 1, metadata: {},
    completed_at: '2026-11-02T10:00:00.000Z', finish_reason: output === null ? null : 'stop',
    task_type: null, route_reason: 'pinned', models_tried: ['alpha'], final_model: output === null ? null : 'alpha', fallback_reason: null,
  });

  it('are counted, and the summary and report.md say Excel cuts them in results.csv (QA: 46,131-character contract summaries, unsaid)', async () => {
    const tally = new ReportTally();
    [result(1, 'short'), result(5, 'y'.repeat(46_131)), result(2, 'x'.repeat(32_767)), result(3, 'ü'.repeat(40_000)), result(4, null)].forEach((r) => tally.addResult(r));
    const report = tally.build({ batchId: 'b', startedAt: '2026-11-02T10:00:00.000Z', finishedAt: '2026-11-02T10:00:01.000Z' });
    expect(report.long_outputs).toEqual({ rows: 2, first_id: 'c3', longest_chars: 46_131 });
    const text = '2 answers over 32,767 characters, the most an Excel cell holds (the first: row id c3; the longest 46,131): Excel cuts them when it opens results.csv; results.jsonl has them whole';
    expect(renderSummaryLines(report).find((line) => line.startsWith('Long'))?.replace(/^Long +/, '')).toBe(text);
    expect(renderReportMarkdown(report)).toContain(`- Long answers: ${text}`);
    const dir = await mkdtemp(join(tmpdir(), 'sy-long-'));
    try {
      writeReport(report, dir);
      expect(await readWrittenReport(dir, 'b')).toEqual(report);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const none = new ReportTally();
    none.addResult(result(1, 'x'.repeat(32_767)));
    const short = none.build({ batchId: 'b', startedAt: '2026-11-02T10:00:00.000Z', finishedAt: '2026-11-02T10:00:01.000Z' });
    expect(short.long_outputs).toBeUndefined();
    expect(renderSummaryLines(short).some((line) => line.startsWith('Long'))).toBe(false);
  });

  it("and compare.csv's prompts as long are said too (--compare), read back from report.json as written", async () => {
    const tally = new ReportTally();
    tally.addResult(result(1, 'y'.repeat(40_000)));
    const report = tally.build({ batchId: 'b', startedAt: '2026-11-02T10:00:00.000Z', finishedAt: '2026-11-02T10:00:01.000Z' });
    report.compare = { models: ['alpha', 'beta'], prompts: 3, long_prompts: { rows: 1, first_id: 'p2', longest_chars: 33_000 } };
    const text = '1 prompt over 32,767 characters, the most an Excel cell holds (the first: row id p2; the longest 33,000): Excel cuts it when it opens compare.csv; the input file has it whole';
    const lines = renderSummaryLines(report);
    const at = lines.findIndex((line) => line.startsWith('Long'));
    // The long answer is in compare.csv too, beside the other model's (QA: only results.csv was named).
    expect(lines[at]).toMatch(/^Long +1 answer over .*: Excel cuts it when it opens results\.csv, and compare\.csv, which holds the compared models' answers too; results\.jsonl has it whole$/);
    expect(renderReportMarkdown(report)).toContain("Excel cuts it when it opens results.csv, and compare.csv, which holds the compared models' answers too; results.jsonl has it whole");
    expect(lines[at + 1]?.trim()).toBe(text);
    expect(renderReportMarkdown(report)).toContain(`- Long prompts: ${text}`);
    const dir = await mkdtemp(join(tmpdir(), 'sy-long-'));
    try {
      writeReport(report, dir);
      expect(await readWrittenReport(dir, 'b')).toEqual(report);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('answers the model did not finish', () => {
  const result = (row: number, finish: string | null, status: 'succeeded' | 'failed' = 'succeeded'): RowResult => ({
    id: String(row), row, status, model: 'alpha', output: status === 'succeeded' ? 'text' : null,
    usage: { input_tokens: 1, output_tokens: 1 }, cost_usd: null, latency_ms: 1, attempts: 1, metadata: {},
    completed_at: '2026-11-02T10:00:00.000Z', finish_reason: finish,
    task_type: null, route_reason: 'pinned', models_tried: ['alpha'], final_model: status === 'succeeded' ? 'alpha' : null, fallback_reason: null,
  });

  it('are counted by finish_reason, and the summary says what to do about those cut at max_tokens', () => {
    const tally = new ReportTally();
    [result(1, 'stop'), result(2, 'length'), result(3, 'length'), result(4, 'content_filter'), result(5, 'tool_calls'), result(6, null), result(7, null, 'failed')].forEach((r) => tally.addResult(r));
    const report = tally.build({ batchId: 'b', startedAt: '2026-11-02T10:00:00.000Z', finishedAt: '2026-11-02T10:00:01.000Z' });
    expect(report.cut_off).toEqual({ length: 2, content_filter: 1 });
    expect(report.totals.succeeded).toBe(6);
    const cutLine = renderSummaryLines(report).find((line) => line.startsWith('Cut off'));
    expect(cutLine?.replace(/^Cut off +/, '')).toBe(
      '2 answers stopped at max_tokens (finish_reason "length"): give those rows a higher max_tokens in the file and run the batch again (only edited rows run again); 1 answer ended by finish_reason "content_filter"',
    );
    expect(renderReportMarkdown(report)).toContain('- Cut off: 2 answers stopped at max_tokens');
  });

  it("tell those stopped at their model's max_output_tokens from those stopped at their own max_tokens: a higher max_tokens does not help the first (QA: following the advice paid for the same cut answer again)", async () => {
    const tally = new ReportTally(undefined, undefined, reportModels({ models: { alpha: { max_output_tokens: 30 }, beta: {} } }));
    const cut = (row: number, outputTokens: number, extra: Partial<RowResult> = {}): RowResult => ({ ...result(row, 'length'), usage: { input_tokens: 5, output_tokens: outputTokens }, ...extra });
    [
      cut(1, 30), // max_tokens 5000 capped at alpha's 30
      cut(2, 30),
      cut(3, 10), // its own max_tokens of 10
      cut(4, 0, { cached: { batch_id: 'b0', row: 4, cached_at: '2026-11-01T10:00:00.000Z', usage: { input_tokens: 5, output_tokens: 30 }, saved_usd: null } }), // the cached call's tokens
      cut(5, 500, { model: 'beta', final_model: 'beta', models_tried: ['beta'] }), // beta has no cap: its row's own max_tokens
      // An ensemble's usage holds its members' calls too: not told apart.
      cut(6, 90, { ensemble: { name: 'council', synthesizer: 'alpha', members: [] } }),
    ].forEach((r) => tally.addResult(r));
    const report = tally.build({ batchId: 'b', startedAt: '2026-11-02T10:00:00.000Z', finishedAt: '2026-11-02T10:00:01.000Z' });
    expect(report.cut_off).toEqual({ length: 6 });
    expect(report.cut_off_at_model_cap).toEqual({ alpha: 3 });
    const cutLine = renderSummaryLines(report).find((line) => line.startsWith('Cut off'))?.replace(/^Cut off +/, '');
    expect(cutLine).toBe(
      '3 answers stopped at max_tokens (finish_reason "length"): give those rows a higher max_tokens in the file and run the batch again (only edited rows run again); ' +
        "3 answers stopped at models.alpha.max_output_tokens (finish_reason \"length\"), which caps a row's max_tokens, so a higher one does not help: " +
        'raise it if alpha can write more, or give those rows another model, then run them again (a resume runs only rows edited in the file)',
    );
    expect(renderReportMarkdown(report)).toContain('- Cut off: 3 answers stopped at max_tokens (finish_reason "length"): give those rows a higher max_tokens in the file and run the batch again (only edited rows run again); 3 answers stopped at models.alpha.max_output_tokens');
    // Without caps (a report of before, read back), every length-cut answer is its rows' max_tokens, as said before.
    const { cut_off_at_model_cap: _, ...older } = report;
    expect(renderSummaryLines(older).find((line) => line.startsWith('Cut off'))).toMatch(/^Cut off +6 answers stopped at max_tokens \(finish_reason "length"\): give those rows a higher max_tokens in the file and run the batch again \(only edited rows run again\)$/);
    const dir = await mkdtemp(join(tmpdir(), 'sy-cut-'));
    try {
      writeReport(older, dir);
      expect(await readWrittenReport(dir, 'b')).toEqual(older);
      writeReport(report, dir);
      expect(await readWrittenReport(dir, 'b')).toEqual(report);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('count a finished answer with no text (content null, tool calls only) apart: it succeeded, but says nothing', () => {
    const tally = new ReportTally();
    [result(1, 'stop'), { ...result(2, 'stop'), output: '' }, { ...result(3, 'tool_calls'), output: ' ' }].forEach((r) => tally.addResult(r));
    const report = tally.build({ batchId: 'b', startedAt: '2026-11-02T10:00:00.000Z', finishedAt: '2026-11-02T10:00:01.000Z' });
    expect(report.cut_off).toEqual({ empty: 2 });
    expect(renderSummaryLines(report)).toContain('Cut off  2 answers finished with no text (output "" in results.jsonl: the model sent none, or only tool calls)');
  });

  it("count a model's refusals apart, pointing at its words", () => {
    const tally = new ReportTally();
    [result(1, 'stop'), { ...result(2, 'stop'), output: '', refusal: "I can't help with that." }].forEach((r) => tally.addResult(r));
    const report = tally.build({ batchId: 'b', startedAt: '2026-11-02T10:00:00.000Z', finishedAt: '2026-11-02T10:00:01.000Z' });
    expect(report.cut_off).toEqual({ refusal: 1 });
    expect(renderSummaryLines(report)).toContain('Cut off  1 answer was a refusal (the model declined: its words are the row\'s refusal in results.jsonl and results.csv, output "")');
  });

  it('leave the summary alone when every answer was finished', () => {
    const tally = new ReportTally();
    tally.addResult(result(1, 'stop'));
    const report = tally.build({ batchId: 'b', startedAt: '2026-11-02T10:00:00.000Z', finishedAt: '2026-11-02T10:00:01.000Z' });
    expect(report.cut_off).toEqual({});
    expect(renderSummaryLines(report).some((line) => line.startsWith('Cut off'))).toBe(false);
  });
});
