import { describe, expect, it, vi } from 'vitest';
import { createLogger, logFormatProblem, readableLogLine } from '../../src/log.ts';

describe('log lines on a terminal', () => {
  it('read as a sentence with its details after it, not as JSON', () => {
    const json = JSON.stringify({ level: 40, time: 1796181468059, batch: 'b1', row: 36, code: 'no_model_available', attempts: 0, msg: 'no model was available' });
    expect(readableLogLine(`${json}\n`)).toBe('warning: no model was available (batch b1, row 36, code no_model_available, attempts 0)\n');
  });

  it("give an error's message, and leave a line that is not JSON as it is", () => {
    const json = JSON.stringify({ level: 50, time: 1, err: { type: 'Error', message: 'connect ECONNREFUSED 127.0.0.1:6379', stack: 'Error: ...' }, connection: 'worker', msg: 'Redis connection lost' });
    expect(readableLogLine(json)).toBe('error: Redis connection lost: connect ECONNREFUSED 127.0.0.1:6379 (connection worker)\n');
    expect(readableLogLine('plain text\n')).toBe('plain text\n');
  });

  it('leave out a detail the message says already (QA: "batch nightly-outage: rows wait ... (batch nightly-outage)")', () => {
    const line = (msg: string, fields: Record<string, unknown>) => readableLogLine(JSON.stringify({ level: 40, time: 1, ...fields, msg }));
    expect(line('batch nightly-outage: rows wait for the circuits of flash to close', { batch: 'nightly-outage' })).toBe('warning: batch nightly-outage: rows wait for the circuits of flash to close\n');
    expect(line('more rows of batch b1 failed with server_error; not logged one by one', { batch: 'b1', code: 'server_error' })).toBe('warning: more rows of batch b1 failed with server_error; not logged one by one (code server_error)\n');
    expect(line('rows wait, as batch b1.', { batch: 'b1' })).toBe('warning: rows wait, as batch b1.\n');
    // Another batch whose id starts the same is not this one.
    expect(line('batch b12: rows wait', { batch: 'b1' })).toBe('warning: batch b12: rows wait (batch b1)\n');
    expect(line('batch b1.2: rows wait', { batch: 'b1' })).toBe('warning: batch b1.2: rows wait (batch b1)\n');
    expect(line('batch nightly-b1: rows wait', { batch: 'b1' })).toBe('warning: batch nightly-b1: rows wait (batch b1)\n');
  });
});

describe('LOG_FORMAT', () => {
  it('takes json in any case, and refuses a value it does not know (QA: JSON was ignored without a word)', () => {
    expect(logFormatProblem('JSON')).toBeNull();
    expect(logFormatProblem(undefined)).toBeNull();
    expect(logFormatProblem('jsonl')).toBe('LOG_FORMAT "jsonl" is not a log format: use json (one JSON object a line, for log collectors), or leave it unset for readable lines');
  });
});

describe('LOG_FORMAT=json lines', () => {
  it('stay valid JSON with DEL and C1 controls in a message (review: written out as \\x9b, a log collector could not read the line)', () => {
    const written: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation(((chunk: string) => written.push(chunk)) as never);
    try {
      createLogger('warn', { readable: false }).warn({ row: 1 }, 'model "m" refused: bad \x7f\x9b31m here \x1b[2J');
    } finally {
      vi.restoreAllMocks();
    }
    expect(written).toHaveLength(1);
    const line = written[0]!;
    expect(line).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
    expect((JSON.parse(line) as { msg: string }).msg).toBe('model "m" refused: bad \x7f\x9b31m here \x1b[2J');
  });
});
