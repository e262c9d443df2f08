import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { UsageError } from '../../src/errors.ts';
import { readJsonlRows } from '../../src/input/jsonl-reader.ts';
import { readRows } from '../../src/input/read-rows.ts';
import type { InputRow, ReadPosition } from '../../src/input/row.ts';
import { MAX_ROW_KEYS } from '../../src/input/row-keys.ts';
import { unsentRequestFieldsText } from '../../src/batch/run-messages.ts';
import { collect, fixture, rules, useTempFiles } from '../helpers/reader-fixtures.ts';

const EXPECTED =
  'expected {"prompt": "..."} or {"messages": [{"role", "content"}, ...]}, ' +
  'or an OpenAI Batch request line {"custom_id", "method", "url", "body"}';

const temp = useTempFiles('jsonl');
const file = temp.file;

describe('readJsonlRows on nasty.jsonl (BOM, CRLF, blank lines, both shapes, bad lines)', () => {
  it('reads every line with row = line number', async () => {
    const items = await collect(readJsonlRows(fixture('nasty.jsonl'), rules));
    expect(items).toEqual([
      {
        kind: 'row',
        value: {
          row: 1,
          line: 1,
          id: '1',
          messages: [{ role: 'user', content: 'Hello' }],
          model: 'gpt-a',
          temperature: 0.2,
          metadata: { category: 'greet' },
        },
      },
      {
        kind: 'row',
        value: {
          row: 3,
          line: 3,
          id: 'req-1',
          custom_id: 'req-1',
          messages: [
            { role: 'system', content: 'Be terse.' },
            { role: 'user', content: '你好 🌍' },
          ],
          model: 'gpt-b',
          max_tokens: 50,
          metadata: {},
          params: { top_p: 0.9 }, // sent with the call
        },
      },
      {
        kind: 'error',
        value: {
          row: 4,
          line: 4,
          code: 'bad_json',
          message: 'invalid JSON: Expected double-quoted property name at column 19', // the line is the file's, not JSON.parse's "line 1"
        },
      },
      {
        kind: 'error',
        value: { row: 5, line: 5, code: 'missing_prompt', message: 'no "prompt" or "messages" field; the line\'s fields are text: if "text" holds the prompt, name it with --prompt-column text (prompt_column=text in the HTTP API)' },
      },
      {
        kind: 'row',
        value: {
          row: 6,
          line: 6,
          id: 'm1',
          messages: [
            { role: 'system', content: 'sys' },
            { role: 'user', content: 'hi' },
          ],
          metadata: { k: 'v' },
        },
      },
      {
        kind: 'error',
        value: { row: 8, line: 8, id: 'both', code: 'bad_field', message: 'set either "prompt" or "messages", not both' },
      },
      {
        kind: 'error',
        value: { row: 9, line: 9, id: '9', code: 'bad_field', message: 'temperature must be a number from 0 to 2, got 3' },
      },
      {
        kind: 'error',
        value: {
          row: 10,
          line: 10,
          id: 'req-2',
          custom_id: 'req-2',
          code: 'unknown_model',
          message: 'unknown model "gpt-9"; known models: gpt-a, gpt-b',
        },
      },
      {
        kind: 'error',
        value: { row: 11, line: 11, code: 'bad_field', message: `a line must be a JSON object; ${EXPECTED}` },
      },
      {
        kind: 'row',
        value: {
          row: 12,
          line: 12,
          id: '12',
          messages: [{ role: 'user', content: 'last line, no newline' }],
          max_tokens: 7,
          metadata: {},
        },
      },
    ]);
  });
});

describe('OpenAI Batch request lines (openai-batch.jsonl)', () => {
  it('says what a line that does not parse most likely got wrong: commas between objects, an object over several lines', async () => {
    const path = await file('slips.jsonl', '{"prompt": "a"},\n{\n"prompt": "b"\n}\n');
    const messages = (await collect(readJsonlRows(path, rules))).map((item) => (item.kind === 'error' ? item.value.message : 'row'));
    expect(messages[0]).toMatch(/^invalid JSON: .*\(the line ends with a comma: JSONL has one object per line and nothing between them\)$/);
    expect(messages[1]).toMatch(/^invalid JSON: .*\(an object spread over several lines: JSONL needs each one on a single line, e\.g\. jq -c \. file\.json\)$/);
  });

  it('says the column only (the line is the file line) and names a trailing comma or a comment line', async () => {
    const lines = ['{"prompt": "a"}', '{"prompt": "b", "tags": ["x", "y",],}', '// the next ones are about maps', '# done', '{"prompt": "a, ]"', '{"prompt": "c",}'];
    const messages = (await collect(readJsonlRows(await file('comments.jsonl', lines.join('\n')), rules))).map((item) => (item.kind === 'error' ? item.value.message : 'row'));
    const trailing = '(a comma before a } or ]: JSON allows none after the last item; delete it)';
    const comment = '(a comment line: JSON has no comments; delete the line, or leave it blank)';
    expect(messages).toEqual([
      'row',
      expect.stringMatching(/^invalid JSON: Unexpected token '\]', .* is not valid JSON \(a comma before a \} or \]/), // V8 quotes the text around it
      `invalid JSON: Unexpected token '/', "// the nex"... is not valid JSON ${comment}`,
      `invalid JSON: Unexpected token '#', "# done" is not valid JSON ${comment}`,
      "invalid JSON: Expected ',' or '}' after property value at column 18", // a comma and ] inside a string are no trailing comma
      `invalid JSON: Expected double-quoted property name at column 16 ${trailing}`,
    ]);
  });

  it('converts chat requests, keeps extra body fields, rejects other endpoints', async () => {
    const items = await collect(readRows(fixture('openai-batch.jsonl'), rules));
    expect(items).toEqual([
      {
        kind: 'row',
        value: {
          row: 1,
          line: 1,
          id: 'task-0',
          custom_id: 'task-0',
          messages: [
            { role: 'system', content: 'You are a helpful assistant.' },
            { role: 'user', content: 'Hello world!' },
          ],
          model: 'gpt-a',
          max_tokens: 1000,
          metadata: {},
        },
      },
      {
        kind: 'row',
        value: {
          row: 2,
          line: 2,
          id: 'task-1',
          custom_id: 'task-1',
          messages: [{ role: 'user', content: 'Summarize: 東京は日本の首都です。' }],
          model: 'gpt-b',
          temperature: 0,
          metadata: {},
          params: { response_format: { type: 'json_object' } },
        },
      },
      {
        kind: 'error',
        value: {
          row: 3,
          line: 3,
          id: 'task-2',
          custom_id: 'task-2',
          code: 'bad_field',
          // Not a chat completion: what its body lacks for one goes unsaid.
          message: 'OpenAI Batch request line: url: only "/v1/chat/completions" requests are supported',
        },
      },
      {
        kind: 'row',
        value: {
          row: 4,
          line: 4,
          id: 'task-3',
          custom_id: 'task-3',
          messages: [{ role: 'user', content: 'Count to 3' }],
          model: 'gpt-a',
          max_tokens: 20, // max_completion_tokens wins over max_tokens
          metadata: {},
        },
      },
    ]);
  });

  it('names the bad message field by its path', async () => {
    const line = { custom_id: 'c', method: 'POST', url: '/v1/chat/completions', body: { model: 'gpt-a', messages: [{ role: 'bot', content: 'x' }] } };
    const path = await file('role.jsonl', `${JSON.stringify(line)}\n`);
    const [item] = await collect(readJsonlRows(path, rules));
    expect(item).toEqual({
      kind: 'error',
      value: {
        row: 1,
        line: 1,
        id: 'c',
        custom_id: 'c',
        code: 'bad_field',
        message: expect.stringMatching(/^OpenAI Batch request line: body\.messages\[0\]\.role: /),
      },
    });
  });
});

