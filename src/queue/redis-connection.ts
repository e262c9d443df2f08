/**
 * Where Redis is and how to talk to it: the URL from the environment, ioredis clients set up for
 * BullMQ, a PING that never hangs, and `ensureRedis`, which falls back to a private, persistent
 * redis-server when nothing was configured and the default Redis does not answer.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { SetupError } from '../errors.ts';
import { endOnDisconnect } from './end-on-disconnect.ts';
import { isConnectionError, isCredentialsRefusal } from './redis-outage.ts';
import { plainPing } from './plain-ping.ts';
import { findRedisServerBinary, isPortFree, startRedisServer } from './redis-server-process.ts';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
/** Where a private redis-server keeps its data and port (in the current folder). */
export const PRIVATE_REDIS_DIR = '.switchyard';
/** Where a private redis-server listens by default (next free port after it if taken). */
const PRIVATE_REDIS_PORT = 6390;

type Env = Record<string, string | undefined>;

export interface ConnectOptions {
  /**
   * 'worker' for BullMQ workers and anything that blocks; 'client' (default) for queues, producers
   * and plain commands.
   */
  role?: 'worker' | 'client';
}

/**
 * Both roles wait for a Redis that went away however long it takes (`maxRetriesPerRequest: null`,
 * which BullMQ requires of blocking connections anyway): a command sent meanwhile goes out once it
 * is back. ioredis' default instead failed every waiting command after 20 reconnect attempts, about
 * 75 s with ioredis 6's backoff: a run then ended with the answers it held unrecorded (paid for
 * again on the resume), even when Redis came back a moment later. How long a command waits for
 * Redis is the session's decision (`redis-outage.ts`, `redisWaitLimitMs`), taken on a PING of its
 * own, and said in Switchyard's words.
 */
export function connectRedis(url: string, options: ConnectOptions = {}): Redis {
  // Clients batch the commands of one event-loop tick into one socket write (64 rows in flight each
  // publish, check and settle): fewer system calls per row. Blocking connections must not.
  const redisOptions: RedisOptions = options.role === 'worker' ? { maxRetriesPerRequest: null } : { maxRetriesPerRequest: null, enableAutoPipelining: true };
  return endOnDisconnect(new Redis(url, redisOptions));
}

/** True if Redis at `url` answers PING within `timeoutMs`; never throws, never leaves a connection open. */
export async function pingRedis(url: string, timeoutMs: number): Promise<boolean> {
  return (await probeRedis(url, timeoutMs)).ok;
}

/**
 * Why a Redis URL does not answer PING: nothing there (or too slow), a Redis that wants other
 * credentials, a server that is not Redis, one that takes the connection and closes it without a
 * word (not Redis, or a Redis that wants TLS), a rediss:// URL whose server does not speak TLS or
 * whose certificate is not trusted, or a database it does not have. Only the first is helped by
 * starting a Redis.
 */
export type RedisProbe =
  | { ok: true }
  | { ok: false; reason: 'unreachable' | 'auth' | 'not_redis' | 'closed' | 'untrusted_tls'; detail: string }
  /** rediss:// to a server that does not answer TLS; `plainRedis`: it answers PING without it. */
  | { ok: false; reason: 'no_tls'; detail: string; plainRedis: boolean }
  /** The URL's database (its /N) refused: ioredis only says so in an 'error' event and goes on in database 0. */
  | { ok: false; reason: 'database'; detail: string; db: number; databases: number | null };

/** Node's codes for a TLS certificate it does not trust (self-signed, expired, another host's). */
const UNTRUSTED_CERTIFICATE = /^(DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|ERR_TLS_CERT_ALTNAME_INVALID)$/;

