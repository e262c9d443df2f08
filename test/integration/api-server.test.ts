import { existsSync, realpathSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:net';
import { once } from 'node:events';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { usdToNanos } from '../../src/models/pricing.ts';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import type { Report } from '../../src/output/report-json.ts';
import type { BatchView } from '../../src/api/batch-view.ts';
import { startRedisServer, type RedisServerHandle } from '../../src/queue/redis-server-process.ts';
import { runCli, spawnCli, waitFor, waitForOutput } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';
import { useServers, type Server } from '../helpers/serve.ts';
import { descriptorsOn } from '../helpers/open-files.ts';

type ErrorBody = { error: { code: string; message: string } };


const servers = useServers();
const startServer = servers.start;

/** POSTs `body` over a plain socket, all of it before reading a byte of the answer (as Python's urllib does, with its Connection: close), and returns the answer as text. */
async function sendWholeThenRead(base: string, path: string, body: Buffer): Promise<string> {
  const { hostname, port } = new URL(base);
  const socket = connect(Number(port), hostname);
  await once(socket, 'connect');
  const received: Buffer[] = [];
  socket.pause();
  const head = `POST ${path} HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: text/csv\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n`;
  const chunks: Buffer[] = [Buffer.from(head)];
  for (let offset = 0; offset < body.length; offset += 64 * 1024) chunks.push(body.subarray(offset, offset + 64 * 1024));
  for (const chunk of chunks) {
    if (!socket.write(chunk)) await Promise.race([once(socket, 'drain'), once(socket, 'close').then(() => Promise.reject(new Error('the server closed the connection before the body was sent')))]);
  }
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  socket.resume();
  await Promise.race([once(socket, 'end'), new Promise((resolve) => setTimeout(resolve, 2000))]);
  socket.destroy();
  return Buffer.concat(received).toString('utf8');
}

async function getJson<T>(url: string, init: RequestInit = {}): Promise<{ status: number; body: T }> {
  const response = await fetch(url, init);
  return { status: response.status, body: (await response.json()) as T };
}

async function postFile(server: Server, query: string, body: string | Uint8Array<ArrayBuffer>, contentType = 'text/csv', headers: Record<string, string> = {}) {
  return getJson<BatchView & { resumed: boolean; notes: string[] } & Partial<ErrorBody>>(`${server.url}/v1/batches${query}`, {
    method: 'POST',
    body,
    headers: { 'content-type': contentType, ...headers },
  });
}

async function waitUntilFinished(server: Server, batchId: string, headers: Record<string, string> = {}): Promise<BatchView> {
  let last: BatchView | null = null;
  await waitFor(async () => {
    last = (await getJson<BatchView>(`${server.url}/v1/batches/${batchId}`, { headers })).body;
    return last.finished;
  }, 60_000);
  return last!;
}

describe('switchyard serve: batches submitted over HTTP, through the same queue, workers and collector', () => {
  const h = useSimulatorAndRedis('api', { failure_rate: 0.1, latency_ms: 2, seed: 5 });

  it('takes a CSV by POST, runs it, and serves its status, results, report and cost records', async () => {
    const dir = await tempDir('api-csv');
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 120, { model: (row) => (row === 7 ? 'no-such-model' : undefined) });
    const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env());

    const submitted = await postFile(server, '?batch_id=api-csv', await readFile(input, 'utf8'));
    expect(submitted.status).toBe(202);
    expect(submitted.body).toMatchObject({ batch_id: 'api-csv', resumed: false, input_error: null, links: { self: '/v1/batches/api-csv' } });

    const finished = await waitUntilFinished(server, 'api-csv');
    expect(finished).toMatchObject({ status: 'completed', rows: { total: 119, finished: 119, succeeded: 119, failed: 0, invalid: 1 } });
    expect(Object.keys(finished.files).sort()).toEqual(['costs.jsonl', 'errors.jsonl', 'report.json', 'report.md', 'results.csv', 'results.jsonl']);

    const resultsText = await (await fetch(`${server.url}/v1/batches/api-csv/results`)).text();
    const results = resultsText.trim().split('\n').map((line) => JSON.parse(line) as RowResult);
    expect(results.map((r) => r.row)).toEqual(Array.from({ length: 120 }, (_, i) => i + 1).filter((row) => row !== 7));
    expect(results.every((r) => r.status === 'succeeded' && r.output?.includes(`Question ${r.row}`))).toBe(true);

    const csv = await fetch(`${server.url}/v1/batches/api-csv/results?format=csv`);
    expect(csv.headers.get('content-type')).toContain('text/csv');
    expect((await csv.text()).trim().split('\n')).toHaveLength(120); // header + 119 rows

    const report = (await getJson<Report>(`${server.url}/v1/batches/api-csv/report`)).body;
    const costsText = await (await fetch(`${server.url}/v1/batches/api-csv/files/costs.jsonl`)).text();
    const calls = costsText.trim().split('\n').map((line) => JSON.parse(line) as CallRecord);
    expect(calls.length).toBe(report.totals.calls);
    expect(calls.length).toBeGreaterThan(119); // the injected 500s are retried, and recorded
    expect(usdToNanos(report.totals.cost_usd)).toBe(calls.reduce((sum, c) => sum + usdToNanos(c.cost_usd ?? 0), 0));
    expect(await (await fetch(`${server.url}/v1/batches/api-csv/report?format=md`)).text()).toContain('# Batch report: api-csv');
    const errors = await (await fetch(`${server.url}/v1/batches/api-csv/files/errors.jsonl`)).text();
    expect(errors).toContain('no-such-model');

    // The files are the batch's own outputs, in <out>/<batch id>/, beside the uploaded input.
    expect(await readJsonLines<RowResult>(join(dir, 'out', 'api-csv', 'results.jsonl'))).toEqual(results);
    expect(await readFile(join(dir, 'out', 'api-csv', 'input.csv'), 'utf8')).toBe(await readFile(input, 'utf8'));

    const list = (await getJson<{ object: string; data: BatchView[]; total: number }>(`${server.url}/v1/batches?limit=5`)).body;
    expect(list.data.map((b) => b.batch_id)).toContain('api-csv');
    // A trailing slash names the same thing; HEAD asks whether a file is there without its body (QA: 404, 405).
    expect((await getJson<BatchView>(`${server.url}/v1/batches/api-csv/`)).body.batch_id).toBe('api-csv');
    const head = await fetch(`${server.url}/v1/batches/api-csv/results`, { method: 'HEAD' });
    expect([head.status, head.headers.get('content-type'), await head.text()]).toEqual([200, 'application/x-ndjson; charset=utf-8', '']);

    // The same batch again: every row is kept, nothing is paid for twice.
    const again = await postFile(server, '?batch_id=api-csv', await readFile(input, 'utf8'));
    expect(again.body).toMatchObject({ batch_id: 'api-csv', resumed: true });
    // Its file is read again: the last run's row count is not given as this one's (QA).
    if (again.body.status === 'enqueuing') expect(again.body.rows.total).toBeNull();
    await waitUntilFinished(server, 'api-csv');
    const callsAfter = await readJsonLines<CallRecord>(join(dir, 'out', 'api-csv', 'costs.jsonl'));
    expect(callsAfter.length).toBe(calls.length);

    server.kill('SIGTERM');
    const exit = await server.done;
    expect(exit.code).toBe(0);
    expect(exit.stdout).toContain('[api-csv] Finished: 119 of 119 rows succeeded, 1 invalid row not run, ');
    // When, as run's log says it: a server's log runs for days (review: its lines had no time).
    expect(exit.stdout).toMatch(/\[api-csv\] Submitted at \d\d:\d\d:\d\d UTC; its rows are being queued\./);
    expect(exit.stdout).toMatch(/\[api-csv\] Finished: 119 of 119 rows succeeded, [^\n]* in [^;\n]+ \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d( to [\d: -]+)? UTC\); outputs in /);
    // The post that ran nothing says so beside the batch's totals.
    expect(exit.stdout).toContain('[api-csv] Finished: 119 of 119 rows succeeded, 0 of them run by this post, 1 invalid row not run, ');
  });

  it('takes compare= as --compare: every row put to each model, the list kept by a repost; refused beside ab= or model=, or naming an unknown model, as 400s', async () => {
    const dir = await tempDir('api-compare');
    const config = await writeSimConfig(dir, h.sim.url, {}, ['fast', 'slow', 'judge']);
    const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env());
    const file = 'id,prompt,expected\nc1,One plus one?,2\nc2,Two plus two?,4\n';
    const posted = await postFile(server, '?batch_id=api-compare&compare=fast,slow&judge=judge', file);
    expect(posted.status, JSON.stringify(posted.body)).toBe(202);
    expect(posted.body).toMatchObject({ model: null, ab: null, compare: 'fast,slow', judge: 'judge' });
    // The comparison is said once the file is read, with its counts: in file_notes only, even when this small file
    // was read before the answer went out (CI: it was, at times, and the line came in the POST's notes too).
    const compared = 'Comparison: 2 prompts, each put to all 2 models (fast, slow): 4 rows, one per prompt and model (numbered as if the file held each record once per model).';
    expect(posted.body.notes.filter((note: string) => note.startsWith('Comparison'))).toEqual([]);
    const finished = await waitUntilFinished(server, 'api-compare');
    expect(finished.rows).toMatchObject({ total: 4, succeeded: 4 });
    expect(finished.file_notes.filter((note: string) => note.startsWith('Comparison'))).toEqual([compared]);
    const results = (await (await fetch(`${server.url}/v1/batches/api-compare/results`)).text()).trim().split('\n').map((line) => JSON.parse(line) as RowResult);
    expect(results.map((r) => [r.row, r.id, r.model])).toEqual([[1, 'c1', 'fast'], [2, 'c1', 'slow'], [3, 'c2', 'fast'], [4, 'c2', 'slow']]);
    const report = (await getJson<Report>(`${server.url}/v1/batches/api-compare/report`)).body;
    expect(report.compare).toEqual({ models: ['fast', 'slow'], prompts: 2 });
    expect(report.judge?.paired).toEqual([expect.objectContaining({ a: 'fast', b: 'slow', prompts: 2 })]);
    // compare.csv, listed among the files and served: a line per prompt, the two answers side by side.
    expect(finished.files['compare.csv']).toBe('/v1/batches/api-compare/files/compare.csv');
    const compareCsv = await fetch(`${server.url}/v1/batches/api-compare/files/compare.csv`);
    expect(compareCsv.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    const lines = (await compareCsv.text()).trim().split('\n');
    expect(lines[0]).toBe('id,prompt,fast,fast score,fast cost_usd,fast latency_ms,fast error,slow,slow score,slow cost_usd,slow latency_ms,slow error,expected');
    expect(lines.slice(1).map((line) => line.split(',').slice(0, 2))).toEqual([['c1', 'One plus one?'], ['c2', 'Two plus two?']]);
    // Posted again without compare=, it goes on with its list; with another list, it is refused.
    const again = await postFile(server, '?batch_id=api-compare', file);
    expect(again.status).toBe(202);
    expect(again.body).toMatchObject({ compare: 'fast,slow', resumed: true });
    await waitUntilFinished(server, 'api-compare');
    const otherList = await postFile(server, '?batch_id=api-compare&compare=slow,fast', file);
    expect(otherList.status).toBe(400);
    expect(otherList.body.error?.message).toContain('batch api-compare compares fast,slow, not slow,fast: its rows\' numbers say which model answers each, so the list stays as it began. Leave compare off (or give the same list) to go on with it, or compare in a new batch (another batch_id, or none)');

    for (const [query, message] of [
      ['?compare=fast,slow&ab=fast,slow', 'give compare alone, without ab, model or route'],
      ['?compare=fast,slow&model=fast', 'give compare alone, without ab, model or route'],
      ['?compare=fast,slwo', 'compare: "slwo" is not in the config (did you mean "slow"?)'],
      ['?compare=fast', 'compare needs two models or more'],
    ] as const) {
      const refused = await postFile(server, query, file);
      expect(refused.status, query).toBe(400);
      expect(refused.body.error).toMatchObject({ code: 'invalid_input' });
      expect(refused.body.error?.message).toContain(message);
    }
  });

  it('takes JSONL (and OpenAI Batch API lines, answering with batch_output.jsonl) or JSON rows, with the model and budget as query parameters', async () => {
    const dir = await tempDir('api-jsonl');
    const config = await writeSimConfig(dir, h.sim.url);
    const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env());
    const lines = [1, 2, 3].map((n) => JSON.stringify({ custom_id: `req-${n}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'fast', messages: [{ role: 'user', content: `Say ${n}` }] } }));
    const submitted = await postFile(server, '?batch_id=api-openai&budget=5', `${lines.join('\n')}\n`, 'application/x-ndjson');
    expect(submitted.status).toBe(202);
    expect(submitted.body).toMatchObject({ budget_usd: 5, model: null, ab: null, judge: null });
    const finished = await waitUntilFinished(server, 'api-openai');
    expect(finished.rows).toMatchObject({ total: 3, succeeded: 3 });
    expect(finished.files['batch_output.jsonl']).toBe('/v1/batches/api-openai/files/batch_output.jsonl');
    const output = (await (await fetch(`${server.url}${finished.files['batch_output.jsonl']}`)).text()).trim().split('\n');
    expect(output.map((line) => (JSON.parse(line) as { custom_id: string }).custom_id)).toEqual(['req-1', 'req-2', 'req-3']);

    const pinned = await postFile(server, '?batch_id=api-pinned&model=slow', `${JSON.stringify({ prompt: 'hello' })}\n`, 'application/jsonl; charset=utf-8');
    expect(pinned.status).toBe(202);
    expect(pinned.body).toMatchObject({ model: 'slow', judge: null });
    await waitUntilFinished(server, 'api-pinned');
    const [result] = (await (await fetch(`${server.url}/v1/batches/api-pinned/results`)).text()).trim().split('\n').map((line) => JSON.parse(line) as RowResult);
    expect(result).toMatchObject({ status: 'succeeded', model: 'slow' });

    // A judge and an A/B split as parameters: every answer scored, the view says both.
    const judged = await postFile(server, '?batch_id=api-judged&judge=slow&ab=fast,slow', 'id,prompt,expected\nj1,One plus one?,2\nj2,Two plus two?,4\n');
    expect(judged.body).toMatchObject({ model: null, ab: 'fast=0.5,slow=0.5', judge: 'slow' });
    await waitUntilFinished(server, 'api-judged');
    const scored = (await (await fetch(`${server.url}/v1/batches/api-judged/results`)).text()).trim().split('\n').map((line) => JSON.parse(line) as RowResult);
    expect(scored.map((r) => [r.id, r.judge?.model, typeof r.judge?.score])).toEqual([['j1', 'slow', 'number'], ['j2', 'slow', 'number']]);

    // JSON rows, for a program that has them in hand: row N is line N of errors.jsonl.
    const rows = [{ id: 'a', prompt: 'first' }, { id: 'b', prompt: 5 }, { id: 'c', prompt: 'third', model: 'slow', metadata: { lang: 'en' } }];
    const json = await postFile(server, '?batch_id=api-json', JSON.stringify({ rows }), 'application/json');
    expect(json.status).toBe(202);
    expect((await waitUntilFinished(server, 'api-json')).rows).toMatchObject({ total: 2, invalid: 1 });
    const answers = (await (await fetch(`${server.url}/v1/batches/api-json/results`)).text()).trim().split('\n').map((line) => JSON.parse(line) as RowResult);
    expect(answers.map((r) => [r.id, r.model, r.metadata])).toEqual([['a', 'fast', {}], ['c', 'slow', { lang: 'en' }]]);
    expect(await (await fetch(`${server.url}/v1/batches/api-json/files/errors.jsonl`)).text()).toMatch(/"line":2\b/);
    // Windows tools start a file with a byte order mark: taken as the CSV and JSONL readers take it.
    const withBom = await postFile(server, '?batch_id=api-json-bom', `\uFEFF${JSON.stringify([{ prompt: 'hi' }])}`, 'application/json');
    expect(withBom.status, JSON.stringify(withBom.body)).toBe(202);
    const arrayRow = await postFile(server, '', JSON.stringify([['What is 2+2?'], { prompt: 'hi' }]), 'application/json');
    expect(arrayRow.status).toBe(400);
    expect(arrayRow.body.error).toMatchObject({ code: 'invalid_json', message: 'row 1 is an array: each row is an object, as a JSONL line would hold it, e.g. [{"prompt": "..."}, ...]' });
    // A setting beside the rows would have been ignored, the batch run on the default model (QA): refused, with where it goes.
    const modelInBody = await postFile(server, '?batch_id=api-json-model', JSON.stringify({ rows: [{ prompt: 'hi' }], model: 'slow' }), 'application/json');
    expect(modelInBody.status).toBe(400);
    expect(modelInBody.body.error).toMatchObject({ code: 'invalid_json', message: 'the body\'s key "model" beside "rows" is not read: a JSON body holds its rows alone; give model in the query string instead (?model=...)' });
    expect((await getJson(`${server.url}/v1/batches/api-json-model`)).status).toBe(404);
    const strayKeys = await postFile(server, '', JSON.stringify({ rows: [{ prompt: 'hi' }], priority: 1, budget: 2 }), 'application/json');
    expect(strayKeys.body.error?.message).toBe('the body\'s keys "priority", "budget" beside "rows" are not read: a JSON body holds its rows alone; give budget in the query string instead (?budget=...)');
    const notJson = await postFile(server, '', '{"rows": [', 'application/json');
    expect(notJson.status).toBe(400);
    expect(notJson.body.error).toMatchObject({ code: 'invalid_json', message: expect.stringContaining('{"rows": [...]}') });

    // Compressed uploads, decompressed as they arrive: a gzipped CSV and brotli-compressed JSON rows.
    const gzipped = await postFile(server, '?batch_id=api-gzip', new Uint8Array(gzipSync('id,prompt\ng1,first\ng2,second\n')), 'text/csv', { 'content-encoding': 'gzip' });
    expect(gzipped.status).toBe(202);
    expect((await waitUntilFinished(server, 'api-gzip')).rows).toMatchObject({ total: 2, succeeded: 2 });
    expect(await readFile(join(dir, 'out', 'api-gzip', 'input.csv'), 'utf8')).toBe('id,prompt\ng1,first\ng2,second\n');
    // Posted again in another format, it runs on the new file alone, and the old one goes.
    const asJson = await postFile(server, '?batch_id=api-gzip', JSON.stringify([{ id: 'g1', prompt: 'first' }, { id: 'g2', prompt: 'second' }]), 'application/json');
    expect(asJson.status, JSON.stringify(asJson.body)).toBe(202);
    expect((await waitUntilFinished(server, 'api-gzip')).rows).toMatchObject({ total: 2, succeeded: 2 });
    expect((await readdir(join(dir, 'out', 'api-gzip'))).filter((name) => name.startsWith('input.'))).toEqual(['input.jsonl']);
    const brotli = await postFile(server, '?batch_id=api-br', new Uint8Array(brotliCompressSync(JSON.stringify([{ prompt: 'one' }]))), 'application/json', { 'content-encoding': 'br' });
    expect(brotli.status).toBe(202);
    expect((await waitUntilFinished(server, 'api-br')).rows).toMatchObject({ total: 1, succeeded: 1 });

    // A file in another charset (Excel saves CSV in the system's code page) is saved as UTF-8, not failed row by row as bad_encoding.
    const latin1 = await postFile(server, '?batch_id=api-latin1', new Uint8Array(Buffer.from('id,prompt,note\nl1,Café crème?,Zürich\n', 'latin1')), 'text/csv; charset="ISO-8859-1"');
    expect(latin1.status, JSON.stringify(latin1.body)).toBe(202);
    expect((await waitUntilFinished(server, 'api-latin1')).rows).toMatchObject({ total: 1, succeeded: 1, invalid: 0 });
    // With a byte order mark, so that results.csv gets one for Excel (it is saved as UTF-8, no longer in Excel's code page).
    expect(await readFile(join(dir, 'out', 'api-latin1', 'input.csv'), 'utf8')).toBe('\ufeffid,prompt,note\nl1,Café crème?,Zürich\n');
    const latin1Rows = (await (await fetch(`${server.url}/v1/batches/api-latin1/results`)).text()).trim().split('\n').map((line) => JSON.parse(line) as RowResult);
    expect(latin1Rows.map((r) => r.metadata)).toEqual([{ note: 'Zürich' }]);
    const utf16Json = await postFile(server, '?batch_id=api-utf16', new Uint8Array(Buffer.from(JSON.stringify([{ prompt: 'naïve' }]), 'utf16le')), 'application/json; charset=utf-16le');
    expect(utf16Json.status, JSON.stringify(utf16Json.body)).toBe(202);
    // "utf-16" is little-endian to a decoder, but a file that starts with FE FF is big-endian (review: saved as garbage).
    const bigEndian = Buffer.from('\ufeffid,prompt\nbe1,Hello there\n', 'utf16le').swap16();
    expect((await postFile(server, '?batch_id=api-utf16be', new Uint8Array(bigEndian), 'text/csv; charset=utf-16')).status).toBe(202);
    expect(await readFile(join(dir, 'out', 'api-utf16be', 'input.csv'), 'utf8')).toBe('\ufeffid,prompt\nbe1,Hello there\n');
    const unknownCharset = await postFile(server, '', 'prompt\nhi\n', 'text/csv; charset=klingon');
    expect(unknownCharset.status).toBe(415);
    expect(unknownCharset.body.error).toMatchObject({ code: 'unsupported_charset', message: expect.stringContaining('charset "klingon" in the Content-Type is not one this server knows: send the file as UTF-8') });
    const notThatCharset = await postFile(server, '?batch_id=api-odd-utf16', new Uint8Array([0x70, 0x00, 0x0a]), 'text/csv; charset=utf-16le');
    expect(notThatCharset.status).toBe(400);
    expect(notThatCharset.body.error).toMatchObject({ code: 'invalid_charset', message: 'the body is not valid utf-16le, the charset its Content-Type names: send it with the charset it was saved in (or as UTF-8)' });
    expect((await getJson(`${server.url}/v1/batches/api-odd-utf16`)).status).toBe(404);

    // The list pages on past any limit: after=<last_id> gives the next older ones, until has_more is false.
    type Page = { data: BatchView[]; first_id: string | null; last_id: string | null; has_more: boolean; total: number };
    const whole = (await getJson<Page>(`${server.url}/v1/batches?limit=100`)).body;
    expect(whole.data.length).toBeGreaterThanOrEqual(5);
    const paged: string[] = [];
    let after: string | null = null;
    for (let pages = 0; pages < 50; pages++) {
      const page: Page = (await getJson<Page>(`${server.url}/v1/batches?limit=2${after ? `&after=${after}` : ''}`)).body;
      paged.push(...page.data.map((b) => b.batch_id));
      expect(page.first_id).toBe(page.data[0]?.batch_id ?? null);
      if (!page.has_more) break;
      after = page.last_id;
    }
    expect(paged).toEqual(whole.data.map((b) => b.batch_id));
    const lost = await getJson<ErrorBody>(`${server.url}/v1/batches?after=no-such-batch`);
    expect([lost.status, lost.body.error.code]).toEqual([404, 'batch_not_found']);
  });

  it('takes cache=false: that batch neither takes nor keeps answers in the configured answer cache', async () => {
    const dir = await tempDir('api-cache');
    const config = await writeSimConfig(dir, h.sim.url, { cache: { ttl_hours: 1 } });
    const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env());
    const csv = 'id,prompt\nc1,Something asked of the cache test only\n';
    const results = async (batchId: string) => (await (await fetch(`${server.url}/v1/batches/${batchId}/results`)).text()).trim().split('\n').map((line) => JSON.parse(line) as RowResult);

    const off = await postFile(server, '?batch_id=api-cache-off&cache=false', csv);
    expect(off.status, JSON.stringify(off.body)).toBe(202);
    expect(off.body.notes).toContain('Note: the answer cache is off for this batch (cache=false): every row is called, and no answer is kept for later.');
    expect(off.body).toMatchObject({ cache: false });
    await waitUntilFinished(server, 'api-cache-off');
    // Posted again, it keeps cache=false as it keeps its judge.
    const again = await postFile(server, '?batch_id=api-cache-off', csv);
    expect(again.status, JSON.stringify(again.body)).toBe(202);
    expect(again.body.notes).toContain('Note: the answer cache is off for this batch, as its earlier run was given cache=false (cache=true turns it on again).');
    await waitUntilFinished(server, 'api-cache-off');
    const first = await postFile(server, '?batch_id=api-cache-first&cache=true', csv);
    expect(first.body.notes.some((note) => note.startsWith('Note: the answer cache is on'))).toBe(true);
    await waitUntilFinished(server, 'api-cache-first');
    await postFile(server, '?batch_id=api-cache-second', csv);
    await waitUntilFinished(server, 'api-cache-second');
    // Only the batch that kept its answer is a cache's source: the one with cache=false kept none.
    expect((await results('api-cache-off'))[0]!.cached).toBeUndefined();
    expect((await results('api-cache-first'))[0]!.cached).toBeUndefined();
    expect((await results('api-cache-second'))[0]!.cached).toMatchObject({ batch_id: 'api-cache-first', row: 1 });
    const refused = await postFile(server, '?cache=no', csv);
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatchObject({ code: 'invalid_parameter', message: 'query parameter "cache": expected true or false (false: the batch neither takes nor keeps cached answers)' });
  });

  it('a batch its budget stopped tells its rows to be posted again with a higher budget, which finishes it (QA: they said "--budget", a flag no API client has)', async () => {
    const dir = await tempDir('api-budget');
    // An absurd price makes each call cost about $0.1, so a $1 budget runs out after a handful of rows.
    const config = await writeSimConfig(dir, h.sim.url, { models: { pricey: { provider: 'sim', price: { input_per_mtok: 1000, output_per_mtok: 1000 } } }, default_model: 'pricey', max_tokens: 100 });
    const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env());
    const csv = await readFile(await writePromptsCsv(dir, 30), 'utf8');
    expect((await postFile(server, '?batch_id=api-budget&budget=1', csv)).status).toBe(202);
    expect((await waitUntilFinished(server, 'api-budget')).status).toBe('budget_exceeded');
    const stopped = (await readJsonLines<RowResult>(join(dir, 'out', 'api-budget', 'results.jsonl'))).filter((r) => r.error?.code === 'budget_exceeded');
    expect(stopped.length).toBeGreaterThan(0);
    for (const row of stopped) expect(row.error!.message).toMatch(/ of the batch budget of \$1(\.00)? is spent \(.*\); post the file again with batch_id=api-budget and a higher budget \(its query parameter, in USD\) to finish it$/);
    const reportMd = await (await fetch(`${server.url}/v1/batches/api-budget/report?format=md`)).text();
    expect(reportMd).toContain('post the file again with batch_id=api-budget and a higher budget (its query parameter, in USD) to finish it |');
    expect(reportMd).not.toContain('--budget');
    // The way out the message names: the same file, a higher budget.
    expect((await postFile(server, '?batch_id=api-budget&budget=100', csv)).status).toBe(202);
    expect(await waitUntilFinished(server, 'api-budget')).toMatchObject({ status: 'completed', rows: { succeeded: 30, failed: 0 } });
  });

  it("shows in the batch's file_notes what the run noted once the file was read, after the POST was answered (review: the judge's \"answers rows here too\" note reached no API client)", async () => {
    const dir = await tempDir('api-file-notes');
    // A few rows queued ahead of the workers: the POST is answered long before the file's end is read.
    const config = await writeSimConfig(dir, h.sim.url, { queue: { max_pending: 5 } });
    const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env());
    const csv = await readFile(await writePromptsCsv(dir, 60, { model: () => 'fast' }), 'utf8');
    const posted = await postFile(server, '?batch_id=api-file-notes&judge=fast', csv);
    expect(posted.status, JSON.stringify(posted.body)).toBe(202);
    expect(posted.body.file_notes).toEqual([]);
    const judgeNote = 'Note: the judge, fast, answers rows here too: it scores its own answers (judges tend to favour them), and its judge calls count under it in the Models table (the Judge line shows them apart).';
    const view = await waitUntilFinished(server, 'api-file-notes');
    expect(view.file_notes).toContain(judgeNote);
    expect(server.output().stdout).toContain(`[api-file-notes] ${judgeNote}`);
    // Posted again, the run's notes are its own: none until its file is read again.
    const again = await postFile(server, '?batch_id=api-file-notes&judge=slow', csv);
    expect(again.status, JSON.stringify(again.body)).toBe(202);
    expect(again.body.file_notes).not.toContain(judgeNote);
    expect((await waitUntilFinished(server, 'api-file-notes')).file_notes).not.toContain(judgeNote);
  });

  it("logs the whole Read line of a batch posted again without some of its rows (QA: the line was cut at the ';' inside its parenthesis)", async () => {
    const dir = await tempDir('api-read-line');
    const config = await writeSimConfig(dir, h.sim.url);
    const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env());
    expect((await postFile(server, '?batch_id=api-read-line', 'id,prompt\na,first\nb,second\n')).status).toBe(202);
    await waitUntilFinished(server, 'api-read-line');
    expect((await postFile(server, '?batch_id=api-read-line', 'id,prompt\na,first\n')).status).toBe(202);
    await waitUntilFinished(server, 'api-read-line');
    await waitForOutput(() => server.output().stdout, '[api-read-line] Read 1 row', 10_000);
    expect(server.output().stdout).toContain('[api-read-line] Read 1 row: 1 valid, 0 invalid, 1 already done, 1 of the last run no longer in the file (left out of the outputs; given back unchanged, they keep their answers).\n');
  });

  it("tells the client in file_notes when a post replaced rows of the batch's last file (QA: another team's batch_id, posted again with its own file, said only 'Resuming: rows that already succeeded are kept')", async () => {
    const dir = await tempDir('api-replaced');
    const config = await writeSimConfig(dir, h.sim.url);
    const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env());
    expect((await postFile(server, '?batch_id=api-replaced', 'id,prompt\na1,Team A one\na2,Team A two\na3,Team A three\n')).status).toBe(202);
    expect((await waitUntilFinished(server, 'api-replaced')).file_notes).toEqual([]);
    expect((await postFile(server, '?batch_id=api-replaced', 'id,prompt\nb1,Team B one\n')).status).toBe(202);
    const replaced = await waitUntilFinished(server, 'api-replaced');
    expect(replaced.file_notes).toEqual([
      "Note: this file replaced rows of batch api-replaced's last one: 1 changed row runs again (its earlier answer dropped); 2 rows no longer in the file are left out (their calls stay in costs.jsonl and the report). Not meant? Post under a batch_id of your own (posting the earlier file again brings its unchanged rows back with their answers).",
    ]);
  });

  it('takes a row nested thousands of levels deep, in JSONL or a JSON body, as a bad row and runs the rest (QA: the batch stuck in enqueuing, the JSON body got a 500)', async () => {
    const dir = await tempDir('api-deep');
    const config = await writeSimConfig(dir, h.sim.url);
    const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env());
    // Written out by hand: JSON.stringify itself runs out of stack on such a row.
    const deep = `{"id":"deep","prompt":"x","metadata":${'{"a":'.repeat(6000)}1${'}'.repeat(6000)}}`;
    const tooDeep = expect.stringContaining('"line":2,"id":"deep","code":"bad_field","message":"the row nests objects or arrays more than 100 levels deep');
    for (const [batchId, body, contentType] of [
      ['api-deep-jsonl', `{"prompt":"before"}\n${deep}\n{"prompt":"after"}\n`, 'application/jsonl'],
      ['api-deep-json', `[{"prompt":"before"},${deep},{"prompt":"after"}]`, 'application/json'],
    ]) {
      const submitted = await postFile(server, `?batch_id=${batchId}`, body!, contentType);
      expect(submitted.status, JSON.stringify(submitted.body)).toBe(202);
      expect((await waitUntilFinished(server, batchId!)).rows).toMatchObject({ total: 2, succeeded: 2, invalid: 1 });
      expect(await (await fetch(`${server.url}/v1/batches/${batchId}/files/errors.jsonl`)).text()).toEqual(tooDeep);
      // The server's log says so where the batch ends, not only as its file is read (QA: "2 of 2 rows succeeded" alone read as a batch with nothing wrong).
      await waitForOutput(() => server.output().stdout, `[${batchId}] Finished:`, 10_000);
      expect(server.output().stdout).toContain(`[${batchId}] Finished: 2 of 2 rows succeeded, 1 invalid row not run, `);
    }
  });

  it('takes a row of more keys than a row may have (16,384), in JSONL or a JSON body, as a bad row and runs the rest (QA: 500,000 keys held the server, its health check too, for seconds)', async () => {
    const dir = await tempDir('api-wide');
    const config = await writeSimConfig(dir, h.sim.url);
    const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env());
    const wide = JSON.stringify({ id: 'wide', prompt: 'x', metadata: Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`k${i}`, i])) });
    const tooWide = '{"row":2,"line":2,"id":"wide","code":"bad_field","message":"the row has 20,002 keys (its fields and those of its metadata or body object), more than the 16,384 a row may have (a CSV header\'s limit too: each becomes a results.csv column): keep the fields you want beside the answers, and leave the rest out of the row, or nest them under one key, which is one column"}\n';
    for (const [batchId, body, contentType] of [
      ['api-wide-jsonl', `{"prompt":"before"}\n${wide}\n{"prompt":"after"}\n`, 'application/jsonl'],
      ['api-wide-json', `[{"prompt":"before"},${wide},{"prompt":"after"}]`, 'application/json'],
    ]) {
      const submitted = await postFile(server, `?batch_id=${batchId}`, body!, contentType);
      expect(submitted.status, JSON.stringify(submitted.body)).toBe(202);
      expect((await waitUntilFinished(server, batchId!)).rows).toMatchObject({ total: 2, succeeded: 2, invalid: 1 });
      expect(await (await fetch(`${server.url}/v1/batches/${batchId}/files/errors.jsonl`)).text()).toBe(tooWide);
    }
  });

  it('writes results.csv with a UTF-8 byte order mark for a CSV uploaded with one, or in UTF-16 or another charset, as run does (QA: Excel garbled the results)', async () => {
    const dir = await tempDir('api-bom');
    const config = await writeSimConfig(dir, h.sim.url);
    const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env());
    const csv = 'id,prompt,note\nb1,Café?,Zürich\n';
    const uploads: [string, Buffer, string][] = [
      ['api-bom-utf16le', Buffer.from(`\ufeff${csv}`, 'utf16le'), 'text/csv; charset=utf-16le'],
      ['api-bom-utf16', Buffer.from(`\ufeff${csv}`, 'utf16le'), 'text/csv; charset=utf-16'],
      ['api-bom-cp1252', Buffer.from(csv, 'latin1'), 'text/csv; charset=windows-1252'],
      ['api-bom-utf8', Buffer.from(`\ufeff${csv}`), 'text/csv'],
      ['api-bom-utf8-labelled', Buffer.from(`\ufeff${csv}`), 'text/csv; charset=windows-1252'],
    ];
    for (const [batchId, body, contentType] of uploads) {
      const submitted = await postFile(server, `?batch_id=${batchId}`, new Uint8Array(body), contentType);
      expect(submitted.status, JSON.stringify(submitted.body)).toBe(202);
      expect((await waitUntilFinished(server, batchId)).rows, batchId).toMatchObject({ total: 1, succeeded: 1 });
      const results = await readFile(join(dir, 'out', batchId, 'results.csv'), 'utf8');
      expect([batchId, results.startsWith('\ufeffid,')]).toEqual([batchId, true]);
      expect(results).toContain('Zürich');
    }
    // A plain UTF-8 upload's results.csv has none, as run's.
    await postFile(server, '?batch_id=api-bom-none', csv);
    await waitUntilFinished(server, 'api-bom-none');
    expect(await readFile(join(dir, 'out', 'api-bom-none', 'results.csv'), 'utf8')).toMatch(/^id,/);
  });

  it('refuses bad requests with a status, a code and a message that says what to do', async () => {
    const dir = await tempDir('api-errors');
    const config = await writeSimConfig(dir, h.sim.url);
    const out = join(dir, 'out');
    const server = await startServer(['--config', config, '--out', out], h.env());
    const error = async (response: Promise<{ status: number; body: unknown }>) => {
      const { status, body } = await response;
      return { status, ...(body as ErrorBody).error };
    };

    expect(await error(postFile(server, '?batch_id=no-prompt', 'question,x\nhi,1\n'))).toEqual({
      status: 400,
      code: 'invalid_input',
      message: expect.stringMatching(/^the uploaded file has no "prompt" column; its columns .* are: question, x\. Choose the prompt column with \?prompt_column=<name>\.$/),
    });
    // Refused before anything was queued: no batch, no folder left behind.
    expect((await getJson(`${server.url}/v1/batches/no-prompt`)).status).toBe(404);
    await expect(readFile(join(out, 'no-prompt', 'input.csv'))).rejects.toThrow();

    expect(await error(postFile(server, '', ''))).toMatchObject({ status: 400, code: 'invalid_input', message: expect.stringContaining('empty') });
    expect(await error(postFile(server, '?batch_id=zstd', 'prompt\nhi\n', 'text/csv', { 'content-encoding': 'zstd' }))).toMatchObject({ status: 415, code: 'unsupported_encoding', message: expect.stringContaining('gzip, deflate or br') });
    expect(await error(postFile(server, '?batch_id=not-gzip', 'prompt\nhi\n', 'text/csv', { 'content-encoding': 'gzip' }))).toMatchObject({ status: 400, code: 'invalid_encoding', message: expect.stringContaining('not valid gzip') });
    const truncated = new Uint8Array(gzipSync('prompt\n' + 'a question\n'.repeat(1000)).subarray(0, 40));
    expect(await error(postFile(server, '?batch_id=cut-gzip', truncated, 'text/csv', { 'content-encoding': 'gzip' }))).toMatchObject({ status: 400, code: 'invalid_encoding' });
    // Refused uploads leave nothing behind either.
    expect((await getJson(`${server.url}/v1/batches/not-gzip`)).status).toBe(404);
    expect(await readdir(out).catch(() => [])).toEqual([]);
    expect(await error(postFile(server, '', 'prompt\nhi\n', 'application/octet-stream'))).toMatchObject({ status: 415, message: expect.stringContaining('text/csv') });
    expect(await error(postFile(server, '?batchid=x', 'prompt\nhi\n'))).toMatchObject({ status: 400, code: 'unknown_parameter', message: expect.stringContaining('batch_id, model') });
    for (const budget of ['lots', '0x10', '1e3']) {
      expect(await error(postFile(server, `?budget=${budget}`, 'prompt\nhi\n'))).toMatchObject({ status: 400, code: 'invalid_parameter', message: 'query parameter "budget": expected a number of USD above 0, e.g. 5 or 2.50' });
    }
    // A budget past what nano-dollars count exactly failed every row (QA): refused with the largest taken.
    expect(await error(postFile(server, '?budget=10000000', 'prompt\nhi\n'))).toMatchObject({ status: 400, code: 'invalid_parameter', message: 'query parameter "budget": at most 9000000 (costs are counted in whole nano-dollars); for no limit, set none' });
    expect((await getJson<ErrorBody>(`${server.url}/v1/batches?limit=abc`)).body.error).toMatchObject({ code: 'invalid_parameter', message: 'query parameter "limit": expected a whole number from 1 to 100' });
    expect(await error(postFile(server, '?model=', 'prompt\nhi\n'))).toMatchObject({ status: 400, code: 'invalid_parameter', message: 'query parameter "model": must not be empty' });
    expect(await error(postFile(server, '?model=gpt-9', 'prompt\nhi\n'))).toMatchObject({ status: 400, message: expect.stringContaining('"gpt-9" is not in the config') });
    expect(await error(postFile(server, '?judge=critic', 'prompt\nhi\n'))).toMatchObject({ status: 400, message: expect.stringMatching(/^judge "critic" is not a model in the config/) });
    expect(await error(postFile(server, '?batch_id=a:b', 'prompt\nhi\n'))).toMatchObject({ status: 400, code: 'invalid_batch_id' });
    expect(await error(getJson(`${server.url}/v1/batches/nothing-here`))).toMatchObject({ status: 404, code: 'batch_not_found' });
    expect(await error(getJson(`${server.url}/v1/batches/nothing/files/secrets.txt`))).toMatchObject({ status: 404, code: 'file_not_found' });
    expect(await error(getJson(`${server.url}/v1/batches/x`, { method: 'DELETE' }))).toMatchObject({ status: 405 });
    expect(await error(getJson(`${server.url}/v1/batches/x/cancel`))).toMatchObject({ status: 405, message: expect.stringContaining('POST') });
    expect(await error(getJson(`${server.url}/v1/batches/nothing-here/cancel`, { method: 'POST' }))).toMatchObject({ status: 404, code: 'batch_not_found' });
    expect(await error(getJson(`${server.url}/v2/anything`))).toMatchObject({ status: 404, code: 'not_found' });
    expect(await error(getJson(`${server.url}/v1/batches/%E0%A4%A/results`))).toMatchObject({ status: 400, code: 'invalid_path', message: expect.stringContaining('"%E0%A4%A"') });
    expect(await error(postFile(server, '?batch_id=q1&batch_id=q2', 'prompt\nhi\n'))).toMatchObject({ status: 400, code: 'invalid_parameter', message: 'query parameter "batch_id" is given 2 times: give it once' });
    expect((await fetch(`${server.url}/v1/batches/x`, { method: 'DELETE' })).headers.get('allow')).toBe('GET, HEAD');
    // QA: /healthz answered other methods 404 "the API is under /v1/batches"; a base URL ending in "/" turned /v1/batches into "/batches".
    const health = await fetch(`${server.url}/healthz`, { method: 'POST' });
    expect([health.status, health.headers.get('allow')]).toEqual([405, 'GET, HEAD']);
    expect((await getJson(`${server.url}//v1/batches`)).status).toBe(200);
    // A file where the batch's output folder would go: another batch_id avoids it.
    await mkdir(out, { recursive: true });
    await writeFile(join(out, 'collide'), 'not a folder\n');
    expect(await error(postFile(server, '?batch_id=collide', 'prompt\nhi\n'))).toMatchObject({ status: 409, code: 'output_folder_taken', message: expect.stringContaining('choose another batch_id') });

    // A batch started from the command line is not the server's to replace.
    await writeFile(join(dir, 'cli.csv'), 'prompt\nhello\n');
    await h.redis.hset(`${h.prefix}:batch:{cli-made}`, { batch_id: 'cli-made', status: 'completed', input: join(dir, 'cli.csv'), out_dir: join(dir, 'cli-out'), created_at: new Date().toISOString() });
    expect(await error(postFile(server, '?batch_id=cli-made', 'prompt\nhi\n'))).toMatchObject({ status: 409, code: 'batch_exists' });
  });

  it('answers at once for a large file, reading it on as workers take rows; a line that cannot be read further on is recorded on the batch, and the fixed file finishes it', async () => {
    const dir = await tempDir('api-large');
    // queue.max_pending 50: the file is read only 50 rows ahead of the workers, as a large one would be.
    const config = await writeSimConfig(dir, h.sim.url, { concurrency: 8, queue: { max_pending: 50 } });
    const out = join(dir, 'out');
    const good = await readFile(await writePromptsCsv(dir, 400), 'utf8');
    // The last row's quote never closes: the reader finds out at the end of the file, with 399 rows queued or done.
    const broken = good.replace('item 400, briefly",', 'item 400, briefly,');
    const server = await startServer(['--config', config, '--out', out], h.env());

    const submitted = await postFile(server, '?batch_id=api-large', broken);
    expect(submitted.status).toBe(202);
    expect(submitted.body.rows.total).toBeNull(); // still being read
    let view: BatchView | null = null;
    await waitFor(async () => {
      view = (await getJson<BatchView>(`${server.url}/v1/batches/api-large`)).body;
      return view.input_error !== null;
    }, 30_000);
    expect(view!.input_error).toMatch(/^the uploaded file: the quoted field at line 401 is never closed \(close it; .*\)\. Rows before it that were queued run on; post the fixed file with batch_id=api-large/);
    expect(view!).toMatchObject({ status: 'enqueuing', finished: false });
    // Said once its collector has let go: the fixed file is taken at once.
    await waitForOutput(() => server.output().stdout, '[api-large] Reading its file stopped', 10_000);
    // Its outputs and a cancel are answered with what it waits for, not "its file is still being read".
    const waiting = await fetch(`${server.url}/v1/batches/api-large/results`);
    expect([waiting.status, ((await waiting.json()) as { error: { code: string } }).error.code]).toEqual([409, 'batch_waiting_for_file']);
    // A cancel stops the rows queued before the bad line, which ran on costing money (QA: it was refused); the fixed file runs the rest.
    const cancel = await fetch(`${server.url}/v1/batches/api-large/cancel`, { method: 'POST' });
    expect(cancel.status).toBe(202);
    await waitFor(async () => /\[api-large\] Cancel: \d+ queued rows? came off the queue; it waits for its fixed file, posted with its batch_id, which runs the rest\./.test(server.output().stdout), 10_000);
    const fixed = await postFile(server, '?batch_id=api-large', good);
    expect(fixed.body).toMatchObject({ resumed: true, input_error: null });
    const finished = await waitUntilFinished(server, 'api-large');
    expect(finished.rows).toMatchObject({ total: 400, succeeded: 400 });
    const results = await readJsonLines<RowResult>(join(out, 'api-large', 'results.jsonl'));
    expect(results.map((r) => r.row)).toEqual(Array.from({ length: 400 }, (_, i) => i + 1));
    const succeeded = (await readJsonLines<CallRecord>(join(out, 'api-large', 'costs.jsonl'))).filter((c) => c.status === 'succeeded').map((c) => c.row);
    expect(new Set(succeeded).size).toBe(succeeded.length);
    // The rows read before the bad line went to the queue then, and ran: the fixed file does not repeat them.
    expect(server.output().stdout).toMatch(/\[api-large\] Read 400 rows: 400 valid, 0 invalid, \d+ already done\./);
  });

  it('queues the rows Redis forgot again when it comes back with older data (its finished rows went down), and finishes the batch: every row once', async () => {
    const dir = await tempDir('api-rollback');
    const config = await writeSimConfig(dir, h.sim.url, { concurrency: 4 });
    const out = join(dir, 'out');
    const input = await writePromptsCsv(dir, 120);
    h.sim.setOptions({ latency_ms: 20 });
    try {
      const server = await startServer(['--config', config, '--out', out], h.env());
      expect((await postFile(server, '?batch_id=api-rollback', await readFile(input, 'utf8'))).status).toBe(202);
      await waitFor(async () => (await getJson<BatchView>(`${server.url}/v1/batches/api-rollback`)).body.rows.finished >= 30, 30_000);
      // What an older snapshot looks like to the batch: rows it had finished are not any more.
      const finishedKey = `${h.prefix}:batch:{api-rollback}:finished`;
      for (let row = 1; row <= 10; row++) await h.redis.setbit(finishedKey, row, 0);
      await waitForOutput(() => server.output().stdout, '[api-rollback] Redis came back with older data than it had', 10_000);
      h.sim.setOptions({ latency_ms: 2 });
      expect((await waitUntilFinished(server, 'api-rollback')).rows).toMatchObject({ total: 120, succeeded: 120 });
    } finally {
      h.sim.setOptions({ latency_ms: 2 });
    }
    const results = await readJsonLines<RowResult>(join(out, 'api-rollback', 'results.jsonl'));
    expect(results.map((r) => r.row)).toEqual(Array.from({ length: 120 }, (_, i) => i + 1));
  });

  it('answers 409 for the outputs of a batch still running, and a server stopped mid-batch goes on with it when started again: every row once', async () => {
    const dir = await tempDir('api-restart');
    const config = await writeSimConfig(dir, h.sim.url, { concurrency: 4 });
    const out = join(dir, 'out');
    const input = await writePromptsCsv(dir, 200);
    const env = h.env();
    h.sim.setOptions({ latency_ms: 20 });
    try {
      const first = await startServer(['--config', config, '--out', out], env);
      const submitted = await postFile(first, '?batch_id=api-restart', await readFile(input, 'utf8'));
      expect(submitted.status).toBe(202);
      const early = await getJson<ErrorBody>(`${first.url}/v1/batches/api-restart/results`);
      expect(early.status).toBe(409);
      expect(early.body.error).toMatchObject({ code: 'batch_not_finished', message: expect.stringMatching(/of 200 rows finished|its file is still being read/) });
      expect((await postFile(first, '?batch_id=api-restart', await readFile(input, 'utf8'))).body.error?.code).toBe('batch_running');

      await waitFor(async () => (await getJson<BatchView>(`${first.url}/v1/batches/api-restart`)).body.rows.finished >= 20, 30_000);
      first.kill('SIGTERM');
      expect((await first.done).code).toBe(0);
      await expect(fetch(`${first.url}/healthz`)).rejects.toThrow(); // the first server is gone

      h.sim.setOptions({ latency_ms: 2 });
      const second = await startServer(['--config', config, '--out', out], env);
      await waitForOutput(() => second.output().stdout, '[api-restart] Going on with it', 10_000);
      const finished = await waitUntilFinished(second, 'api-restart');
      expect(finished.rows).toMatchObject({ total: 200, succeeded: 200 });
    } finally {
      h.sim.setOptions({ latency_ms: 2 });
    }
    const results = await readJsonLines<RowResult>(join(out, 'api-restart', 'results.jsonl'));
    expect(results.map((r) => r.row)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    const calls = await readJsonLines<CallRecord>(join(out, 'api-restart', 'costs.jsonl'));
    const succeeded = calls.filter((c) => c.status === 'succeeded').map((c) => c.row);
    expect(new Set(succeeded).size).toBe(succeeded.length); // no row paid for twice
  });

  it("a server started with another config leaves a stopped server's batch, saying whose it is and what to do; posted to it again, it runs the rest, saying so (QA: it ran another team's rows on its own provider, limits and prices)", async () => {
    const [dirA, dirB] = [await tempDir('api-config-a'), await tempDir('api-config-b')];
    const configA = await writeSimConfig(dirA, h.sim.url, { concurrency: 4 });
    const configB = await writeSimConfig(dirB, h.sim.url, { concurrency: 8 });
    const out = join(dirA, 'out');
    const input = await writePromptsCsv(dirA, 200);
    const env = h.env();
    h.sim.setOptions({ latency_ms: 20 });
    try {
      const first = await startServer(['--config', configA, '--out', out], env);
      expect((await postFile(first, '?batch_id=api-config', await readFile(input, 'utf8'))).status).toBe(202);
      await waitFor(async () => (await getJson<BatchView>(`${first.url}/v1/batches/api-config`)).body.rows.finished >= 20, 30_000);
      first.kill('SIGTERM');
      expect((await first.done).code).toBe(0);

      const second = await startServer(['--config', configB, '--out', join(dirB, 'out')], env);
      await waitForOutput(() => second.output().stdout, '[api-config] Left as it is', 10_000);
      const left = second.output().stdout.split('\n').find((line) => line.startsWith('[api-config]'))!;
      expect(left).toContain(`it was posted to a server with another config (--config ${configA} on host `);
      expect(left).toContain(`and this server's (--config ${configB} on host `);
      expect(left).toContain('To finish it as it was posted, start `switchyard serve` with that config on this Redis and prefix; to run the rest with this server\'s config instead, post its file again here with batch_id=api-config.');
      expect(second.output().stdout).not.toContain('[api-config] Going on with it');

      h.sim.setOptions({ latency_ms: 2 });
      const again = await postFile(second, '?batch_id=api-config', await readFile(input, 'utf8'));
      expect(again.status).toBe(202);
      expect(again.body.notes.some((note) => note.includes(`was posted before to a server with another config (--config ${configA} on host `))).toBe(true);
      const finished = await waitUntilFinished(second, 'api-config');
      expect(finished.rows).toMatchObject({ total: 200, succeeded: 200 });
    } finally {
      h.sim.setOptions({ latency_ms: 2 });
    }
    const results = await readJsonLines<RowResult>(join(out, 'api-config', 'results.jsonl'));
    expect(results.map((r) => r.row)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
  });

  it('a server started again queues the rows of its batch that a `run --resume` of it took off the queue as it stopped, and finishes it: every row once (QA: it stayed running for good)', async () => {
    const dir = await tempDir('api-handover');
    const config = await writeSimConfig(dir, h.sim.url, { concurrency: 2 });
    const out = join(dir, 'out');
    const input = await writePromptsCsv(dir, 200);
    const env = h.env();
    h.sim.setOptions({ latency_ms: 20 });
    try {
      const first = await startServer(['--config', config, '--out', out], env);
      expect((await postFile(first, '?batch_id=api-handover', await readFile(input, 'utf8'))).status).toBe(202);
      await waitFor(async () => (await getJson<BatchView>(`${first.url}/v1/batches/api-handover`)).body.rows.finished >= 10, 30_000);
      first.kill('SIGTERM');
      expect((await first.done).code).toBe(0);

      // The server is down, so its user goes on from the command line, and stops that too: its stop takes the queued rows off the queue.
      h.sim.setOptions({ latency_ms: 50 });
      const resume = spawnCli(['run', '--resume', 'api-handover', '--concurrency', '2'], env);
      await waitForOutput(() => resume.output().stdout, 'Read 200 rows', 20_000);
      resume.kill('SIGINT');
      const stopped = await resume.done;
      expect(stopped.code).toBe(130);
      expect(stopped.stdout).toMatch(/\d+ queued rows came off the queue/);

      h.sim.setOptions({ latency_ms: 2 });
      const second = await startServer(['--config', config, '--out', out], env);
      await waitForOutput(() => second.output().stdout, '[api-handover] ', 10_000);
      const finished = await waitUntilFinished(second, 'api-handover');
      expect(finished).toMatchObject({ status: 'completed', rows: { total: 200, finished: 200 } });
      expect(second.output().stdout).toMatch(/\[api-handover\] \d+ rows were neither finished nor queued/);
    } finally {
      h.sim.setOptions({ latency_ms: 2 });
    }
    const results = await readJsonLines<RowResult>(join(out, 'api-handover', 'results.jsonl'));
    expect(results.map((r) => r.row)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    const succeeded = (await readJsonLines<CallRecord>(join(out, 'api-handover', 'costs.jsonl'))).filter((c) => c.status === 'succeeded').map((c) => c.row);
    expect(new Set(succeeded).size).toBe(succeeded.length); // no row paid for twice
  });

  it('answers 503 server_stopping to an upload the server was stopped during, and runs its rows when started again', async () => {
    const dir = await tempDir('api-stop-upload');
    const config = await writeSimConfig(dir, h.sim.url);
    const out = join(dir, 'out');
    const input = await readFile(await writePromptsCsv(dir, 50), 'utf8');
    const env = h.env();
    const first = await startServer(['--config', config, '--out', out], env);
    // The file's first half, then SIGTERM, then the rest: the server takes the whole of an upload it has begun.
    const answer = new Promise<{ status: number; body: ErrorBody }>((resolve, reject) => {
      const req = request(`${first.url}/v1/batches?batch_id=api-stop-upload`, { method: 'POST', headers: { 'content-type': 'text/csv' } }, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as ErrorBody }));
      });
      req.on('error', reject);
      req.write(input.slice(0, input.length / 2));
      setTimeout(() => {
        first.kill('SIGTERM');
        setTimeout(() => req.end(input.slice(input.length / 2)), 300);
      }, 300);
    });
    const stopped = await answer;
    expect(stopped.status).toBe(503);
    expect(stopped.body.error).toMatchObject({ code: 'server_stopping', message: expect.stringContaining("batch api-stop-upload's file is saved") });
    expect((await first.done).code).toBe(0);

    const second = await startServer(['--config', config, '--out', out], env);
    expect((await waitUntilFinished(second, 'api-stop-upload')).rows).toMatchObject({ total: 50, succeeded: 50 });
  });

  it('answers a re-post of a batch whose upload is still coming in 409 batch_running, saying so (QA: it pointed at a GET that answers 404 then)', async () => {
    const dir = await tempDir('api-upload-twice');
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await readFile(await writePromptsCsv(dir, 20), 'utf8');
    const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env());
    // The file's first half, then the same batch_id again while the rest has not come.
    let finish = () => undefined as void;
    const first = new Promise<number>((resolve, reject) => {
      const req = request(`${server.url}/v1/batches?batch_id=api-upload-twice`, { method: 'POST', headers: { 'content-type': 'text/csv' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.write(input.slice(0, input.length / 2));
      finish = () => void req.end(input.slice(input.length / 2));
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const again = await postFile(server, '?batch_id=api-upload-twice', input);
    expect(again.status).toBe(409);
    expect(again.body.error).toMatchObject({ code: 'batch_running', message: expect.stringContaining('its file is still coming in') });
    expect(again.body.error?.message).toContain('send it again once that request has been answered');
    expect((await getJson(`${server.url}/v1/batches/api-upload-twice`)).status).toBe(404);
    finish();
    expect(await first).toBe(202);
    expect((await getJson(`${server.url}/v1/batches/api-upload-twice`)).status).toBe(200);
  });

  it('stops on SIGTERM while an upload stalls: its workers start no call after it, and it exits once the grace for requests under way is over (QA: it ran on, calling models, for 10 minutes)', async () => {
    const dir = await tempDir('api-stop-stalled');
    const config = await writeSimConfig(dir, h.sim.url, { concurrency: 4 });
    h.sim.setOptions({ latency_ms: 100 });
    try {
      const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env());
      expect((await postFile(server, '?batch_id=api-running', await readFile(await writePromptsCsv(dir, 400), 'utf8'))).status).toBe(202);
      await waitFor(async () => (await getJson<BatchView>(`${server.url}/v1/batches/api-running`)).body.rows.finished >= 8, 30_000);
      // An upload that sends half its body and then nothing more.
      const stalled = connect(Number(new URL(server.url).port), '127.0.0.1');
      await once(stalled, 'connect');
      stalled.on('error', () => undefined);
      stalled.write('POST /v1/batches?batch_id=api-stalled HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 1000\r\n\r\nprompt\nhello\n');
      await new Promise((resolve) => setTimeout(resolve, 300));
      const stoppedAt = Date.now();
      server.kill('SIGTERM');
      await new Promise((resolve) => setTimeout(resolve, 500)); // the calls in flight then finish
      const callsAtStop = h.sim.stats().requests;
      const ended = await server.done;
      expect(ended.code, ended.stdout + ended.stderr).toBe(0);
      expect(Date.now() - stoppedAt).toBeLessThan(20_000);
      expect(h.sim.stats().requests).toBe(callsAtStop);
      stalled.destroy();
    } finally {
      h.sim.setOptions({ latency_ms: 2 });
    }
  });

  it('cancels a running batch: queued rows come off the queue, the outputs hold the rows finished, and posting it again runs the rest', async () => {
    const dir = await tempDir('api-cancel');
    // Read only a few rows ahead of the workers, from a file of many reads: the cancel comes while it is still being read.
    const config = await writeSimConfig(dir, h.sim.url, { concurrency: 4, queue: { max_pending: 20, enqueue_chunk: 10 } });
    const out = join(dir, 'out');
    const input = `id,prompt,note\n${Array.from({ length: 300 }, (_, i) => `r${i + 1},Question ${i + 1},${'x'.repeat(500)}\n`).join('')}`;
    h.sim.setOptions({ latency_ms: 25 });
    try {
      const server = await startServer(['--config', config, '--out', out], h.env());
      expect((await postFile(server, '?batch_id=api-cancel', input)).status).toBe(202);
      await waitFor(async () => (await getJson<BatchView>(`${server.url}/v1/batches/api-cancel`)).body.rows.finished >= 12, 30_000);

      const cancelled = await getJson<BatchView>(`${server.url}/v1/batches/api-cancel/cancel`, { method: 'POST' });
      expect(cancelled.status).toBe(202);
      expect(cancelled.body).toMatchObject({ cancelling: true, finished: false });
      const ended = await waitUntilFinished(server, 'api-cancel');
      expect(ended).toMatchObject({ status: 'cancelled', cancelling: false });
      expect(ended.rows.finished).toBeLessThan(300);
      // Its file is read no further (the reading waited for room in the queue for ever, holding the file open).
      if (existsSync('/proc/self/fd')) expect(descriptorsOn(realpathSync(join(out, 'api-cancel', 'input.csv')), server.pid)).toEqual([]);
      // Nothing of it is left for a worker to run (and pay for) with nobody collecting it.
      const left = [
        ...(await h.redis.lrange(`${h.prefix}:prompts:wait`, 0, -1)),
        ...(await h.redis.lrange(`${h.prefix}:prompts:active`, 0, -1)),
        ...(await h.redis.zrange(`${h.prefix}:prompts:delayed`, '0', '-1')),
        ...(await h.redis.zrange(`${h.prefix}:prompts:prioritized`, '0', '-1')),
      ];
      expect(left.filter((id) => id.startsWith('api-cancel_'))).toEqual([]);
      const partial = await readJsonLines<RowResult>(join(out, 'api-cancel', 'results.jsonl'));
      expect(partial.length).toBe(ended.rows.finished);
      const report = (await getJson<Report>(`${server.url}/v1/batches/api-cancel/report`)).body;
      // The rest of the file was not read: how many rows it holds is not known.
      expect(report.totals.unfinished_rows).toBeNull();
      // Its report says it was cancelled, not that its run "stopped early" as a crash would (QA: a team's cancelled batch read as
      // one that broke), and what an API user does next, not the CLI's resume.
      expect(report.cancelled).toBe(true);
      const reportMd = await readFile(join(out, 'api-cancel', 'report.md'), 'utf8');
      expect(reportMd).toMatch(/^\*\*Cancelled: /m);
      expect(reportMd).toContain('the rest of the file not run yet: the batch was cancelled, and posting the file again with `batch_id=api-cancel` runs the rest');
      expect(server.output().stdout).toMatch(/\[api-cancel\] Cancelled: \d+ of \d+ rows succeeded, the rest of its file not run/);
      expect((await getJson<ErrorBody>(`${server.url}/v1/batches/api-cancel/cancel`, { method: 'POST' })).body.error.code).toBe('batch_finished');

      // No 500s for the rest: at this file's 10% failure rate a row of the 300 now and then failed all its attempts (CI: 299 of 300).
      h.sim.setOptions({ latency_ms: 2, failure_rate: 0 });
      const again = await postFile(server, '?batch_id=api-cancel', input);
      expect(again.body).toMatchObject({ resumed: true });
      const finished = await waitUntilFinished(server, 'api-cancel');
      expect(finished).toMatchObject({ status: 'completed', rows: { finished: 300, succeeded: 300 } });
    } finally {
      h.sim.setOptions({ latency_ms: 2, failure_rate: 0.1 });
    }
    const results = await readJsonLines<RowResult>(join(out, 'api-cancel', 'results.jsonl'));
    expect(results.map((r) => r.row)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    const succeeded = (await readJsonLines<CallRecord>(join(out, 'api-cancel', 'costs.jsonl'))).filter((c) => c.status === 'succeeded').map((c) => c.row);
    expect(new Set(succeeded).size).toBe(succeeded.length);
  });

  it('refuses a batch_id whose folder holds a forgotten batch\'s outputs, touching none of its files (QA: its input file was deleted)', async () => {
    const dir = await tempDir('api-forgotten');
    const config = await writeSimConfig(dir, h.sim.url);
    const out = join(dir, 'out');
    const server = await startServer(['--config', config, '--out', out], h.env());
    const input = 'prompt\nOne\nTwo\n';
    expect((await postFile(server, '?batch_id=api-forgotten', input)).status).toBe(202);
    await waitUntilFinished(server, 'api-forgotten');
    expect((await runCli(['forget', 'api-forgotten'], h.env())).code).toBe(0);
    const before = await readFile(join(out, 'api-forgotten', 'input.csv'), 'utf8');

    const again = await postFile(server, '?batch_id=api-forgotten', 'prompt\nThree\n');
    expect(again.status).toBe(409);
    expect(again.body.error).toMatchObject({ code: 'output_folder_taken', message: expect.stringContaining('choose another batch_id') });
    expect(await readFile(join(out, 'api-forgotten', 'input.csv'), 'utf8')).toBe(before);
    expect(await readJsonLines<RowResult>(join(out, 'api-forgotten', 'results.jsonl'))).toHaveLength(2);
  });

  it("tells an API client whose batch Redis lost to post the file again under another batch_id, and does not log that a restart retries it (QA: it was told --batch-id and --out, and the log said 'Restart the server to try again')", async () => {
    const dir = await tempDir('api-damaged');
    const config = await writeSimConfig(dir, h.sim.url, { concurrency: 2 });
    const out = join(dir, 'out');
    h.sim.setOptions({ latency_ms: 300 });
    try {
      const server = await startServer(['--config', config, '--out', out], h.env());
      expect((await postFile(server, '?batch_id=api-damaged', `prompt\n${Array.from({ length: 40 }, (_, i) => `Question ${i + 1}`).join('\n')}\n`)).status).toBe(202);
      await waitFor(async () => (await getJson<BatchView>(`${server.url}/v1/batches/api-damaged`)).body.rows.finished >= 2, 30_000);
      // What a Redis restarted without persistence, or an evicting maxmemory policy, does to the batch's keys.
      const keys = await h.redis.keys(`${h.prefix}:batch:{api-damaged}*`);
      expect(keys.length).toBeGreaterThan(0);
      await h.redis.del(...keys);
      await waitForOutput(() => server.output().stdout, '[api-damaged] Stopped: batch api-damaged:', 30_000);
      expect(server.output().stdout).not.toContain('Restart the server to try again');
      const answer = await getJson<ErrorBody>(`${server.url}/v1/batches/api-damaged`);
      expect(answer.status).toBe(409);
      expect(answer.body.error.code).toBe('batch_damaged');
      expect(answer.body.error.message).toContain('post the file again as a new batch, under another batch_id');
      expect(answer.body.error.message).not.toContain('--batch-id');
    } finally {
      h.sim.setOptions({ latency_ms: 2 });
    }
  });

  it('a cancel the server stopped in the middle of is finished when it starts again (QA: the batch stayed running for good)', async () => {
    const dir = await tempDir('api-cancel-stop');
    const config = await writeSimConfig(dir, h.sim.url, { concurrency: 4 });
    const out = join(dir, 'out');
    // Slow answers: the cancel waits for the rows in hand, and the server is stopped meanwhile.
    h.sim.setOptions({ latency_ms: 1500 });
    try {
      const first = await startServer(['--config', config, '--out', out], h.env());
      expect((await postFile(first, '?batch_id=api-cancel-stop', `prompt\n${Array.from({ length: 60 }, (_, i) => `Question ${i + 1}`).join('\n')}\n`)).status).toBe(202);
      await waitFor(async () => (await getJson<BatchView>(`${first.url}/v1/batches/api-cancel-stop`)).body.rows.finished >= 4, 30_000);
      expect((await getJson<BatchView>(`${first.url}/v1/batches/api-cancel-stop/cancel`, { method: 'POST' })).status).toBe(202);
      first.kill('SIGTERM');
      await first.done;

      const second = await startServer(['--config', config, '--out', out], h.env());
      await waitForOutput(() => second.output().stdout, '[api-cancel-stop] Finishing its cancel, which the server stopped in the middle of.', 20_000);
      const ended = await waitUntilFinished(second, 'api-cancel-stop');
      expect(ended).toMatchObject({ status: 'cancelled' });
      expect(ended.rows.finished).toBeLessThan(60);
      const results = await readJsonLines<RowResult>(join(out, 'api-cancel-stop', 'results.jsonl'));
      expect(results.length).toBe(ended.rows.finished);
      // Finished by the next server, the cancel is still the report's word for it.
      expect((await getJson<Report>(`${second.url}/v1/batches/api-cancel-stop/report`)).body.cancelled).toBe(true);
      expect(await h.redis.sismember(`${h.prefix}:api:open`, 'api-cancel-stop')).toBe(0);
      expect(await h.redis.sismember(`${h.prefix}:api:cancelling`, 'api-cancel-stop')).toBe(0);
    } finally {
      h.sim.setOptions({ latency_ms: 2 });
    }
  });

  it('refuses a batch no model of which it or any worker on record has the key for, instead of failing every row', async () => {
    const dir = await tempDir('api-no-key');
    const config = await writeSimConfig(dir, h.sim.url, { providers: { sim: { base_url: h.sim.url, api_key_env: 'SY_TEST_API_NO_SUCH_KEY' } } });
    const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env());
    const refused = await postFile(server, '?batch_id=no-key', 'prompt\nhi\n');
    expect(refused.status, JSON.stringify(refused.body)).toBe(400);
    expect(refused.body.error?.message).toContain('$SY_TEST_API_NO_SUCH_KEY is not set where this server runs, and no worker on this Redis has it: every row would fail with missing_api_key.');
    expect((await getJson(`${server.url}/v1/batches/no-key`)).status).toBe(404);
  });

  it('refuses a judge whose key neither it nor any worker on record has, as run does (QA: every answer paid for unscored, status completed)', async () => {
    const dir = await tempDir('api-judge-no-key');
    const config = await writeSimConfig(dir, h.sim.url, {
      providers: { sim: { base_url: h.sim.url }, keyed: { base_url: h.sim.url, api_key_env: 'SY_TEST_API_NO_SUCH_KEY' } },
      models: { fast: { provider: 'sim' }, critic: { provider: 'keyed' } },
      default_model: 'fast',
    });
    const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env({ LOG_LEVEL: 'info' }));
    const refused = await postFile(server, '?batch_id=judge-no-key&judge=critic', 'prompt\nhi\n');
    expect(refused.status, JSON.stringify(refused.body)).toBe(400);
    expect(refused.body.error?.message).toBe(
      "$SY_TEST_API_NO_SUCH_KEY is not set in the server's environment (or a worker's on its Redis), and the judge (critic) needs it: no answer could be scored, and the answers would be paid for unscored. Set it there and restart it, or post the batch with another judge (judge=<model>).",
    );
    expect((await postFile(server, '?batch_id=judge-no-key', 'prompt\nhi\n')).status).toBe(202);
    // LOG_LEVEL=info: the batch's file read is "queued", not "ended, exit_code 0" as it starts (QA soak).
    await waitForOutput(() => server.output().stderr, 'batch judge-no-key queued', 10_000);
    expect(server.output().stderr).not.toContain('batch judge-no-key ended');
  });

  it("says a `run --detach` batch's outputs wait for `switchyard collect`, not for its end (QA: they never came)", async () => {
    const dir = await tempDir('api-detached');
    const config = await writeSimConfig(dir, h.sim.url);
    const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env());
    const input = await writePromptsCsv(dir, 3);
    expect((await runCli(['run', input, '--config', config, '--out', join(dir, 'cli-out'), '--batch-id', 'cli-detached', '--detach'], h.env())).code).toBe(0);
    const results = await getJson<ErrorBody>(`${server.url}/v1/batches/cli-detached/results`);
    expect(results.status).toBe(409);
    expect(results.body.error).toMatchObject({ code: 'batch_not_finished', message: expect.stringContaining('no process collects it (it was started with run --detach): `switchyard collect cli-detached` writes its outputs once its rows are done.') });
  });

  it('with SWITCHYARD_API_TOKEN set, asks every request but /healthz for it', async () => {
    const dir = await tempDir('api-token');
    const config = await writeSimConfig(dir, h.sim.url);
    const server = await startServer(['--config', config, '--out', join(dir, 'out'), '--no-worker'], h.env({ SWITCHYARD_API_TOKEN: 's3cret' }));
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${server.url}/healthz`, { method: 'HEAD' })).status).toBe(200); // a load balancer's check
    const without = await getJson<ErrorBody>(`${server.url}/v1/batches`);
    expect(without.status).toBe(401);
    expect(without.body.error.message).toContain('Authorization: Bearer');
    expect((await fetch(`${server.url}/v1/batches`)).headers.get('www-authenticate')).toBe('Bearer realm="switchyard"');
    expect((await getJson(`${server.url}/v1/batches`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    expect((await getJson(`${server.url}/v1/batches`, { headers: { authorization: 'Bearer s3cret' } })).status).toBe(200);
    expect(server.output().stdout).toContain('No workers here (--no-worker)');
    // A client that sends its whole upload before reading the answer (Python's urllib) hears the 401, not a broken pipe (QA).
    const refusedUpload = await sendWholeThenRead(server.url, '/v1/batches?format=csv', Buffer.alloc(24 * 1024 * 1024, 'a'));
    expect(refusedUpload).toMatch(/^HTTP\/1\.1 401 [^]*"code": "unauthorized"/);

    // The rows are any worker's: a `switchyard worker` on the same Redis runs them, the server writes the outputs.
    // Until one connects, the batch's view says none is (QA: a client saw it "running" with nothing to run it).
    const submitted = await postFile(server, '?batch_id=api-remote', 'prompt\nfirst\nsecond\n', 'text/csv', { authorization: 'Bearer s3cret' });
    expect(submitted.status).toBe(202);
    expect(submitted.body.workers).toBe(0);
    const worker = spawnCli(['worker', '--concurrency', '8'], h.env());
    try {
      expect(await waitUntilFinished(server, 'api-remote', { authorization: 'Bearer s3cret' })).toMatchObject({ status: 'completed', rows: { succeeded: 2 }, workers: null });
    } finally {
      worker.kill('SIGTERM');
      await worker.done;
    }
  });

  it('answers 503 saying why while Redis is away (at once) or hangs (after 10 s), and serves again once it is back', async () => {
    const dir = await tempDir('api-redis');
    const config = await writeSimConfig(dir, h.sim.url);
    const own = await startRedisServer({ dir: join(dir, 'redis'), persist: false });
    let redisServer: RedisServerHandle | null = own;
    try {
      const server = await startServer(['--config', config, '--out', join(dir, 'out')], h.env({ REDIS_URL: own.url }));
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
      await own.stop();
      redisServer = null;
      // Once the server has seen it go (a request racing the disconnect waits out ioredis' retries instead).
      await waitFor(async () => (await fetch(`${server.url}/healthz`)).status === 503, 10_000);
      const started = Date.now();
      const awayResponse = await fetch(`${server.url}/v1/batches`);
      const away = { status: awayResponse.status, body: (await awayResponse.json()) as ErrorBody };
      expect(Date.now() - started).toBeLessThan(2000);
      expect(away.status).toBe(503);
      expect(awayResponse.headers.get('retry-after')).toBe('5');
      expect(away.body.error).toMatchObject({ code: 'redis_unavailable', message: expect.stringContaining('goes on by itself once it is back') });

      redisServer = await startRedisServer({ dir: join(dir, 'redis'), persist: false, port: own.port });
      await waitFor(async () => (await fetch(`${server.url}/healthz`)).status === 200, 20_000);
      expect((await getJson(`${server.url}/v1/batches`)).status).toBe(200);

      // A Redis that answers nothing with its connections still open (here: stopped with SIGSTOP), as
      // one that went away just as a request came looks until the client notices: a read is answered
      // 503 after 10 s, not left hanging for the client's retries.
      const frozen = redisServer.pid;
      process.kill(frozen, 'SIGSTOP');
      try {
        const slow = Date.now();
        const stuckResponse = await fetch(`${server.url}/v1/batches/anything`);
        const stuck = { status: stuckResponse.status, body: (await stuckResponse.json()) as ErrorBody };
        expect(stuck.status).toBe(503);
        expect(stuck.body.error.message).toContain('did not answer within 10 s');
        expect(stuckResponse.headers.get('retry-after')).toBe('5'); // as every redis_unavailable (docs/api.md)
        expect(Date.now() - slow).toBeLessThan(12_000);
        // A health check sees it too, within its PING's 2 s, though the connections look fine.
        const health = await getJson<{ ok: boolean; reason: string }>(`${server.url}/healthz`);
        expect(health.status).toBe(503);
        expect(health.body).toMatchObject({ ok: false, reason: expect.stringContaining('did not answer a PING within 2000 ms') });
        // A POST or a cancel is refused within that PING, with nothing done: carried out after the client gave up, it would surprise it (QA).
        const posting = Date.now();
        const post = await postFile(server, '?batch_id=frozen-post', 'prompt\nhello\n');
        const cancel = await getJson<ErrorBody>(`${server.url}/v1/batches/frozen-post/cancel`, { method: 'POST' });
        expect(Date.now() - posting).toBeLessThan(8000);
        expect([post.status, cancel.status]).toEqual([503, 503]);
        expect(post.body.error?.message).toMatch(/did not answer a PING within 2000 ms .*: nothing was done; send the request again once it answers$/);
      } finally {
        process.kill(frozen, 'SIGCONT');
      }
      expect((await getJson(`${server.url}/v1/batches/anything`)).status).toBe(404);
      expect((await getJson(`${server.url}/v1/batches/frozen-post`)).status).toBe(404); // the refused POST made no batch
    } finally {
      await redisServer?.stop();
    }
  });

  it("with a token, tells /healthz callers without it that Redis is away, not where it is (security QA: its host and port)", async () => {
    const dir = await tempDir('api-health-token');
    const own = await startRedisServer({ dir: join(dir, 'redis'), persist: false });
    try {
      const server = await startServer(['--config', await writeSimConfig(dir, h.sim.url), '--out', join(dir, 'out'), '--no-worker'], h.env({ REDIS_URL: own.url, SWITCHYARD_API_TOKEN: 's3cret' }));
      await own.stop();
      await waitFor(async () => (await fetch(`${server.url}/healthz`)).status === 503, 10_000);
      const anyone = await getJson<{ ok: boolean; reason: string }>(`${server.url}/healthz`);
      expect(anyone).toMatchObject({ status: 503, body: { ok: false, reason: 'Redis is not answering' } });
      const operator = await getJson<{ ok: boolean; reason: string }>(`${server.url}/healthz`, { headers: { authorization: 'Bearer s3cret' } });
      expect(operator.body.reason).toContain(`:${own.port} is not answering`);
    } finally {
      await own.stop();
    }
  });

  it('starts beyond this machine without a token only with --no-auth, and says so', async () => {
    const out = join(await tempDir('api-no-auth'), 'out');
    const child = spawnCli(['serve', '--port', '0', '--host', '0.0.0.0', '--no-auth', '--out', out], { ...h.env(), SWITCHYARD_API_TOKEN: '' });
    servers.track(Object.assign(child, { url: '' }));
    await waitForOutput(() => child.output().stdout, 'No API token (--no-auth)', 20_000);
    expect(child.output().stdout).toContain('No API token (--no-auth): anyone who reaches the server can run batches, spending money, and read their files.');
    const url = /on this machine (http:\/\/\S+) /.exec(child.output().stdout)![1]!;
    expect((await fetch(`${url}/v1/batches`)).status).toBe(200);
  });

  it('refuses --no-worker on the built-in models, which only the server itself can call', async () => {
    const refused = await spawnCli(['serve', '--port', '0', '--no-worker'], h.env()).done;
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('--no-worker needs --config');
    // An --out it cannot write to stops it at the start, not every batch later with a 500 (QA).
    const file = join(await tempDir('api-out-file'), 'out');
    await writeFile(file, 'not a folder\n');
    const blocked = await spawnCli(['serve', '--port', '0', '--out', file], h.env()).done;
    expect(blocked.code).toBe(2);
    expect(blocked.stderr).toContain(`cannot write the outputs to ${file}: a file of that name is in the way [EEXIST]. Give another folder with --out.`);
  });
});