describe('body fields of a Batch request line', () => {
  it('sends those that shape a text answer and keeps the others, unsent, in metadata.body_extra', async () => {
    const body = { model: 'gpt-a', messages: [{ role: 'user', content: 'hi' }], top_p: 0.5, stop: ['\n'], seed: 7, response_format: { type: 'json_object' }, n: 2, tools: [], logprobs: true, stream: true };
    const path = await file('fields.jsonl', `${JSON.stringify({ custom_id: 'x', method: 'POST', url: '/v1/chat/completions', body })}\n`);
    const [item] = await collect(readJsonlRows(path, rules));
    expect(item).toMatchObject({
      kind: 'row',
      value: { params: { top_p: 0.5, stop: ['\n'], seed: 7, response_format: { type: 'json_object' } }, metadata: { body_extra: { n: 2, tools: [], logprobs: true, stream: true } } },
    });
  });
});

describe('request fields of a prompt line', () => {
  it('sends response_format, seed and the like beside its prompt, as a Batch line would, and keeps other keys (user among them) as metadata', async () => {
    const line = { id: 'j', prompt: 'Return JSON', response_format: { type: 'json_object' }, seed: 3, user: 'alice', topic: 'x' };
    const path = await file('prompt-params.jsonl', `${JSON.stringify(line)}\n`);
    const [item] = await collect(readJsonlRows(path, rules));
    expect(item).toEqual({
      kind: 'row',
      value: { row: 1, line: 1, id: 'j', messages: [{ role: 'user', content: 'Return JSON' }], params: { response_format: { type: 'json_object' }, seed: 3 }, metadata: { user: 'alice', topic: 'x' } },
    });
  });

  it('refuses a sent field of the wrong type as bad_field, naming it, what was given and what is expected (QA: "seed": "abc" and "response_format": "json" were sent, and a provider refuses each call)', async () => {
    const lines = [
      { id: 'rf', prompt: 'p', response_format: 'json' },
      { id: 'seed', prompt: 'p', seed: 'abc' },
      { id: 'schema', prompt: 'p', response_format: { type: 'json_schema' } },
      { id: 'stop', prompt: 'p', stop: [1, 2] },
      { id: 'top', prompt: 'p', top_p: 1.5 },
      { id: 'ok', prompt: 'p', response_format: { type: 'json_schema', json_schema: { name: 'x', schema: {} } }, seed: null, stop: 'END', top_p: 1, logit_bias: { '50256': -100 } },
      { id: 'text', prompt: 'p', max_tokens: '100', temperature: '0.5' },
    ];
    const batchLine = { custom_id: 'b', method: 'POST', url: '/v1/chat/completions', body: { model: 'gpt-a', messages: [{ role: 'user', content: 'hi' }], seed: 1.5 } };
    const path = await file('wrong-types.jsonl', [...lines, batchLine].map((line) => JSON.stringify(line)).join('\n'));
    const items = await collect(readJsonlRows(path, rules));
    expect(items.map((item) => (item.kind === 'row' ? `row ${item.value.id}` : `${item.value.line} ${item.value.code}: ${item.value.message}`))).toEqual([
      '1 bad_field: response_format must be an object with a "type": {"type": "json_object"}, or {"type": "json_schema", "json_schema": {"name", "schema"}}, got "json"',
      '2 bad_field: seed must be an integer, got "abc"',
      '3 bad_field: response_format must be an object with a "type": {"type": "json_object"}, or {"type": "json_schema", "json_schema": {"name", "schema"}}, got {"type":"json_schema"}',
      '4 bad_field: stop must be a string or a list of strings, got [1,2]',
      '5 bad_field: top_p must be a number from 0 to 1, got 1.5',
      'row ok',
      // Numeric text is read as the number, as a CSV cell's is, and the number is sent.
      'row text',
      '8 bad_field: seed must be an integer, got 1.5',
    ]);
    expect(items[6]).toMatchObject({ kind: 'row', value: { max_tokens: 100, temperature: 0.5 } });
  });

  it('refuses a seed or token limit past 2^53-1 as the line wrote it, not as JSON.parse rounds it, with the range taken (QA: the message showed another number than the one written)', async () => {
    const lines = [
      '{"id": "seed", "prompt": "p", "seed": 12345678901234567890}',
      '{"id": "neg", "prompt": "p", "seed": -9007199254740993}',
      // The metadata's seed rounds to the same number: the line's own is the one shown.
      '{"id": "meta", "prompt": "p", "metadata": {"seed": 12345678901234567890}, "seed": 12345678901234567891}',
      '{"id": "limit", "prompt": "p", "max_completion_tokens": 9007199254740993}',
      '{"id": "edge", "prompt": "p", "seed": 9007199254740991, "max_tokens": 9007199254740991}',
      '{"custom_id": "batch", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-a", "messages": [{"role": "user", "content": "hi"}], "seed": 1e20}}',
    ];
    const items = await collect(readJsonlRows(await file('big-numbers.jsonl', lines.join('\n')), rules));
    const range = 'must be an integer from -9007199254740991 to 9007199254740991 (2^53-1)';
    expect(items.map((item) => (item.kind === 'row' ? `row ${item.value.id}` : `${item.value.id} ${item.value.code}: ${item.value.message}`))).toEqual([
      `seed bad_field: seed ${range}, got 12345678901234567890, which is too large to be read exactly (it reads as 12345678901234567000)`,
      `neg bad_field: seed ${range}, got -9007199254740993, which is too large to be read exactly (it reads as -9007199254740992)`,
      `meta bad_field: seed ${range}, got 12345678901234567891, which is too large to be read exactly (it reads as 12345678901234567000)`,
      'limit bad_field: max_completion_tokens must be a positive integer up to 9007199254740991 (2^53-1), got 9007199254740993, which is too large to be read exactly (it reads as 9007199254740992)',
      'row edge',
      `batch bad_field: seed ${range}, got 1e20, which is too large to be read exactly (it reads as 100000000000000000000)`,
    ]);
  });

  it('names max_completion_tokens, not max_tokens, in the message of a line that wrote it wrong', async () => {
    const lines = [{ id: 'p', prompt: 'p', max_completion_tokens: -1, max_tokens: 5 }, { custom_id: 'b', method: 'POST', url: '/v1/chat/completions', body: { model: 'gpt-a', messages: [{ role: 'user', content: 'hi' }], max_completion_tokens: 'lots' } }, { id: 'q', prompt: 'p', max_completion_tokens: null, max_tokens: 0 }];
    const items = await collect(readJsonlRows(await file('limit-names.jsonl', lines.map((line) => JSON.stringify(line)).join('\n')), rules));
    expect(items.map((item) => item.kind === 'error' && item.value.message)).toEqual([
      'max_completion_tokens must be a positive integer, got -1',
      'max_completion_tokens must be a positive integer, got "lots"',
      'max_tokens must be a positive integer, got 0',
    ]);
  });

  it('takes max_completion_tokens as the token limit, and counts the OpenAI fields it does not send (kept as metadata) for the run to say', async () => {
    const lines = [{ id: 'y', prompt: 'p', max_completion_tokens: 12, max_tokens: 99, stream: true, n: 3 }, { prompt: 'q', stream: false }, { prompt: 'r', metadata: { n: 1 } }];
    const path = await file('prompt-unsent.jsonl', lines.map((line) => JSON.stringify(line)).join('\n'));
    const position = { bytesRead: 0, fileBytes: 0 } as ReadPosition;
    const items = await collect(readJsonlRows(path, rules, position));
    expect(items[0]).toMatchObject({ kind: 'row', value: { max_tokens: 12, metadata: { stream: true, n: 3 } } });
    expect(position.unsentRequestFields).toEqual({ stream: 2, n: 1 });
    expect(unsentRequestFieldsText(position.unsentRequestFields)).toBe(
      "Note: request fields on prompt lines not sent to the models: stream (2 lines), n (1 line). They change what an answer is (several, streamed, tool calls), so they are kept in each result's metadata instead.",
    );
  });
});

