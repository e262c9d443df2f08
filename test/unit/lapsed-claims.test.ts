import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { isLapsedLock, lapsedClaimsNote } from '../../workers/prompt-worker.ts';

describe('lapsed claims after an outage', () => {
  it("are told apart from other worker errors, and said once a minute with their count, not a line per job", () => {
    expect(isLapsedLock(new Error('Missing lock for job s7_167_zk61h0. moveToFinished'))).toBe(true);
    expect(isLapsedLock(new Error('could not renew lock for job b16_73_x'))).toBe(true);
    expect(isLapsedLock(new Error('Connection is closed.'))).toBe(false);

    const lines: Array<{ level: number; lapsed_claims?: number; msg: string }> = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    let clock = 0;
    const note = lapsedClaimsNote(logger, () => clock);
    for (let job = 0; job < 36; job++) note(new Error(`Missing lock for job j${job}. moveToFinished`));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, lapsed_claims: 1, msg: expect.stringContaining("each row's result is still recorded once") });
    clock += 60_000;
    note(new Error('Missing lock for job j36. moveToDelayed'));
    expect(lines.map((line) => line.lapsed_claims)).toEqual([1, 37]);
  });
});