export async function probeRedis(url: string, timeoutMs: number): Promise<RedisProbe> {
  let redis: Redis | undefined;
  let timer: NodeJS.Timeout | undefined;
  // Every error the connection reported, in order: the telling one (a reply that is not RESP, a
  // refused password) may come before the reset that ends it.
  const seen: Error[] = [];
  let connected = false;
  const failed = async (error: unknown): Promise<RedisProbe> => {
    const errors = [...seen, error instanceof Error ? error : new Error(String(error))];
    const details = errors.map((e) => (e.message.split('\n')[0] ?? '').replace(/\s*Please report this\.?$/, '')); // ioredis' words for a reply it cannot parse
    const telling = (test: (detail: string) => boolean) => details.find(test);
    const auth = telling((detail) => isCredentialsRefusal(new Error(detail)));
    if (auth !== undefined) return { ok: false, reason: 'auth', detail: auth };
    const notResp = telling((detail) => /Unknown RESP type|Protocol error/i.test(detail));
    if (notResp !== undefined) return { ok: false, reason: 'not_redis', detail: notResp };
    // ioredis rejects with "Connection is closed."; the reason went to the 'error' event before it.
    const last = details.findLast((detail) => detail !== 'Connection is closed.') ?? details.at(-1) ?? '';
    const certificate = errors.find((e) => UNTRUSTED_CERTIFICATE.test((e as NodeJS.ErrnoException).code ?? ''));
    if (certificate) return { ok: false, reason: 'untrusted_tls', detail: certificate.message.split('\n', 1)[0] ?? '' };
    const options = redis?.options;
    if (options === undefined || options.path || !options.host || !options.port) return { ok: false, reason: 'unreachable', detail: last };
    // Something may be there that ioredis could not tell: ask it in plain text.
    if (options.tls) {
      const plain = await plainPing(options.host, options.port, timeoutMs);
      if (plain.kind === 'refused') return { ok: false, reason: 'unreachable', detail: last };
      return { ok: false, reason: 'no_tls', detail: last, plainRedis: plain.kind === 'redis' };
    }
    if (!connected || !errors.some(isConnectionError)) return { ok: false, reason: 'unreachable', detail: last };
    const plain = await plainPing(options.host, options.port, timeoutMs);
    if (plain.kind === 'other') return { ok: false, reason: 'not_redis', detail: `it answered "${plain.firstLine}"` };
    if (plain.kind === 'silent') return { ok: false, reason: 'closed', detail: last };
    return { ok: false, reason: 'unreachable', detail: last };
  };
  try {
    redis = new Redis(url, {
      lazyConnect: true,
      retryStrategy: () => null,
      connectTimeout: timeoutMs,
      commandTimeout: timeoutMs,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
    });
    redis.on('error', (error: Error) => seen.push(error));
    redis.on('connect', () => (connected = true));
    const client = redis;
    const probe = client.connect().then(async (): Promise<RedisProbe> => {
      const reply = await client.ping();
      if (reply !== 'PONG') return failed(new Error(`PING answered ${String(reply)}`));
      const db = client.options.db ?? 0;
      if (db === 0) return { ok: true };
      const refused = await client.select(db).then(() => null, (error: unknown) => (error instanceof Error ? error : new Error(String(error))));
      if (refused === null) return { ok: true };
      return { ok: false, reason: 'database', detail: refused.message.split('\n', 1)[0] ?? '', db, databases: await databaseCount(client) };
    });
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    return await Promise.race([probe, timeout]);
  } catch (error) {
    clearTimeout(timer);
    redis?.disconnect();
    return await failed(error);
  } finally {
    clearTimeout(timer);
    redis?.disconnect();
  }
}

/** How many databases the server has (redis.conf `databases`); null when CONFIG is not allowed (hosted Redis often refuses it). */
async function databaseCount(redis: Redis): Promise<number | null> {
  const reply: unknown = await redis.call('CONFIG', 'GET', 'databases').catch(() => null);
  const value = Array.isArray(reply) ? reply[1] : reply !== null && typeof reply === 'object' ? (reply as Record<string, unknown>).databases : undefined;
  const count = Number(value);
  return Number.isInteger(count) && count > 0 ? count : null;
}

export interface EnsureRedisOptions {
  /** An explicit URL; like REDIS_URL, it is used or fails, never replaced by a private server. */
  url?: string;
  /** The private server keeps its data in `<dataDir>/redis`. */
  dataDir: string;
  log: (msg: string) => void;
  /** Default: process.env (only REDIS_URL is read). */
  env?: Env;
  /** The URL tried when neither `url` nor REDIS_URL is given; default redis://127.0.0.1:6379. */
  defaultUrl?: string;
  /** First port tried for a private server; default 6390. */
  privatePort?: number;
  /** PING timeout for each URL tried; default 1500 ms. */
  pingTimeoutMs?: number;
}