describe('message content given as parts', () => {
  it('joins text parts (as Batch files written by tools often give them) and names a part it cannot send', async () => {
    const request = (id: string, content: unknown) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body: { model: 'gpt-a', messages: [{ role: 'user', content }] } });
    const lines = [
      request('parts', [{ type: 'text', text: 'Describe this' }, { type: 'text', text: 'in one line.' }]),
      request('image', [{ type: 'text', text: 'Describe' }, { type: 'image_url', image_url: { url: 'https://x/y.png' } }]),
      JSON.stringify({ messages: [{ role: 'user', content: 5 }] }),
      JSON.stringify({ messages: [{ role: 'user', content: [] }] }),
    ];
    const items = await collect(readJsonlRows(await file('parts.jsonl', `${lines.join('\n')}\n`), rules));
    expect(items[0]).toMatchObject({ kind: 'row', value: { custom_id: 'parts', messages: [{ role: 'user', content: 'Describe this\nin one line.' }] } });
    expect(items.slice(1).map((item) => item.kind === 'error' && item.value.message)).toEqual([
      'OpenAI Batch request line: body.messages[0].content: only text content parts are supported, not "image_url"',
      // The field's own problem, without the reminder of a whole line's shape.
      'messages[0].content: expected text, or a list of {"type": "text", "text": "..."} parts',
      expect.stringMatching(/^messages\[0\]\.content: /),
    ]);
  });
});

