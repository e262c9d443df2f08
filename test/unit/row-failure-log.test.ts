import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createRowFailureLog, ROW_FAILURES_LOGGED } from '../../src/execution/row-failure-log.ts';

function capturingLogger() {
  const lines: Array<{ msg: string; batch?: string; row?: number; id?: string; code?: string }> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level: 'warn' }, stream), lines };
}

describe('row failure log', () => {
  it('logs the first rows of each code per batch, then says the rest are only counted', async () => {
    const { logger, lines } = capturingLogger();
    const log = createRowFailureLog(logger);
    for (let row = 1; row <= 10; row++) log({ batchId: 'b1', row, code: 'unauthorized', attempts: 1, message: 'key rejected (401)' });
    log({ batchId: 'b1', row: 11, code: 'timeout', attempts: 4, message: 'timed out' });
    log({ batchId: 'b2', row: 1, code: 'unauthorized', attempts: 1, message: 'key rejected (401)' });
    await new Promise((resolve) => setImmediate(resolve));

    const b1Unauthorized = lines.filter((line) => line.batch === 'b1' && line.code === 'unauthorized');
    expect(b1Unauthorized).toHaveLength(ROW_FAILURES_LOGGED + 1);
    expect(b1Unauthorized.slice(0, ROW_FAILURES_LOGGED).map((line) => [line.row, line.msg])).toEqual([
      [1, 'key rejected (401)'],
      [2, 'key rejected (401)'],
      [3, 'key rejected (401)'],
    ]);
    expect(b1Unauthorized.at(-1)?.msg).toBe('more rows of batch b1 failed with unauthorized; not logged one by one (each is in results.jsonl, the report counts them)');
    expect(lines.filter((line) => line.code === 'timeout').map((line) => line.msg)).toEqual(['timed out']);
    expect(lines.filter((line) => line.batch === 'b2').map((line) => line.row)).toEqual([1]);
  });

  it("names the row's id beside its number when the file gave it one (QA: 'row 10' of a file of contracts c1..c30, no_model_available)", async () => {
    const { logger, lines } = capturingLogger();
    const log = createRowFailureLog(logger);
    log({ batchId: 'b1', row: 10, id: 'c10', code: 'no_model_available', attempts: 0, message: 'no model can take this prompt' });
    log({ batchId: 'b1', row: 11, id: '11', code: 'no_model_available', attempts: 0, message: 'no model can take this prompt' });
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines.map((line) => [line.row, line.id])).toEqual([
      [10, 'c10'],
      [11, undefined], // an id that is only its number is not said twice
    ]);
  });
});
