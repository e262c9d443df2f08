import { describe, expect, it } from 'vitest';
import { logFormatProblem, readableLogLine } from '../../src/log.ts';

describe('log lines on a terminal', () => {
  it('read as a sentence with its details after it, not as JSON', () => {
    const json = JSON.stringify({ level: 40, time: 1796181468059, batch: 'b1', row: 36, code: 'no_model_available', attempts: 0, msg: 'no model was available' });
    expect(readableLogLine(`${json}\n`)).toBe('warning: no model was available (batch b1, row 36, code no_model_available, attempts 0)\n');
  });

  it("give an error's message, and leave a line that is not JSON as it is", () => {
    const json = JSON.stringify({ level: 50, time: 1, err: { type: 'Error', message: 'connect ECONNREFUSED 127.0.0.1:6379', stack: 'Error: ...' }, msg: 'redis connection lost Redis' });
    expect(readableLogLine(json)).toBe('error: redis connection lost Redis: connect ECONNREFUSED 127.0.0.1:6379\n');
    expect(readableLogLine('plain text\n')).toBe('plain text\n');
  });
});

describe('LOG_FORMAT', () => {
  it('takes json in any case, and refuses a value it does not know (QA: JSON was ignored without a word)', () => {
    expect(logFormatProblem('JSON')).toBeNull();
    expect(logFormatProblem(undefined)).toBeNull();
    expect(logFormatProblem('jsonl')).toBe('LOG_FORMAT "jsonl" is not a log format: use json (one JSON object a line, for log collectors), or leave it unset for readable lines');
  });
});