describe('readJsonlRows details', () => {
  it('accepts .ndjson and .json, and handles lines longer than a read chunk with multi-byte text', async () => {
    const long = '長い🚀'.repeat(40_000); // ~440 KB per line: spans several stream chunks
    const content = [long, 'short', long].map((prompt) => JSON.stringify({ prompt })).join('\n');
    for (const name of ['long.ndjson', 'long.json']) {
      const items = await collect(readRows(await file(name, content), rules));
      expect(items.map((item) => item.kind === 'row' && item.value.messages[0]?.content)).toEqual([long, 'short', long]);
    }
  });

  it('refuses a line that is not UTF-8 but keeps an escaped \\ufffd written on purpose', async () => {
    const bad = Buffer.concat([
      Buffer.from('{"prompt": "caf'),
      Buffer.from([0xe9]),
      Buffer.from('"}\n{"prompt": "kept \\ufffd"}\n{"id": "q3", "prompt": "caf'),
      Buffer.from([0xe9]),
      Buffer.from('"}\n'),
    ]);
    const items = await collect(readJsonlRows(await file('latin1.jsonl', bad), rules));
    expect(items).toEqual([
      { kind: 'error', value: { row: 1, line: 1, code: 'bad_encoding', message: expect.stringMatching(/^line 1 is not UTF-8 text/) } },
      { kind: 'row', value: expect.objectContaining({ messages: [{ role: 'user', content: 'kept \ufffd' }] }) },
      // Its id kept, readable whole: errors.jsonl lines are matched to rows by it.
      { kind: 'error', value: { row: 3, line: 3, id: 'q3', code: 'bad_encoding', message: expect.stringMatching(/^line 3 is not UTF-8 text/) } },
    ]);
  });

  it('reads a line holding U+FFFD written as such (EF BF BD), and still refuses bad bytes on the lines around it (QA: refused as bad_encoding)', async () => {
    const bytes = Buffer.concat([
      Buffer.from('{"id": "k1", "prompt": "lone '),
      Buffer.from([0xff]),
      Buffer.from('"}\r\n{"id": "j2", "prompt": "literal \uFFFD here"}\r\n{"id": "k3", "prompt": "kept \uFFFD, cut '),
      Buffer.from([0xe2, 0x82]),
      Buffer.from('"}\n{"id": "\uFFFD4", "prompt": "ok"}\n'),
    ]);
    const items = await collect(readJsonlRows(await file('fffd.jsonl', bytes), rules));
    expect(items).toEqual([
      { kind: 'error', value: { row: 1, line: 1, id: 'k1', code: 'bad_encoding', message: 'line 1 is not UTF-8 text (some bytes cannot be decoded); save the file as UTF-8 and run it again' } },
      { kind: 'row', value: expect.objectContaining({ id: 'j2', line: 2, messages: [{ role: 'user', content: 'literal \uFFFD here' }] }) },
      { kind: 'error', value: { row: 3, line: 3, id: 'k3', code: 'bad_encoding', message: expect.stringMatching(/^line 3 is not UTF-8 text/) } },
      { kind: 'row', value: expect.objectContaining({ id: '\uFFFD4', line: 4 }) },
    ]);
  });

  it('reports a field of the wrong type as bad_field, in JSON words', async () => {
    const path = await file('types.jsonl', '{"prompt": 42}\n{"prompt": "p", "metadata": "x"}\n');
    const [prompt, metadata] = await collect(readJsonlRows(path, rules));
    expect(prompt?.value).toMatchObject({ code: 'bad_field', message: `prompt: expected a string, got a number; ${EXPECTED}` });
    // A field other than the prompt is wrong on its own: the reminder of a line's shape is beside the point.
    expect(metadata?.value).toMatchObject({ code: 'bad_field', message: 'metadata: expected an object (key: value fields), got a string' });
  });

  it('refuses an id JSON would round (above 2^53) and an id of another type, in words, and keeps a fractional one', async () => {
    const path = await file('ids.jsonl', '{"id": 12345678901234567891, "prompt": "p"}\n{"id": true, "prompt": "p"}\n{"id": 1.5, "prompt": "p"}\n{"id": 9007199254740991, "prompt": "p"}\n');
    expect((await collect(readJsonlRows(path, rules))).map((item) => (item.kind === 'row' ? item.value.id : `${item.value.id}: ${item.value.message}`))).toEqual([
      'undefined: id: is a number too large to be read exactly (above 2^53); write it as a string, in quotes',
      'undefined: id: must be a string or a number',
      '1.5',
      '9007199254740991',
    ]);
  });

  it('lists the fields of a line without a prompt, and names the --prompt-column of the longest text among them', async () => {
    const lines = [{ id: 'a', question: 'What is 2+2?', topic: 'math', model: 'gpt-a-long-name' }, { id: 'b', model: 'gpt-a', n: 3 }, {}].map((line) => JSON.stringify(line));
    const items = await collect(readJsonlRows(await file('no-prompt.jsonl', lines.join('\n')), rules));
    expect(items.map((item) => item.kind === 'error' && `${item.value.code}: ${item.value.message}`)).toEqual([
      'missing_prompt: no "prompt" or "messages" field; the line\'s fields are id, question, topic, model: if "question" holds the prompt, name it with --prompt-column question (prompt_column=question in the HTTP API)',
      `missing_prompt: no "prompt" or "messages" field; the line's fields are id, model, n; ${EXPECTED}`,
      `missing_prompt: the line is an empty object; ${EXPECTED}`,
    ]);
  });

  it('reports an empty prompt as missing_prompt', async () => {
    const path = await file('blank-prompt.jsonl', '{"id": "e", "prompt": "  "}\n');
    const [item] = await collect(readJsonlRows(path, rules));
    expect(item).toEqual({ kind: 'error', value: { row: 1, line: 1, id: 'e', code: 'missing_prompt', message: 'the prompt is empty' } });
  });

  it('reports messages whose user content is empty or blank as missing_prompt, as a blank prompt', async () => {
    const request = JSON.stringify({ custom_id: 'r', method: 'POST', url: '/v1/chat/completions', body: { model: 'gpt-a', messages: [{ role: 'user', content: ' ' }] } });
    const lines = [
      { id: 'a', messages: [{ role: 'user', content: '' }] },
      { id: 'b', messages: [{ role: 'system', content: 'Be terse.' }, { role: 'user', content: ' \n ' }] },
      { id: 'c', messages: [{ role: 'system', content: 'Answer as a poem.' }] },
      { id: 'd', messages: [{ role: 'user', content: '' }, { role: 'assistant', content: 'Hi' }, { role: 'user', content: 'Go on' }] },
    ].map((line) => JSON.stringify(line));
    const items = await collect(readJsonlRows(await file('blank-messages.jsonl', [...lines, request].join('\n')), rules));
    const empty = 'missing_prompt: the prompt is empty (no "user" message has any text)';
    expect(items.map((item) => (item.kind === 'row' ? `row ${item.value.id}` : `${item.value.code}: ${item.value.message}`))).toEqual([empty, empty, empty, 'row d', empty]);
  });
});

