import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeOpenAiBatchFiles } from '../../src/output/openai-batch-output.ts';
import type { RowResult } from '../../src/output/records.ts';

function result(overrides: Partial<RowResult>): RowResult {
  return {
    id: 'request-1',
    row: 1,
    status: 'succeeded',
    model: 'gpt-4o-mini',
    output: 'Hello.',
    usage: { input_tokens: 22, output_tokens: 2 },
    cost_usd: 0.0000045,
    latency_ms: 300,
    attempts: 1,
    metadata: {},
    task_type: 'simple',
    route_reason: 'rules: simple',
    models_tried: ['model-a'],
    final_model: 'model-a',
    fallback_reason: null,
    completed_at: '2026-11-02T10:00:00.000Z',
    ...overrides,
  };
}

async function readLines(path: string): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(path, 'utf8');
  return text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('writeOpenAiBatchFiles', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'switchyard-oai-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes succeeded rows to batch_output.jsonl and failed rows to batch_errors.jsonl', async () => {
    const results = [
      result({ row: 1, custom_id: 'request-1', request_id: 'req_abc', finish_reason: 'stop' }),
      result({
        row: 2,
        id: 'request-2',
        custom_id: 'request-2',
        status: 'failed',
        output: null,
        error: { code: 'bad_request', message: 'max_tokens is too large', http_status: 400 },
      }),
      result({
        row: 3,
        id: 'request-3',
        custom_id: 'request-3',
        status: 'failed',
        output: null,
        error: { code: 'timeout', message: 'no answer after 30 s', http_status: null },
      }),
      result({ row: 4, id: 'request-4', custom_id: 'request-4', output: '第二', finish_reason: 'length' }),
    ];
    const jsonl = join(dir, 'results.jsonl');
    await writeFile(jsonl, results.map((r) => JSON.stringify(r)).join('\n') + '\n');

    const files = await writeOpenAiBatchFiles(jsonl, join(dir, 'errors.jsonl'), dir, 'batch-1');
    expect(files).toEqual({
      outputPath: join(dir, 'batch_output.jsonl'),
      errorsPath: join(dir, 'batch_errors.jsonl'),
      succeeded: 2,
      failed: 2,
    });

    const output = await readLines(files.outputPath);
    expect(output.map((line) => line.custom_id)).toEqual(['request-1', 'request-4']);
    expect(output[0]).toEqual({
      id: expect.stringMatching(/^batch_req_[0-9a-f]{32}$/),
      custom_id: 'request-1',
      response: {
        status_code: 200,
        request_id: 'req_abc',
        body: {
          id: expect.stringMatching(/^chatcmpl-/),
          object: 'chat.completion',
          created: Date.parse('2026-11-02T10:00:00.000Z') / 1000,
          model: 'gpt-4o-mini',
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: 'Hello.', refusal: null },
              logprobs: null,
              finish_reason: 'stop',
            },
          ],
          usage: { prompt_tokens: 22, completion_tokens: 2, total_tokens: 24 },
          system_fingerprint: null,
        },
      },
      error: null,
    });
    const second = output[1] as { response: { request_id: string; body: { choices: Array<{ finish_reason: string; message: { content: string } }> } } };
    expect(second.response.request_id).toMatch(/^req_[0-9a-f]{32}$/);
    expect(second.response.body.choices[0]!.finish_reason).toBe('length');
    expect(second.response.body.choices[0]!.message.content).toBe('第二');

    const errors = await readLines(files.errorsPath);
    expect(errors[0]).toEqual({
      id: expect.stringMatching(/^batch_req_/),
      custom_id: 'request-2',
      response: {
        status_code: 400,
        request_id: expect.stringMatching(/^req_/),
        body: { error: { message: 'max_tokens is too large', type: 'invalid_request_error', param: null, code: 'bad_request' } },
      },
      error: null,
    });
    expect(errors[1]).toEqual({
      id: expect.stringMatching(/^batch_req_/),
      custom_id: 'request-3',
      response: null,
      error: { code: 'timeout', message: 'no answer after 30 s' },
    });

    // ids are unique and deterministic: a re-run writes the same files
    const ids = [...output, ...errors].map((line) => line.id);
    expect(new Set(ids).size).toBe(4);
    const before = await readFile(files.outputPath, 'utf8');
    await writeOpenAiBatchFiles(jsonl, join(dir, 'errors.jsonl'), dir, 'batch-1');
    expect(await readFile(files.outputPath, 'utf8')).toBe(before);
  });

  it('puts invalid request lines with a custom_id in batch_errors.jsonl, in input order', async () => {
    const jsonl = join(dir, 'results.jsonl');
    await writeFile(jsonl, [result({ row: 2, custom_id: 'b' }), result({ row: 5, custom_id: 'e', status: 'failed', output: null, error: { code: 'timeout', message: 'late', http_status: null } })].map((r) => JSON.stringify(r)).join('\n') + '\n');
    const invalid = [
      { row: 1, line: 1, id: 'a', custom_id: 'a', code: 'unknown_model', message: 'unknown model "gpt-9"; known models: fast' },
      { row: 3, line: 3, code: 'bad_json', message: 'invalid JSON: Unexpected token' }, // no custom_id to answer under
      { row: 4, line: 4, id: 'b', custom_id: 'b', code: 'duplicate_id', message: 'custom_id "b" is already used on line 2' }, // b has its answer
      { row: 6, line: 6, id: 'f', custom_id: 'f', code: 'bad_field', message: 'OpenAI Batch request line: url: only "/v1/chat/completions" requests are supported' },
    ];
    const errorsJsonl = join(dir, 'errors.jsonl');
    await writeFile(errorsJsonl, invalid.map((e) => JSON.stringify(e)).join('\n') + '\n');
    const files = await writeOpenAiBatchFiles(jsonl, errorsJsonl, dir, 'batch-4');
    expect(files).toMatchObject({ succeeded: 1, failed: 3 });
    expect((await readLines(files.outputPath)).map((line) => line.custom_id)).toEqual(['b']);
    const errors = await readLines(files.errorsPath);
    expect(errors.map((line) => line.custom_id)).toEqual(['a', 'e', 'f']);
    expect(errors[0]).toEqual({ id: expect.stringMatching(/^batch_req_[0-9a-f]{32}$/), custom_id: 'a', response: null, error: { code: 'unknown_model', message: 'line 1: unknown model "gpt-9"; known models: fast' } });
  });

  it("gives a refusal as the provider did: content null, the refusal's words", async () => {
    const jsonl = join(dir, 'results.jsonl');
    await writeFile(jsonl, JSON.stringify(result({ custom_id: 'r', output: '', refusal: "I can't help with that." })) + '\n');
    const files = await writeOpenAiBatchFiles(jsonl, join(dir, 'errors.jsonl'), dir, 'batch-r');
    const [line] = (await readLines(files.outputPath)) as Array<{ response: { body: { choices: Array<{ message: unknown }> } } }>;
    expect(line!.response.body.choices[0]!.message).toEqual({ role: 'assistant', content: null, refusal: "I can't help with that." });
  });

  it('writes both files, empty, for an empty batch', async () => {
    const jsonl = join(dir, 'results.jsonl');
    await writeFile(jsonl, '');
    const files = await writeOpenAiBatchFiles(jsonl, join(dir, 'errors.jsonl'), dir, 'batch-2');
    expect(await readFile(files.outputPath, 'utf8')).toBe('');
    expect(await readFile(files.errorsPath, 'utf8')).toBe('');
  });

  it('rejects when the output directory does not exist', async () => {
    const jsonl = join(dir, 'results.jsonl');
    await writeFile(jsonl, JSON.stringify(result({})) + '\n');
    await expect(writeOpenAiBatchFiles(jsonl, join(dir, 'errors.jsonl'), join(dir, 'missing'), 'batch-3')).rejects.toThrow(/ENOENT/);
  });
});
