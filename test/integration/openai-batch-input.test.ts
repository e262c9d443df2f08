import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, spawnCli, waitFor } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

describe('OpenAI Batch API input, end to end', () => {
  const h = useSimulatorAndRedis('openai-batch', { models: { refuses: { fail_status: 400 } } });

  it('writes batch_output.jsonl and batch_errors.jsonl in the OpenAI batch output format, and errors.jsonl for bad lines', async () => {
    const dir = await tempDir('oaibatch');
    const config = await writeSimConfig(dir, h.sim.url, {}, ['fast', 'refuses']);
    const line = (id: string, model: string) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body: { model, messages: [{ role: 'user', content: `Say hi to ${id}` }], max_tokens: 50 } });
    const input = join(dir, 'batch.jsonl');
    await writeFile(input, [line('a', 'fast'), line('b', 'refuses'), '{not json', line('c', 'fast'), line('d', 'nope')].join('\n'));
    const out = join(dir, 'out');
    const run = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'oai'], h.env());
    expect(run.code).toBe(1);

    const ok = await readJsonLines<{ custom_id: string; response: { status_code: number; body: { choices: { message: { content: string } }[]; usage: { total_tokens: number } } }; error: null }>(join(out, 'batch_output.jsonl'));
    expect(ok.map((l) => l.custom_id)).toEqual(['a', 'c']);
    expect(ok[0]!.response.status_code).toBe(200);
    expect(ok[0]!.response.body.choices[0]!.message.content).toContain('Say hi to a');
    expect(ok[0]!.response.body.usage.total_tokens).toBeGreaterThan(0);
    expect(ok[0]!.error).toBeNull();

    // Every custom_id has its line in one of the two files: d's model is unknown, so it was never sent.
    const failed = await readJsonLines<{ custom_id: string; response: { status_code: number; request_id: string } | null; error: { code: string } | null }>(join(out, 'batch_errors.jsonl'));
    expect(failed.map((l) => [l.custom_id, l.response?.status_code ?? l.error?.code])).toEqual([['b', 400], ['d', 'unknown_model']]);
    // The provider's own id for the request it refused, as for one it answered (QA: a derived one stood in for it).
    expect(failed[0]!.response!.request_id).toMatch(/^req_sim_/);
    const results = await readJsonLines<{ custom_id: string; request_id?: string }>(join(out, 'results.jsonl'));
    expect(results.find((r) => r.custom_id === 'b')?.request_id).toBe(failed[0]!.response!.request_id);

    const errors = await readJsonLines<{ line: number; code: string }>(join(out, 'errors.jsonl'));
    expect(errors.map((e) => [e.line, e.code])).toEqual([[3, 'bad_json'], [5, 'unknown_model']]);
    expect(await readFile(join(out, 'results.jsonl'), 'utf8')).toContain('"custom_id":"c"');
  });

  it('a run stopped while the file is still being read writes batch_output.jsonl and counts the invalid lines read so far', async () => {
    const dir = await tempDir('oaibatch-stopped');
    // A small max_pending keeps most of the file unread while the first rows run.
    const config = await writeSimConfig(dir, h.sim.url, { queue: { max_pending: 40, enqueue_chunk: 20 } }, ['fast']);
    const line = (i: number) => JSON.stringify({ custom_id: `c${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'fast', messages: [{ role: 'user', content: `Say hi to ${i}` }] } });
    const input = join(dir, 'batch.jsonl');
    await writeFile(input, Array.from({ length: 3000 }, (_, i) => (i % 10 === 4 ? '{not json' : line(i))).join('\n'));
    const out = join(dir, 'out');
    const run = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'oai-stopped', '--concurrency', '4'], h.env());
    await waitFor(async () => (await h.redis.bitcount(`${h.prefix}:batch:{oai-stopped}:finished`)) >= 20, 20_000);
    run.kill('SIGINT');
    const ended = await run.done;
    expect(ended.code, ended.stdout + ended.stderr).toBe(130);
    const results = await readJsonLines<{ custom_id: string }>(join(out, 'results.jsonl'));
    const ok = await readJsonLines<{ custom_id: string }>(join(out, 'batch_output.jsonl'));
    expect(ok.map((l) => l.custom_id)).toEqual(results.map((r) => r.custom_id));
    const errors = await readJsonLines<{ code: string }>(join(out, 'errors.jsonl'));
    expect(errors.length).toBeGreaterThan(0);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as { totals: { invalid_rows: number } };
    expect(report.totals.invalid_rows).toBe(errors.length);
  });

  it('writes batch_errors.jsonl for a file of invalid request lines alone, and leaves prompt lines among Batch lines out of both files', async () => {
    const dir = await tempDir('oaibatch-invalid');
    const config = await writeSimConfig(dir, h.sim.url, {}, ['fast']);
    const line = (id: string, model: string) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body: { model, messages: [{ role: 'user', content: `Say hi to ${id}` }] } });
    const invalid = join(dir, 'invalid.jsonl');
    await writeFile(invalid, [line('x', 'gpt-4o'), line('y', 'gpt-4o')].join('\n'));
    const out = join(dir, 'out-invalid');
    await runCli(['run', invalid, '--config', config, '--out', out, '--batch-id', 'oai-invalid'], h.env());
    const failed = await readJsonLines<{ custom_id: string; error: { code: string } | null }>(join(out, 'batch_errors.jsonl'));
    expect(failed.map((l) => [l.custom_id, l.error?.code])).toEqual([['x', 'unknown_model'], ['y', 'unknown_model']]);
    expect(await readFile(join(out, 'batch_output.jsonl'), 'utf8')).toBe('');

    const mixed = join(dir, 'mixed.jsonl');
    await writeFile(mixed, [JSON.stringify({ id: 'a', prompt: 'plain one' }), line('a', 'fast'), JSON.stringify({ id: 'a', prompt: 'plain two' })].join('\n'));
    const mixedOut = join(dir, 'out-mixed');
    expect((await runCli(['run', mixed, '--config', config, '--out', mixedOut, '--batch-id', 'oai-mixed'], h.env())).code).toBe(0);
    const answered = await readJsonLines<{ custom_id: string }>(join(mixedOut, 'batch_output.jsonl'));
    expect(answered.map((l) => l.custom_id)).toEqual(['a']);
    expect(await readJsonLines(join(mixedOut, 'results.jsonl'))).toHaveLength(3);
  });
});