describe('UTF-16 JSONL (Windows PowerShell writes UTF-16LE with a byte order mark)', () => {
  it('reads it with either byte order, and refuses UTF-16 without a byte order mark', async () => {
    const text = '{"id": "a", "prompt": "Café 🌍"}\r\n\r\n{"id": "b", "prompt": "你好"}\r\n';
    const le = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]);
    const be = Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(text, 'utf16le').swap16()]);
    for (const [name, bytes] of [['le.jsonl', le], ['be.jsonl', be]] as const) {
      const items = await collect(readJsonlRows(await file(name, bytes), rules));
      expect(items.map((item) => item.kind === 'row' && `${item.value.id} ${item.value.line}: ${item.value.messages[0]?.content}`)).toEqual(['a 1: Café 🌍', 'b 3: 你好']);
    }
    const bare = await file('no-bom.jsonl', Buffer.from(text, 'utf16le').swap16());
    await expect(collect(readJsonlRows(bare, rules))).rejects.toThrow(
      new UsageError(`input file ${bare} looks like UTF-16 text without a byte order mark (every other byte is 0): save it as UTF-8 (in Excel: "CSV UTF-8") and give that file`),
    );
  });

  it('reads a U+FFFD written as such, and refuses a line with half of a surrogate pair (QA: every U+FFFD was refused)', async () => {
    const bytes = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"id": "a", "prompt": "kept \uFFFD"}\n{"id": "b", "prompt": "half ', 'utf16le'), Buffer.from([0x3d, 0xd8]), Buffer.from('"}\n', 'utf16le')]);
    const items = await collect(readJsonlRows(await file('fffd.jsonl', bytes), rules));
    expect(items).toEqual([
      { kind: 'row', value: expect.objectContaining({ id: 'a', messages: [{ role: 'user', content: 'kept \uFFFD' }] }) },
      { kind: 'error', value: expect.objectContaining({ line: 2, id: 'b', code: 'bad_encoding', message: expect.stringMatching(/^line 2 is not UTF-16 text .*; fix that line \(or export the file again\) and run it again$/) }) },
    ]);
  });
});

describe('two JSONL files joined into one', () => {
  it('reads a line that starts with the second file\'s byte order mark', async () => {
    const items = await collect(readJsonlRows(await file('joined.jsonl', '\uFEFF{"prompt": "one"}\n\uFEFF{"prompt": "two"}\n'), rules));
    expect(items.map((item) => item.kind === 'row' && item.value.messages[0]?.content)).toEqual(['one', 'two']);
  });
});

describe('an OpenAI Batch line whose custom_id is a number', () => {
  it('is an invalid row that keeps the id as text, so its batch_errors.jsonl line can be matched', async () => {
    const line = JSON.stringify({ custom_id: 123, method: 'POST', url: '/v1/chat/completions', body: { model: 'gpt-a', messages: [{ role: 'user', content: 'hi' }] } });
    const [item] = await collect(readJsonlRows(await file('numeric-id.jsonl', `${line}\n`), rules));
    expect(item).toMatchObject({ kind: 'error', value: { custom_id: '123', code: 'bad_field', message: 'OpenAI Batch request line: custom_id: expected a string, got a number' } });
  });

  it('says a GET line must be POST, in words', async () => {
    const line = JSON.stringify({ custom_id: 'g', method: 'GET', url: '/v1/chat/completions', body: { model: 'gpt-a', messages: [{ role: 'user', content: 'hi' }] } });
    const [item] = await collect(readJsonlRows(await file('get.jsonl', `${line}\n`), rules));
    expect(item).toMatchObject({ kind: 'error', value: { code: 'bad_field', message: 'OpenAI Batch request line: method: must be "POST": chat completion requests are posted' } });
  });
});

describe('a prompt line with keys an OpenAI Batch line uses (url, body, method, custom_id)', () => {
  it('is a prompt line: those keys go to metadata, as other extra keys do', async () => {
    const lines = [
      { id: 'u1', prompt: 'Summarise', url: 'https://example.com/a' },
      { id: 'u2', prompt: 'Summarise', method: 'scrape', body: 'the page text' },
      { id: 'u3', messages: [{ role: 'user', content: 'Hi' }], custom_id: 'crm-7' },
    ];
    const items = await collect(readJsonlRows(await file('prompt-with-batch-keys.jsonl', lines.map((line) => JSON.stringify(line)).join('\n')), rules));
    expect(items).toEqual([
      { kind: 'row', value: { row: 1, line: 1, id: 'u1', messages: [{ role: 'user', content: 'Summarise' }], metadata: { url: 'https://example.com/a' } } },
      { kind: 'row', value: { row: 2, line: 2, id: 'u2', messages: [{ role: 'user', content: 'Summarise' }], metadata: { method: 'scrape', body: 'the page text' } } },
      { kind: 'row', value: { row: 3, line: 3, id: 'u3', messages: [{ role: 'user', content: 'Hi' }], metadata: { custom_id: 'crm-7' } } },
    ]);
  });

  it('is a prompt line under --prompt-column too, and its errors carry its own id', async () => {
    const lines = [
      { id: 't1', text: 'Summarise', url: 'https://example.com/a' },
      { id: 't2', text: 'Summarise', custom_id: 'crm-8', temperature: 'hot' },
    ];
    const items = await collect(readJsonlRows(await file('text-with-batch-keys.jsonl', lines.map((line) => JSON.stringify(line)).join('\n')), { ...rules, promptColumn: 'text' }));
    expect(items[0]).toEqual({ kind: 'row', value: { row: 1, line: 1, id: 't1', messages: [{ role: 'user', content: 'Summarise' }], metadata: { url: 'https://example.com/a' } } });
    expect(items[1]).toMatchObject({ kind: 'error', value: { row: 2, id: 't2', code: 'bad_field' } });
    expect(items[1]?.value).not.toHaveProperty('custom_id');
  });
});