export interface EnsuredRedis {
  url: string;
  /** Stops the private server if this call started one; otherwise does nothing. */
  stop: () => Promise<void>;
  /** True when this call started a private redis-server. */
  started: boolean;
}

export async function ensureRedis(options: EnsureRedisOptions): Promise<EnsuredRedis> {
  const env = options.env ?? process.env;
  const explicit = options.url ?? (env.REDIS_URL?.trim() || undefined);
  const url = explicit ?? options.defaultUrl ?? DEFAULT_REDIS_URL;
  // ioredis reads "host:port" too, but another scheme (http://, tcp://) is a mistake worth naming.
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  if (scheme !== undefined && scheme !== 'redis' && scheme !== 'rediss') {
    throw new SetupError(`REDIS_URL ${redactUrl(url)} is not a Redis URL: use redis://host:6379 (or rediss:// for TLS), e.g. REDIS_URL=redis://127.0.0.1:6379`);
  }
  const timeoutMs = options.pingTimeoutMs ?? 1500;
  const noop = async () => undefined;

  const probe = await probeRedis(url, timeoutMs);
  if (probe.ok) return { url, stop: noop, started: false };
  // A Redis is there: starting another would hide it. Say what is wrong with reaching it.
  if (probe.reason === 'auth') {
    throw new SetupError(credentialsRefusedMessage(url, probe.detail));
  }
  if (probe.reason === 'database') throw new SetupError(databaseRefusedMessage(url, probe.db, probe.detail, probe.databases));
  if (probe.reason === 'no_tls') throw new SetupError(noTlsMessage(url, probe.detail, probe.plainRedis));
  if (probe.reason === 'untrusted_tls') {
    throw new SetupError(`Redis at ${redactUrl(url)} answered TLS with a certificate Node.js does not trust (${probe.detail}): give Node its CA with NODE_EXTRA_CA_CERTS=/path/to/ca.pem (or NODE_OPTIONS=--use-system-ca if the system trusts it)`);
  }
  if (probe.reason === 'closed') {
    throw new SetupError(`something at ${redactUrl(url)} took the connection and closed it without answering as Redis (${probe.detail}): a Redis that wants TLS (then use ${withScheme(url, 'rediss')}), or not Redis at all: check the host and port in REDIS_URL (Redis listens on 6379 unless told otherwise)`);
  }
  if (probe.reason === 'not_redis') {
    throw new SetupError(`something answers at ${redactUrl(url)}, but not as Redis (${probe.detail}): check the host and port in REDIS_URL (Redis listens on 6379 unless told otherwise)`);
  }
  const binary = explicit === undefined ? findRedisServerBinary() : null;
  if (binary === null) throw new SetupError(redisUnreachableMessage(url, explicit !== undefined, probe.detail));

  const dir = path.join(options.dataDir, 'redis');
  mkdirSync(dir, { recursive: true });
  const portFile = privatePortFile(options.dataDir);
  const recorded = readPort(portFile);
  if (recorded !== null) {
    const running = `redis://127.0.0.1:${recorded}`;
    if (await pingRedis(running, timeoutMs)) {
      options.log(`Redis at ${redactUrl(url)} did not answer; using the private redis-server already running at ${running} (data in ${dir})`);
      return { url: running, stop: noop, started: false };
    }
  }
  const port = await firstFreePort(recorded ?? options.privatePort ?? PRIVATE_REDIS_PORT);
  const server = await startRedisServer({
    binary,
    port,
    dir,
    persist: true,
    logFile: path.join(dir, 'redis-server.log'),
  });
  writeFileSync(portFile, `${server.port}\n`);
  options.log(`Redis at ${redactUrl(url)} did not answer; started a private redis-server at ${server.url} (data in ${dir})`);
  return { url: server.url, stop: server.stop, started: true };
}

