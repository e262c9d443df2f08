import { describe, expect, it } from 'vitest';
import { splitDeltas, splitJsonDeltas, streamPayload } from '../../src/sim/sse.ts';

function events(payload: string): string[] {
  expect(payload.endsWith('\n\n')).toBe(true);
  return payload
    .trimEnd()
    .split('\n\n')
    .map((event) => {
      expect(event.startsWith('data: ')).toBe(true);
      return event.slice('data: '.length);
    });
}

describe('simulator SSE stream', () => {
  it('splits content into word deltas that join back exactly', () => {
    for (const text of ['one', 'Hello, big world.', '  leading and trailing  ', '你好 世界\nnew line']) {
      const parts = splitDeltas(text);
      expect(parts.join('')).toBe(text);
    }
    expect(splitDeltas('a b c')).toEqual(['a', ' b', ' c']);
  });

  it('sends a role chunk, content deltas, a finish chunk and [DONE]', () => {
    const data = events(streamPayload({ id: 'chatcmpl-1', created: 1, model: 'm', content: 'Hi "there" you', finishReason: 'stop' }));
    expect(data.at(-1)).toBe('[DONE]');
    const chunks = data.slice(0, -1).map((line) => JSON.parse(line));
    for (const chunk of chunks) expect(chunk).toMatchObject({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'm' });
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
    expect(chunks.map((chunk) => chunk.choices[0].delta.content ?? '').join('')).toBe('Hi "there" you');
    expect(chunks.at(-1).choices[0]).toEqual({ index: 0, delta: {}, finish_reason: 'stop' });
    expect(chunks.every((chunk) => !('usage' in chunk))).toBe(true);
  });

  it('adds a usage chunk with no choices when usage is asked for', () => {
    const usage = { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 };
    const data = events(streamPayload({ id: 'x', created: 1, model: 'm', content: 'a b', finishReason: 'length', usage }));
    const chunks = data.slice(0, -1).map((line) => JSON.parse(line));
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage });
    expect(chunks.at(-2).choices[0].finish_reason).toBe('length');
    expect(chunks.slice(0, -1).every((chunk) => chunk.usage === null)).toBe(true);
  });

  it('splits JSON at commas and colons too, into pieces that join back exactly', () => {
    const json = '{"answer":"Lorem ipsum, dolor","n":[1,2,3],"ok":true,"t":"12:30"}';
    const pieces = splitJsonDeltas(json);
    expect(pieces.join('')).toBe(json);
    expect(pieces).toEqual(['{"answer":', '"Lorem', ' ipsum,', ' dolor",', '"n":', '[1,', '2,', '3],', '"ok":', 'true,', '"t":', '"12:', '30"}']);
    for (const text of ['', ' ', ':', ',,', '{ "a" : 1 }\n', '  x  ']) expect(splitJsonDeltas(text).join('')).toBe(text);
    const streamed = events(streamPayload({ id: 'x', created: 1, model: 'm', content: json, json: true, finishReason: 'stop' }));
    const deltas = streamed.slice(1, -2).map((line) => JSON.parse(line).choices[0].delta.content);
    expect(deltas).toEqual(pieces);
  });
});