describe('bytes that are not UTF-8', () => {
  it('are a bad_encoding row whose advice, for a posted file, names the Content-Type charset (QA: it said to save the file as UTF-8 and run it again)', async () => {
    const path = await file('latin1.jsonl', Buffer.concat([Buffer.from('{"id":"a","prompt":"caf'), Buffer.from([0xe9]), Buffer.from('"}\n')]));
    const [overCli] = await collect(readJsonlRows(path, rules));
    const [overHttp] = await collect(readJsonlRows(path, { ...rules, overHttp: true }));
    expect(overCli).toMatchObject({ kind: 'error', value: { id: 'a', code: 'bad_encoding', message: 'line 1 is not UTF-8 text (some bytes cannot be decoded); save the file as UTF-8 and run it again' } });
    expect(overHttp).toMatchObject({
      kind: 'error',
      value: { id: 'a', code: 'bad_encoding', message: "line 1 is not UTF-8 text (some bytes cannot be decoded); name the file's charset in the Content-Type (application/jsonl; charset=windows-1252, say) and post it again, or send it as UTF-8" },
    });
  });
});

describe('half of a UTF-16 surrogate pair written as an escape', () => {
  it('is a bad_encoding row naming the field, not a request every provider refuses (QA: "\\ud800" in a prompt was sent as it was)', async () => {
    const lines = [
      String.raw`{"id":"a","prompt":"lone \ud800 here"}`,
      String.raw`{"id":"b","messages":[{"role":"user","content":"x"},{"role":"user","content":"low \udc00"}]}`,
      String.raw`{"custom_id":"c","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"\uDBFF!"}]}}`,
      String.raw`{"id":"d","prompt":"x","metadata":{"\ud800":1}}`,
      String.raw`{"id":"e","prompt":"a pair \ud83d\ude00 and an escaped backslash \\ud800"}`,
    ];
    const items = await collect(readJsonlRows(await file('surrogates.jsonl', lines.join('\n')), rules));
    expect(items.slice(0, 4)).toMatchObject([
      { kind: 'error', value: { row: 1, id: 'a', code: 'bad_encoding', message: expect.stringMatching(/^prompt holds half of a UTF-16 surrogate pair .*: providers refuse such a request \(400\)/) } },
      { kind: 'error', value: { row: 2, id: 'b', code: 'bad_encoding', message: expect.stringMatching(/^messages\[1\]\.content holds half/) } },
      { kind: 'error', value: { row: 3, custom_id: 'c', code: 'bad_encoding', message: expect.stringMatching(/^body\.messages\[0\]\.content holds half/) } },
      { kind: 'error', value: { row: 4, id: 'd', code: 'bad_encoding', message: expect.stringMatching(/^the key "\\ud800" in metadata holds half/) } },
    ]);
    expect(items[4]).toEqual({ kind: 'row', value: { row: 5, line: 5, id: 'e', messages: [{ role: 'user', content: 'a pair \u{1F600} and an escaped backslash \\ud800' }], metadata: {} } });
  });
});

describe('a line with bytes that are not UTF-8 and a custom_id key', () => {
  it('is a prompt line when it has the prompt column, its error named by its id (review: read as an OpenAI Batch line under --prompt-column)', async () => {
    const path = await file('latin1-text.jsonl', Buffer.concat([Buffer.from('{"id":"p2","custom_id":"c2","text":"caf'), Buffer.from([0xe9]), Buffer.from('"}\n')]));
    const [item] = await collect(readJsonlRows(path, { ...rules, promptColumn: 'text' }));
    expect(item).toMatchObject({ kind: 'error', value: { id: 'p2', code: 'bad_encoding' } });
    expect(item?.value).not.toHaveProperty('custom_id');
  });
});

describe('a key named __proto__', () => {
  it('is metadata like any other key, beside and inside "metadata" (QA: it silently disappeared)', async () => {
    const lines = ['{"prompt":"x","__proto__":{"polluted":1},"k":1}', '{"prompt":"y","metadata":{"__proto__":"m","n":2}}'];
    const items = await collect(readJsonlRows(await file('proto.jsonl', lines.join('\n')), rules));
    const metadata = items.map((item) => (item.kind === 'row' ? item.value.metadata : {}));
    expect(metadata.map((each) => JSON.stringify(each))).toEqual(['{"__proto__":{"polluted":1},"k":1}', '{"__proto__":"m","n":2}']);
    // Kept as a key: no object's prototype is swapped for the value.
    expect(metadata.map((each) => Object.getPrototypeOf(each))).toEqual([Object.prototype, Object.prototype]);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });
});

describe('a line nested thousands of levels deep', () => {
  const nested = (levels: number) => `{"id":"deep","prompt":"x","metadata":${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}}`;

  it('is a bad row with its line number, the lines around it read (QA: JSON.stringify ran out of stack and stopped the run)', async () => {
    const text = ['{"prompt":"before"}', nested(6000), '{"prompt":"after"}', nested(99)].join('\n');
    const items = await collect(readJsonlRows(await file('deep.jsonl', text), rules));
    expect(items.map((item) => item.kind)).toEqual(['row', 'error', 'row', 'row']);
    expect(items[1]).toEqual({
      kind: 'error',
      value: { row: 2, line: 2, id: 'deep', code: 'bad_field', message: 'the row nests objects or arrays more than 100 levels deep, which no prompt needs: flatten its fields (or leave the deep data out of the row)' },
    });
    expect(() => JSON.stringify(items[3])).not.toThrow();
  });
});