/** The message for a Redis that refuses the URL's user and password (or their absence). */
export function credentialsRefusedMessage(url: string, detail: string): string {
  return `Redis at ${redactUrl(url)} refused the connection's credentials (${detail}): put its user and password in REDIS_URL, e.g. REDIS_URL=redis://:password@host:6379 or redis://user:password@host:6379`;
}

/** The message for a rediss:// URL whose server does not answer TLS. */
function noTlsMessage(url: string, detail: string, plainRedis: boolean): string {
  if (plainRedis) return `Redis at ${redactUrl(url)} did not answer TLS (${detail}); it answers without: use redis://, REDIS_URL=${withScheme(url, 'redis')}`;
  return `something at ${redactUrl(url)} took the connection but did not answer TLS (${detail}): a plain Redis? Then use redis://, REDIS_URL=${withScheme(url, 'redis')}; otherwise check the host and port in REDIS_URL`;
}

/** The URL, its password hidden, with another scheme. */
function withScheme(url: string, scheme: 'redis' | 'rediss'): string {
  return redactUrl(url).replace(/^rediss?:/i, `${scheme}:`);
}

/** The message for a URL whose database (its /N) the server refuses: most often one past its last. */
export function databaseRefusedMessage(url: string, db: number, detail: string, databases: number | null): string {
  const where = `the /${db} at the end of REDIS_URL`;
  if (!/out of range/i.test(detail)) return `Redis at ${redactUrl(url)} refused database ${db} (${where}: ${detail}): leave the /${db} off to use database 0`;
  const has = databases === null ? "fewer databases (redis.conf's `databases`, 16 unless set)" : `${databases} database${databases === 1 ? '' : 's'}, numbered 0 to ${databases - 1}`;
  return `Redis at ${redactUrl(url)} has no database ${db} (${where}; ${detail}): it has ${has}. Use one of those, or leave the /${db} off for database 0.`;
}

/** The message for an unreachable Redis: the URL tried, why (a mistyped host reads ENOTFOUND), and the three ways to get one. */
function redisUnreachableMessage(url: string, explicit: boolean, detail = ''): string {
  const why = detail ? ` (${detail})` : '';
  // A URL given on purpose is more likely mistyped, or its Redis down, than missing: that comes first.
  const given = explicit ? ' It was set explicitly (REDIS_URL), so no private redis-server is started in its place: check its host and port, and that its Redis runs. Or' : ' Switchyard needs a Redis server;';
  return [
    `Cannot reach Redis at ${redactUrl(url)}${why}.${given} any one of these gives it one:`,
    '  1. Docker: `docker compose up -d redis` in the project folder (see docker-compose.yml)',
    '  2. a package: `apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` (macOS);',
    '     with redis-server on PATH and REDIS_URL unset, Switchyard starts a private one itself',
    // Set already (and the trouble): say what to change in it rather than to set it.
    explicit ? '  3. an existing Redis: point REDIS_URL at it (redis://host:port), or unset it for 1 or 2' : '  3. an existing Redis: set REDIS_URL, e.g. REDIS_URL=redis://host:6379',
  ].join('\n');
}

/** The URL with any password replaced, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === '') return url;
    parsed.password = '***';
    return parsed.toString();
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//***@');
  }
}

/** Where `ensureRedis` records the port of the private redis-server it started in `dataDir`. */
function privatePortFile(dataDir: string): string {
  return path.join(dataDir, 'redis', 'port');
}

/**
 * The URL of the private redis-server `ensureRedis` last started in `dataDir` (it may not be
 * running), or null when none was: for a command that starts no Redis but reads the one a run
 * would use (a dry run).
 */
export function recordedPrivateRedisUrl(dataDir: string): string | null {
  const port = readPort(privatePortFile(dataDir));
  return port === null ? null : `redis://127.0.0.1:${port}`;
}

function readPort(file: string): number | null {
  try {
    const port = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return port > 0 && port < 65536 ? port : null;
  } catch {
    return null;
  }
}

async function firstFreePort(from: number): Promise<number> {
  for (let port = from; port < from + 50 && port < 65536; port++) {
    if (await isPortFree(port)) return port;
  }
  throw new SetupError(`No free port for a private redis-server in ${from}-${from + 49}`);
}
