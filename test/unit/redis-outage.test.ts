import { EventEmitter } from 'node:events';
import { ReplyError, type Redis } from 'ioredis';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { formatWait, isConnectionError, isCredentialsRefusal, isRedisRefusal, redisWaitLimitMs, watchRedisOutages } from '../../src/queue/redis-outage.ts';

const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' });

describe('watchRedisOutages', () => {
  it('says once that Redis is gone and once that it is back, whatever the number of connections and retries', () => {
    const said: string[] = [];
    let clock = Date.UTC(2026, 11, 5, 2, 30, 15);
    const watch = watchRedisOutages({ label: 'redis://127.0.0.1:6379', logger: pino({ level: 'silent' }), say: (line) => said.push(line), now: () => clock });
    const client = new EventEmitter();
    const worker = new EventEmitter();
    watch.watch(client as unknown as Redis, 'client');
    watch.watch(worker as unknown as Redis, 'worker');

    client.emit('ready'); // connected at start: nothing to say
    client.emit('error', refused());
    worker.emit('error', refused());
    watch.failed('worker', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    client.emit('error', refused());
    expect(said).toHaveLength(1);
    // When it went and came back, for a person reading a log that many nights append to (QA).
    expect(said[0]).toMatch(/^Redis at redis:\/\/127\.0\.0\.1:6379 is not answering \(ECONNREFUSED, since 02:30:15 UTC\); waiting for it to come back/);

    clock += 11_900;
    worker.emit('ready');
    client.emit('ready');
    expect(said).toHaveLength(2);
    expect(said[1]).toBe('Redis is answering again after 11.9 s, at 02:30:26 UTC; going on.');

    client.emit('error', refused());
    expect(said).toHaveLength(3);
  });

  it('logs a lost connection in one wording whichever connection met it, naming the connection as a detail (QA: three phrasings for one outage)', () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
    for (const connection of ['worker', 'main', 'queue']) {
      const watch = watchRedisOutages({ label: 'r', logger, say: () => undefined });
      watch.failed(connection, refused());
    }
    expect(lines.map((line) => [line.msg, line.connection])).toEqual([['Redis connection lost', 'worker'], ['Redis connection lost', 'main'], ['Redis connection lost', 'queue']]);
  });

  it('no longer says "Ctrl-C stops" to a command that is already stopping', () => {
    const said: string[] = [];
    const watch = watchRedisOutages({ label: 'r', logger: pino({ level: 'silent' }), say: (line) => said.push(line) });
    watch.stopping('SIGTERM');
    watch.failed('client', refused());
    watch.silent('client', 12_000);
    expect(said[0]).not.toContain('Ctrl-C stops');
    expect(said[0]).toContain('It is stopping (SIGTERM) and ends once Redis answers; a second SIGTERM or Ctrl-C quits at once;');
  });

  it("speaks of one batch's state for a run, and of the batches' for a worker or a server", () => {
    const said: string[] = [];
    const logger = pino({ level: 'silent' });
    watchRedisOutages({ label: 'r', logger, say: (line) => said.push(line) }).failed('client', refused());
    watchRedisOutages({ label: 'r', logger, say: (line) => said.push(line), manyBatches: true }).failed('client', refused());
    expect(said[0]).toContain(": the batch's state lives there");
    expect(said[1]).toContain(": the batches' state lives there");
  });

  it('says how long it waits and the command that goes on, and tells when an outage begins and ends', () => {
    const said: string[] = [];
    const events: string[] = [];
    const watch = watchRedisOutages({
      label: 'redis://r',
      logger: pino({ level: 'silent' }),
      say: (line) => said.push(line),
      waitLimitMs: 600_000,
      onOutage: { began: () => events.push('began'), ended: () => events.push('ended') },
    });
    const client = new EventEmitter();
    watch.watch(client as unknown as Redis, 'client');
    client.emit('error', refused());
    expect(said[0]).toMatch(/waiting for it to come back \(for up to 10 min, SWITCHYARD_REDIS_WAIT_S\): .* Ctrl-C stops; running the same command again later goes on from where it stopped\.$/);
    client.emit('error', refused());
    client.emit('ready');
    expect(events).toEqual(['began', 'ended']);

    watch.goOnWith('switchyard run --resume b1');
    client.emit('error', refused());
    expect(said[2]).toMatch(/Ctrl-C stops; `switchyard run --resume b1` later goes on from where it stopped\.$/);
    expect(events).toEqual(['began', 'ended', 'began']);
  });

  it('reads the wait limit from SWITCHYARD_REDIS_WAIT_S, 10 min unless set', () => {
    expect(redisWaitLimitMs({})).toBe(600_000);
    expect(redisWaitLimitMs({ SWITCHYARD_REDIS_WAIT_S: ' 90 ' })).toBe(90_000);
    expect(redisWaitLimitMs({ SWITCHYARD_REDIS_WAIT_S: '0.5' })).toBe(500);
    expect(redisWaitLimitMs({ SWITCHYARD_REDIS_WAIT_S: '0' })).toBeNull();
    expect(redisWaitLimitMs({ SWITCHYARD_REDIS_WAIT_S: 'ten' })).toBeNull();
    expect(formatWait(600_000)).toBe('10 min');
    expect(formatWait(90_000)).toBe('90 s');
  });

  it('leaves other errors to the log', () => {
    const said: string[] = [];
    const logged: string[] = [];
    const logger = pino({ level: 'error' }, { write: (line: string) => logged.push(line) });
    const watch = watchRedisOutages({ label: 'redis://x', logger, say: (line) => said.push(line) });
    watch.failed('worker', new Error('ERR unknown command'));
    expect(said).toEqual([]);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toContain('ERR unknown command');
  });

  it('tells connection errors from command errors', () => {
    expect(isConnectionError(refused())).toBe(true);
    expect(isConnectionError(new Error('Connection is closed.'))).toBe(true);
    expect(isConnectionError(new Error('ERR wrong number of arguments'))).toBe(false);
    expect(isConnectionError(null)).toBe(false);
  });
});