describe('a line of more keys than a row may have', () => {
  const keys = (count: number, from = 0) => Object.fromEntries(Array.from({ length: count }, (_, i) => [`k${from + i}`, i]));
  const refused = (count: number) =>
    `the row has ${count.toLocaleString('en-US')} keys (its fields and those of its metadata or body object), more than the 16,384 a row may have (a CSV header's limit too: each becomes a results.csv column): ` +
    'keep the fields you want beside the answers, and leave the rest out of the row, or nest them under one key, which is one column';

  it('is a bad row naming how many and the limit, refused before JSON.parse; the lines around it read (QA: 500,000 keys held serve for seconds)', async () => {
    expect(MAX_ROW_KEYS).toBe(16_384);
    const lines = [
      { prompt: 'before' },
      { prompt: 'many', metadata: keys(20_000) }, // the metadata object's keys
      { prompt: 'top', ...keys(MAX_ROW_KEYS) }, // top-level keys, which become metadata, with the prompt: one over
      { prompt: 'split', ...keys(10_000), metadata: keys(10_000, 10_000) }, // both together
      { prompt: 'at the limit', ...keys(MAX_ROW_KEYS - 2), metadata: { a: 1 } }, // prompt + 16,382 + a = 16,384
      { prompt: 'nested', metadata: { wide: keys(100_000) } }, // one key, one column
      { prompt: 'after' },
    ].map((line) => JSON.stringify(line));
    const path = await file('wide.jsonl', `${lines.join('\n')}\n`);
    const parse = vi.spyOn(JSON, 'parse');
    try {
      const items = await collect(readJsonlRows(path, rules));
      expect(items.map((item) => item.kind)).toEqual(['row', 'error', 'error', 'error', 'row', 'row', 'row']);
      expect(items.slice(1, 4).map((item) => item.value)).toEqual([
        { row: 2, line: 2, code: 'bad_field', message: refused(20_001) },
        { row: 3, line: 3, code: 'bad_field', message: refused(16_385) },
        { row: 4, line: 4, code: 'bad_field', message: refused(20_001) },
      ]);
      expect(items[4]).toMatchObject({ kind: 'row', value: { row: 5, id: '5' } });
      expect(Object.keys((items[4]!.value as InputRow).metadata)).toHaveLength(MAX_ROW_KEYS - 1);
      // The refused lines were never parsed: building an object of that many keys is the slow part.
      const parsedTexts = parse.mock.calls.map(([text]) => text);
      expect(parsedTexts).not.toContain(lines[1]);
      expect(parsedTexts).not.toContain(lines[2]);
      expect(parsedTexts).not.toContain(lines[3]);
    } finally {
      parse.mockRestore();
    }
  });

  it("counts an OpenAI Batch line's body fields as a prompt line's metadata (500,000 of them took 11 s of CPU)", async () => {
    const batchLine = (custom_id: string, count: number) => JSON.stringify({ custom_id, method: 'POST', url: '/v1/chat/completions', body: { model: 'gpt-a', messages: [{ role: 'user', content: 'hi' }], ...keys(count) } });
    const items = await collect(readJsonlRows(await file('wide-batch.jsonl', [batchLine('wide', MAX_ROW_KEYS), batchLine('fits', MAX_ROW_KEYS - 6)].join('\n')), rules));
    // custom_id, method, url, and the body's model, messages and keys: the messages' own keys are deeper, and not counted.
    // Named by its custom_id, for batch_errors.jsonl, though it is not parsed.
    expect(items[0]).toEqual({ kind: 'error', value: { row: 1, line: 1, id: 'wide', custom_id: 'wide', code: 'bad_field', message: refused(MAX_ROW_KEYS + 5) } });
    expect(items[1]).toMatchObject({ kind: 'row', value: { custom_id: 'fits' } });
  });

  it("names a prompt line's id when it is text, as JSON.parse would read it", async () => {
    const lines = [{ id: 'w\u00e9de', prompt: 'x', ...keys(MAX_ROW_KEYS) }, { prompt: 'x', ...keys(MAX_ROW_KEYS), id: 'last' }, { id: 7, prompt: 'x', ...keys(MAX_ROW_KEYS) }].map((line) => JSON.stringify(line).replace('\u00e9', '\\u00e9'));
    const items = await collect(readJsonlRows(await file('wide-ids.jsonl', lines.join('\n')), rules));
    expect(items.map((item) => item.kind === 'error' && item.value.id)).toEqual(['w\u00e9de', 'last', undefined]); // a number is not read
  });

  it('counts keys as JSON.parse reads them: escapes and strings holding colons, braces or quotes', async () => {
    const many = Object.keys(keys(MAX_ROW_KEYS + 1)).map((key) => `"${key}":"a:{[\\\"b"`).join(',');
    const lines = [
      `{"prompt":"x","metad\\u0061ta":{${many}}}`, // "metadata" written with an escape
      `{"prompt":"x:{}","text":"${'\\":{'.repeat(MAX_ROW_KEYS + 1)}"}`, // colons and braces inside a string, after escaped quotes
    ];
    const items = await collect(readJsonlRows(await file('escaped.jsonl', lines.join('\n')), rules));
    expect(items[0]).toMatchObject({ kind: 'error', value: { code: 'bad_field', message: refused(MAX_ROW_KEYS + 2) } });
    expect(items[1]).toMatchObject({ kind: 'row', value: { metadata: { text: '":{'.repeat(MAX_ROW_KEYS + 1) } } });
  });
});

