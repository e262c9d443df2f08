import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SetupError } from '../../src/errors.ts';
import { connectRedis, databaseRefusedMessage, ensureRedis, pingRedis, probeRedis } from '../../src/queue/redis-connection.ts';
import { pickFreePort, startRedisServer, type RedisServerHandle } from '../../src/queue/redis-server-process.ts';
import { runCli } from '../helpers/cli.ts';
import { cleanupPrefix, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'switchyard-redis-test-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A URL whose port was free a moment ago, so nothing answers there. */
async function closedUrl(): Promise<string> {
  return `redis://127.0.0.1:${await pickFreePort()}`;
}

function track(server: RedisServerHandle): RedisServerHandle {
  cleanups.push(() => server.stop());
  return server;
}

async function getKey(url: string, key: string): Promise<string | null> {
  const redis = connectRedis(url);
  try {
    return await redis.get(key);
  } finally {
    redis.disconnect();
  }
}

async function setKey(url: string, key: string, value: string): Promise<void> {
  const redis = connectRedis(url);
  try {
    await redis.set(key, value);
  } finally {
    redis.disconnect();
  }
}

describe('pingRedis', () => {
  it('answers true for the test Redis', async () => {
    expect(await pingRedis(testRedisUrl(), 2000)).toBe(true);
  });

  it('answers false on a closed port, within the timeout', async () => {
    const started = Date.now();
    expect(await pingRedis(await closedUrl(), 500)).toBe(false);
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('answers false within the timeout when the peer accepts but never replies, and closes its socket', async () => {
    let open = 0;
    const silent: Server = createServer((socket) => {
      open += 1;
      socket.on('close', () => (open -= 1));
      socket.resume(); // read, so the client's FIN is seen
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => silent.close(() => resolve())));
    const address = silent.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    const started = Date.now();
    expect(await pingRedis(`redis://127.0.0.1:${port}`, 300)).toBe(false);
    expect(Date.now() - started).toBeLessThan(1500);
    await expect.poll(() => open, { timeout: 2000 }).toBe(0);
  });

  it('answers false for a malformed URL instead of throwing', async () => {
    expect(await pingRedis('not a url at all', 300)).toBe(false);
  });
});

describe('startRedisServer', () => {
  it('keeps data across a restart in the same dir when persisting', async () => {
    const dir = tempDir();
    const key = `${uniquePrefix('persist')}:k`;
    const first = track(await startRedisServer({ port: 0, dir, persist: true }));
    await setKey(first.url, key, 'kept');
    await first.stop();
    expect(await pingRedis(first.url, 300)).toBe(false);

    const second = track(await startRedisServer({ port: 0, dir, persist: true }));
    expect(await getKey(second.url, key)).toBe('kept');
  });

  it('keeps nothing when not persisting', async () => {
    const dir = tempDir();
    const first = track(await startRedisServer({ port: 0, dir, persist: false }));
    await setKey(first.url, 'gone', 'x');
    await first.stop();
    const second = track(await startRedisServer({ port: 0, dir, persist: false }));
    expect(await getKey(second.url, 'gone')).toBeNull();
  });

  it('refuses a port that is already taken', async () => {
    const taken = track(await startRedisServer({ port: 0, dir: tempDir(), persist: false }));
    await expect(startRedisServer({ port: taken.port, dir: tempDir(), persist: false })).rejects.toThrow(
      /address already in use/,
    );
  });

  it('reports the server output when redis-server exits at startup', async () => {
    const dir = tempDir();
    const error = await startRedisServer({ port: 0, dir, persist: false, binary: '/bin/false' }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(String(error)).toMatch(/exited with code 1/);
  });

  it('includes the tail of the output in the error', async () => {
    const dir = tempDir();
    // Stands in for a redis-server that prints why it cannot start and exits.
    const script = path.join(dir, 'fake-redis.sh');
    writeFileSync(script, '#!/bin/sh\necho "FATAL: pretend config error" >&2\nexit 1\n');
    chmodSync(script, 0o755);
    const error = await startRedisServer({ port: 0, dir, persist: false, binary: script }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(String(error)).toContain('FATAL: pretend config error');
  });
});

describe('ensureRedis', () => {
  it('fails fast with the ways to get Redis when an explicit URL does not answer', async () => {
    const dataDir = tempDir();
    const url = await closedUrl();
    const logs: string[] = [];
    const started = Date.now();
    const error = await ensureRedis({ url, dataDir, log: (m) => logs.push(m), pingTimeoutMs: 1000 }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(Date.now() - started).toBeLessThan(3000);
    expect(error).toBeInstanceOf(SetupError);
    const message = (error as SetupError).message;
    expect(message).toContain(url);
    // Why, and that a URL given on purpose is checked first: no private server replaces it.
    expect(message).toContain('ECONNREFUSED');
    expect(message).toContain('It was set explicitly (REDIS_URL), so no private redis-server is started in its place: check its host and port, and that its Redis runs.');
    expect(message).toContain('docker compose up -d redis');
    expect(message).toContain('apt-get install redis-server');
    expect(message).toContain('brew install redis');
    // It is set already: not told to set it (QA).
    expect(message).toContain('3. an existing Redis: point REDIS_URL at it (redis://host:port), or unset it for 1 or 2');
    expect(logs).toEqual([]);
    expect(existsSync(path.join(dataDir, 'redis'))).toBe(false);
  });

  it('tells a Redis that wants other credentials, and a server that is not Redis, from no Redis at all', async () => {
    const server = track(await startRedisServer({ port: 0, dir: tempDir(), persist: false }));
    const admin = connectRedis(server.url);
    await admin.config('SET', 'requirepass', 's3cret');
    cleanups.push(async () => {
      await admin.config('SET', 'requirepass', ''); // so stop() may shut it down
      admin.disconnect();
    });
    const withPassword = (password: string) => server.url.replace('redis://', `redis://:${password}@`);
    expect(await probeRedis(server.url, 2000)).toMatchObject({ ok: false, reason: 'auth', detail: expect.stringMatching(/^NOAUTH/) });
    expect(await probeRedis(withPassword('wrong'), 2000)).toMatchObject({ ok: false, reason: 'auth', detail: expect.stringMatching(/^WRONGPASS/) });
    expect(await probeRedis(withPassword('s3cret'), 2000)).toEqual({ ok: true });
    const error = await ensureRedis({ url: withPassword('wrong'), dataDir: tempDir(), log: () => undefined }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SetupError);
    expect((error as SetupError).message).toMatch(/^Redis at redis:\/\/\S+ refused the connection's credentials \(WRONGPASS .*\): put its user and password in REDIS_URL/);
    expect(String(error)).not.toContain('wrong@');

    const web = createHttpServer((_request, response) => response.end('hello'));
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => web.close(() => resolve())));
    const webUrl = `redis://127.0.0.1:${(web.address() as AddressInfo).port}`;
    expect(await probeRedis(webUrl, 2000)).toMatchObject({ ok: false, reason: 'not_redis' });
    const notRedis = await ensureRedis({ url: webUrl, dataDir: tempDir(), log: () => undefined }).catch((e: unknown) => e);
    expect((notRedis as SetupError).message).toMatch(/^something answers at redis:\/\/127\.0\.0\.1:\d+, but not as Redis \(.*\): check the host and port in REDIS_URL/);
    expect(await probeRedis(await closedUrl(), 500)).toMatchObject({ ok: false, reason: 'unreachable' });
  });

  it('names a database the server does not have, with the ones it has, instead of going on in database 0', async () => {
    const url = `${testRedisUrl().replace(/\/\d*$/, '')}/99`;
    const probe = await probeRedis(url, 2000);
    expect(probe).toMatchObject({ ok: false, reason: 'database', db: 99, detail: expect.stringMatching(/DB index is out of range/) });
    const databases = probe.ok ? null : 'databases' in probe ? probe.databases : null;
    const error = await ensureRedis({ url, dataDir: tempDir(), log: () => undefined }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SetupError);
    expect((error as SetupError).message).toBe(
      databases === null
        ? `Redis at ${url} has no database 99 (the /99 at the end of REDIS_URL; ERR DB index is out of range): it has fewer databases (redis.conf's \`databases\`, 16 unless set). Use one of those, or leave the /99 off for database 0.`
        : `Redis at ${url} has no database 99 (the /99 at the end of REDIS_URL; ERR DB index is out of range): it has ${databases} databases, numbered 0 to ${databases - 1}. Use one of those, or leave the /99 off for database 0.`,
    );
    expect(await probeRedis(`${testRedisUrl().replace(/\/\d*$/, '')}/1`, 2000)).toEqual({ ok: true });
    expect(databaseRefusedMessage('redis://:s3cret@h:6379/20', 20, 'ERR DB index is out of range', null)).toBe(
      "Redis at redis://:***@h:6379/20 has no database 20 (the /20 at the end of REDIS_URL; ERR DB index is out of range): it has fewer databases (redis.conf's `databases`, 16 unless set). Use one of those, or leave the /20 off for database 0.",
    );
  });

  it('stops run on such a database with exit 3, before anything is queued', async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'prompts.csv'), 'prompt\nhello\n');
    const prefix = uniquePrefix('db99');
    const result = await runCli(['run', 'prompts.csv', '--batch-id', 'db99'], { REDIS_URL: `${testRedisUrl().replace(/\/\d*$/, '')}/99`, SWITCHYARD_PREFIX: prefix }, { cwd: dir });
    expect(result.code, result.stderr).toBe(3);
    expect(result.stderr).toMatch(/^switchyard: Redis at \S+\/99 has no database 99/m);
    const redis = connectRedis(testRedisUrl());
    try {
      expect(await cleanupPrefix(redis, prefix)).toBe(0);
    } finally {
      redis.disconnect();
    }
  });

  it('tells a web server on the port every time, not only when its answer outruns its reset', async () => {
    // In a process of its own: one in this event loop answers in step with the client, never racing its reset.
    const web = spawn(process.execPath, ['-e', "require('node:http').createServer((q, r) => r.end('hello')).listen(0, '127.0.0.1', function () { console.log(this.address().port); })"], { stdio: ['ignore', 'pipe', 'inherit'] });
    cleanups.push(() => void web.kill());
    const port = await new Promise<string>((resolve) => web.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString().trim())));
    const webUrl = `redis://127.0.0.1:${port}`;
    // ioredis' handshake is several commands at once; the web server answers the first and resets
    // the connection, which most of the time dropped its answer: "Cannot reach Redis".
    const reasons: string[] = [];
    for (let attempt = 0; attempt < 20; attempt++) {
      const probe = await probeRedis(webUrl, 2000);
      reasons.push(probe.ok ? 'ok' : probe.reason);
    }
    expect(reasons).toEqual(Array.from({ length: 20 }, () => 'not_redis'));
  });

  it('says a server that takes the connection and closes it without a word may want TLS', async () => {
    const closing: Server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => closing.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => closing.close(() => resolve())));
    const url = `redis://127.0.0.1:${(closing.address() as AddressInfo).port}`;
    expect(await probeRedis(url, 2000)).toMatchObject({ ok: false, reason: 'closed' });
    const error = await ensureRedis({ url, dataDir: tempDir(), log: () => undefined }).catch((e: unknown) => e);
    expect((error as SetupError).message).toMatch(/^something at redis:\/\/127\.0\.0\.1:\d+ took the connection and closed it without answering as Redis \(.*\): a Redis that wants TLS \(then use rediss:\/\/127\.0\.0\.1:\d+\), or not Redis at all/);
  });

  it('says a rediss:// URL reaches a Redis without TLS, and to use redis://', async () => {
    const plain = track(await startRedisServer({ port: 0, dir: tempDir(), persist: false }));
    const url = plain.url.replace('redis://', 'rediss://');
    expect(await probeRedis(url, 1000)).toMatchObject({ ok: false, reason: 'no_tls', plainRedis: true });
    const error = await ensureRedis({ url, dataDir: tempDir(), log: () => undefined, pingTimeoutMs: 1000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SetupError);
    expect((error as SetupError).message).toBe(`Redis at ${url} did not answer TLS (no answer within 1000 ms); it answers without: use redis://, REDIS_URL=${plain.url}`);
    // A server there that is not Redis at all, nor TLS:
    const web = createHttpServer((_request, response) => response.end('hello'));
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => web.close(() => resolve())));
    const webUrl = `rediss://127.0.0.1:${(web.address() as AddressInfo).port}`;
    expect(await probeRedis(webUrl, 1000)).toMatchObject({ ok: false, reason: 'no_tls', plainRedis: false });
  });

  it('says a rediss:// server whose certificate Node does not trust is that, not unreachable', async () => {
    const fixture = (name: string) => readFileSync(new URL(`../fixtures/tls/${name}`, import.meta.url));
    const tls = createTlsServer({ cert: fixture('self-signed-cert.pem'), key: fixture('self-signed-key.pem') }, (socket) => socket.end());
    await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => tls.close(() => resolve())));
    const url = `rediss://127.0.0.1:${(tls.address() as AddressInfo).port}`;
    const error = await ensureRedis({ url, dataDir: tempDir(), log: () => undefined }).catch((e: unknown) => e);
    expect((error as SetupError).message).toMatch(/^Redis at rediss:\/\/127\.0\.0\.1:\d+ answered TLS with a certificate Node\.js does not trust \(self-signed certificate.*\): give Node its CA with NODE_EXTRA_CA_CERTS/);
  });

  it('names a URL of another scheme as the mistake, before trying it', async () => {
    const error = await ensureRedis({ dataDir: tempDir(), log: () => undefined, env: { REDIS_URL: 'http://user:s3cret@127.0.0.1:6379' } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SetupError);
    expect((error as SetupError).message).toMatch(/^REDIS_URL http:\/\/\S+ is not a Redis URL: use redis:\/\/host:6379 \(or rediss:\/\/ for TLS\)/);
    expect(String(error)).not.toContain('s3cret');
  });

  it('treats REDIS_URL like an explicit URL: no private server in its place', async () => {
    const dataDir = tempDir();
    const url = await closedUrl();
    await expect(ensureRedis({ dataDir, log: () => undefined, env: { REDIS_URL: url } })).rejects.toThrow(SetupError);
    expect(existsSync(path.join(dataDir, 'redis'))).toBe(false);
  });

  it('hides a password in the message', async () => {
    const url = (await closedUrl()).replace('//', '//user:s3cret@');
    const error = await ensureRedis({ url, dataDir: tempDir(), log: () => undefined }).catch((e: unknown) => e);
    expect(String(error)).not.toContain('s3cret');
    expect(String(error)).toContain('***');
  });

  it('uses a URL that answers without starting anything', async () => {
    const logs: string[] = [];
    const redis = await ensureRedis({ url: testRedisUrl(), dataDir: tempDir(), log: (m) => logs.push(m) });
    expect(redis).toMatchObject({ url: testRedisUrl(), started: false });
    expect(logs).toEqual([]);
  });

  it('starts a persistent private redis-server when the default URL does not answer', async () => {
    const dataDir = tempDir();
    const defaultUrl = await closedUrl();
    const privatePort = await pickFreePort();
    const logs: string[] = [];
    const options = { dataDir, log: (m: string) => logs.push(m), env: {}, defaultUrl, privatePort };

    const first = await ensureRedis(options);
    cleanups.push(first.stop);
    expect(first.started).toBe(true);
    expect(first.url).toBe(`redis://127.0.0.1:${privatePort}`);
    expect(readFileSync(path.join(dataDir, 'redis', 'port'), 'utf8').trim()).toBe(String(privatePort));
    expect(logs).toHaveLength(1);
    expect(logs[0]).toContain('private redis-server');
    expect(logs[0]).toContain(first.url);

    // A second process finds the running server through the port file and starts nothing.
    const again = await ensureRedis(options);
    expect(again).toMatchObject({ url: first.url, started: false });

    await setKey(first.url, 'survives', 'yes');
    await first.stop();
    expect(await pingRedis(first.url, 300)).toBe(false);

    const second = await ensureRedis(options);
    cleanups.push(second.stop);
    expect(second.started).toBe(true);
    expect(second.url).toBe(first.url);
    expect(await getKey(second.url, 'survives')).toBe('yes');
  });
});

describe('test helpers', () => {
  let prefix = '';
  let other = '';
  const redis = connectRedis(testRedisUrl());
  beforeAll(() => {
    prefix = uniquePrefix('helpers');
    other = uniquePrefix('helpers');
  });
  afterAll(async () => {
    await cleanupPrefix(redis, other);
    redis.disconnect();
  });

  it('gives a different prefix each call', () => {
    expect(prefix).not.toBe(other);
    expect(prefix).toMatch(/^t-helpers-\d+-\d+-[0-9a-f]{6}$/);
  });

  it('cleanupPrefix deletes only keys under the prefix', async () => {
    await redis.mset(`${prefix}:a`, '1', `${prefix}:b:c`, '2', `${other}:a`, '3');
    expect(await cleanupPrefix(redis, prefix)).toBe(2);
    expect(await redis.exists(`${prefix}:a`, `${prefix}:b:c`)).toBe(0);
    expect(await redis.get(`${other}:a`)).toBe('3');
  });
});