describe('a Redis that refuses writes', () => {
  it('is said once a minute, not once per row', () => {
    const said: string[] = [];
    let clock = 0;
    const watch = watchRedisOutages({ label: 'redis://r', logger: pino({ level: 'silent' }), say: (line) => said.push(line), now: () => clock });
    const oom = () => new ReplyError("OOM command not allowed when used memory > 'maxmemory'.");
    for (let row = 0; row < 50; row++) watch.failed('prompt job crashed', oom());
    expect(said).toEqual([
      "Redis at redis://r refuses writes: OOM command not allowed when used memory > 'maxmemory'.\nRows wait and are tried again. Free Redis memory or disk (see its log), or stop with Ctrl-C and run the same command again later.",
    ]);
    clock += 61_000;
    watch.failed('prompt job crashed', oom());
    expect(said).toHaveLength(2);
    expect(isRedisRefusal(oom())).toBe(true);
    expect(isRedisRefusal(new ReplyError('ERR unknown command'))).toBe(false);
  });

  it('is logged as a warning, not an error: the write waits and is tried again', () => {
    const levels: number[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void levels.push((JSON.parse(line) as { level: number }).level) });
    const watch = watchRedisOutages({ label: 'redis://r', logger, say: () => undefined, now: () => 0 });
    watch.failed('queueing the file', new ReplyError("OOM command not allowed when used memory > 'maxmemory'."));
    expect(levels).toEqual([pino.levels.values.warn]);
  });
});

describe('a Redis that refuses the credentials mid-run', () => {
  it('is handed on once, not logged at every reconnect attempt of every connection', () => {
    const said: string[] = [];
    const logged: string[] = [];
    const refusals: string[] = [];
    const logger = pino({ level: 'error' }, { write: (line: string) => logged.push(line) });
    const watch = watchRedisOutages({ label: 'redis://r', logger, say: (line) => said.push(line), onCredentialsRefused: (detail) => refusals.push(detail) });
    const noauth = () => new ReplyError('NOAUTH HELLO must be called with the client already authenticated');
    for (let attempt = 0; attempt < 20; attempt++) {
      watch.failed('redis connection', noauth());
      watch.failed('redis worker connection', new ReplyError('WRONGPASS invalid username-password pair or user is disabled.'));
    }
    expect(refusals).toEqual(['NOAUTH HELLO must be called with the client already authenticated']);
    expect(said).toEqual([]);
    expect(logged).toEqual([]);
    expect(isCredentialsRefusal(noauth())).toBe(true);
    expect(isCredentialsRefusal(new ReplyError('ERR invalid password'))).toBe(true);
    expect(isCredentialsRefusal(new ReplyError('ERR unknown command'))).toBe(false);
  });
});

describe('an outage that goes on', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('is said again every minute, with how long so far and when the command gives up (QA: a log silent for minutes, no progress line meanwhile, looked hung)', async () => {
    vi.useFakeTimers();
    vi.setSystemTime(Date.UTC(2026, 11, 5, 2, 30, 15));
    const said: string[] = [];
    const watch = watchRedisOutages({ label: 'redis://r', logger: pino({ level: 'silent' }), say: (line) => said.push(line), waitLimitMs: 600_000 });
    watch.failed('client', refused());
    await vi.advanceTimersByTimeAsync(59_000);
    expect(said).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1000);
    expect(said[1]).toBe('Redis at redis://r has still not answered, 1 min 0 s since 02:30:15 UTC: no row is taken meanwhile, and the answers in hand wait to be recorded; it gives up at 02:40:15 UTC (10 min in all, SWITCHYARD_REDIS_WAIT_S) unless Redis answers by then.');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(said[2]).toMatch(/^Redis at redis:\/\/r has still not answered, 2 min 0 s since 02:30:15 UTC: /);
    // Back: no more of them.
    watch.answering();
    await vi.advanceTimersByTimeAsync(180_000);
    expect(said).toHaveLength(4);
    expect(said[3]).toMatch(/^Redis is answering again after 120\.0 s/);
  });

  it('says no end for a command that waits for ever (a worker, a server), nor once a stop bounds the wait', async () => {
    vi.useFakeTimers();
    vi.setSystemTime(Date.UTC(2026, 11, 5, 2, 30, 15));
    const said: string[] = [];
    const forEver = watchRedisOutages({ label: 'r', logger: pino({ level: 'silent' }), say: (line) => said.push(line), manyBatches: true });
    forEver.silent('client', 12_000);
    const stopped = watchRedisOutages({ label: 'r', logger: pino({ level: 'silent' }), say: (line) => said.push(line), waitLimitMs: 600_000 });
    stopped.failed('client', refused());
    stopped.stopping('SIGTERM');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(said.slice(2)).toEqual([
      'Redis at r has still not answered, 1 min 12 s since 02:30:03 UTC: no row is taken meanwhile, and the answers in hand wait to be recorded.',
      'Redis at r has still not answered, 1 min 0 s since 02:30:15 UTC: no row is taken meanwhile, and the answers in hand wait to be recorded.',
    ]);
  });
});