describe('--prompt-column on JSONL', () => {
  it('takes the prompt from the field it names, and says so when a line lacks it or sets "prompt" too', async () => {
    const lines = [{ id: 'a', question: 'What is 2+2?', topic: 'math' }, { id: 'b', question: 'hi', prompt: 'also' }, { id: 'c', q: 'none' }, { id: 'd', question: 5 }].map((line) => JSON.stringify(line));
    const items = await collect(readJsonlRows(await file('question.jsonl', `${lines.join('\n')}\n`), { ...rules, promptColumn: 'question' }));
    expect(items[0]).toMatchObject({ kind: 'row', value: { id: 'a', messages: [{ role: 'user', content: 'What is 2+2?' }], metadata: { topic: 'math' } } });
    expect(items.slice(1).map((item) => item.kind === 'error' && `${item.value.code}: ${item.value.message}`)).toEqual([
      'bad_field: set either "question" (--prompt-column) or "prompt", not both',
      'missing_prompt: no "question" (--prompt-column), "prompt" or "messages" field; the line\'s fields are id, q: if "q" holds the prompt, name it with --prompt-column q (prompt_column=q in the HTTP API)',
      expect.stringMatching(/^bad_field: question: expected a string, got a number; expected \{"question": /),
    ]);
  });
});

describe('whole-file problems throw a UsageError', () => {
  it('refuses a file holding a JSON array, on one line or pretty-printed, before any row', async () => {
    const oneLine = await file('array.json', '[{"id": 1, "prompt": "hi"}]\n');
    const pretty = await file('pretty.jsonl', '\n[\n  {"id": 1, "prompt": "hi"},\n  {"id": 2, "prompt": "ho"}\n]\n');
    const refusal = (path: string, line: number) =>
      new UsageError(`input file ${path} is a JSON array (line ${line} starts with "["), not JSON Lines, which has one object per line; convert it, e.g. jq -c '.[]' in.json > in.jsonl, and run that file`);
    await expect(collect(readJsonlRows(oneLine, rules))).rejects.toThrow(refusal(oneLine, 1));
    const items: string[] = [];
    const reading = (async () => {
      for await (const item of readJsonlRows(pretty, rules)) items.push(item.kind);
    })();
    await expect(reading).rejects.toThrow(refusal(pretty, 2));
    expect(items).toEqual([]);
  });

  it('refuses a CSV file, told by its header line, before any row, saying how to send it over HTTP too (QA: a CSV posted as application/jsonl completed with 0 rows run)', async () => {
    const csv = await file('csv.jsonl', '\nid,prompt\na,"hello, world"\n');
    const oneColumn = await file('one-column.jsonl', 'prompt\nhello\n');
    const semicolons = await file('semicolons.jsonl', '"id";"Question"\na;hi\n');
    const said = (path: string, line: string, separator: string) => `input file ${path} is CSV, not JSON Lines: its first line, ${line}, is no JSON object but a header of columns separated by ${separator}`;
    await expect(collect(readJsonlRows(csv, rules))).rejects.toThrow(new UsageError(`${said(csv, 'id,prompt', 'commas')}; give it a .csv name and run that file`));
    await expect(collect(readJsonlRows(oneColumn, rules))).rejects.toThrow(new UsageError(`${said(oneColumn, 'prompt', 'commas')}; give it a .csv name and run that file`));
    await expect(collect(readJsonlRows(semicolons, { ...rules, promptColumn: 'Question', overHttp: true }))).rejects.toThrow(
      new UsageError(`${said(semicolons, '"id";"Question"', 'semicolons')}; send it as CSV, with Content-Type text/csv (or ?format=csv)`),
    );
    // A broken first line of a JSONL file is that line's error, as before.
    const broken = await file('broken-first.jsonl', '{"prompt": "hi",}\n// prompts, v2\nprompt: "x", id: 1\n{"prompt": "ok"}\n');
    expect((await collect(readJsonlRows(broken, rules))).map((item) => item.kind)).toEqual(['error', 'error', 'error', 'row']);
  });

  it('says to send a JSON array as application/json when it was posted as JSONL', async () => {
    const array = await file('posted-array.jsonl', '[{"prompt": "hi"}]\n');
    await expect(collect(readJsonlRows(array, { ...rules, overHttp: true }))).rejects.toThrow(
      new UsageError(`input file ${array} is a JSON array (line 1 starts with "["), not JSON Lines, which has one object per line; send it as JSON, with Content-Type application/json (or ?format=json)`),
    );
  });

  it('missing file', async () => {
    const path = join(temp.dir(), 'missing.jsonl');
    await expect(collect(readJsonlRows(path, rules))).rejects.toThrow(new UsageError(`input file not found: ${path}`));
  });

  it('empty file and a file of blank lines only', async () => {
    const empty = await file('empty.jsonl', '');
    await expect(collect(readRows(empty, rules))).rejects.toThrow(new UsageError(`input file ${empty} is empty: nothing to run`));
    const blank = await file('blank.jsonl', '\uFEFF\r\n\n   \n');
    await expect(collect(readRows(blank, rules))).rejects.toThrow(
      new UsageError(`input file has no records (only blank lines): ${blank}`),
    );
  });

  it('unsupported extension', () => {
    expect(() => readRows(join(temp.dir(), 'rows.yaml'), rules)).toThrow(UsageError);
  });
});

describe('OpenAI Batch lines that repeat a custom_id', () => {
  it('run the first and make each later one an invalid row naming the line it repeats', async () => {
    const request = (customId: string, content: string) =>
      JSON.stringify({ custom_id: customId, method: 'POST', url: '/v1/chat/completions', body: { model: 'gpt-a', messages: [{ role: 'user', content }] } });
    const path = await file('dup.jsonl', [request('a', 'one'), request('b', 'two'), request('a', 'three')].join('\n'));
    const items = await collect(readJsonlRows(path, rules));
    expect(items.map((item) => (item.kind === 'row' ? `row ${item.value.row}` : `${item.value.code} ${item.value.row}`))).toEqual(['row 1', 'row 2', 'duplicate_id 3']);
    expect(items[2]).toEqual({
      kind: 'error',
      value: { row: 3, line: 3, id: 'a', custom_id: 'a', code: 'duplicate_id', message: 'custom_id "a" is already used on line 1; OpenAI Batch input needs each custom_id once, as answers are matched to requests by it' },
    });
  });
});

describe('OpenAI Batch lines: a custom_id first used on an invalid line', () => {
  const line = (customId: unknown, model: string) => JSON.stringify({ custom_id: customId, method: 'POST', url: '/v1/chat/completions', body: { model, messages: [{ role: 'user', content: 'hi' }] } });

  it('is taken: a later valid line with it is a duplicate, so the id is in batch_errors.jsonl alone', async () => {
    const path = await file('dup-invalid.jsonl', [line('d', 'nope'), line('d', 'gpt-a'), line(7, 'gpt-a'), line('7', 'gpt-a')].join('\n'));
    const items = await collect(readJsonlRows(path, rules));
    expect(items.map((item) => `${item.kind === 'row' ? 'row' : item.value.code} ${item.value.custom_id}`)).toEqual(['unknown_model d', 'duplicate_id d', 'bad_field 7', 'duplicate_id 7']);
  });
});

describe("a message's name", () => {
  it('is sent as given, as OpenAI takes one', async () => {
    const path = await file('named.jsonl', JSON.stringify({ messages: [{ role: 'user', name: 'alice', content: 'hi' }] }));
    const [item] = await collect(readJsonlRows(path, rules));
    expect(item).toMatchObject({ kind: 'row', value: { messages: [{ role: 'user', name: 'alice', content: 'hi' }] } });
  });
});
