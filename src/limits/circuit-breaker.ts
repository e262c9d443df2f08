import type { BreakerConfig } from '../config/schema.ts';
import { integers, LUA_PRELUDE, scriptRunner, type LuaScript, type RedisClient, type ScriptRunner } from '../queue/lua-script.ts';
import type { RefusalWait } from '../queue/redis-outage.ts';

/**
 * A circuit breaker per model, shared by every worker through Redis. Closed: calls go. After
 * `failure_threshold` consecutive failures it opens: calls are skipped (the caller falls back or
 * waits) for `cooldown_ms`. Then it is half-open: exactly one caller across all workers gets a
 * probe; its success closes the circuit, its failure opens it again for another cooldown. The probe
 * holds a lock that expires (default: after one cooldown), so a prober that died does not keep the
 * model shut forever. Which errors count is the caller's decision: 5xx, timeouts and connection
 * errors, never 400/401/429.
 *
 * One hash per model, `<prefix>:breaker:{<model>}`: `fails` (consecutive failures), `opened`
 * (when it opened, us; present only while open), `probe` (when the probe lock expires, us),
 * `last_error` (what the latest counted failure said, so a row passed over says why it opened).
 * Absent means closed with no failures. Times are Redis' clock. Every operation is one round trip.
 */

export type BreakerState = 'closed' | 'open' | 'half_open';

export interface BreakerCheck {
  allowed: boolean;
  state: BreakerState;
  /** When not allowed: how long until the circuit may let a call (a probe) through. */
  retryInMs: number;
  /**
   * Consecutive failures counted so far (any worker's). A caller that records successes only for
   * models it knows are failing (to save the round trip) should treat failures > 0 as failing.
   */
  failures: number;
  /** When not allowed: what the failure that opened the circuit (or the latest one) said. */
  lastError?: string;
  /** Allowed as the half-open circuit's one probe: the lock's token, for `releaseProbe` when no call goes out after all. */
  probe?: string;
}

export interface CircuitBreakerOptions {
  prefix: string;
  breaker: Pick<BreakerConfig, 'failure_threshold' | 'cooldown_ms'>;
  /** How long a probe may run before another caller may probe; default `cooldown_ms`. */
  probeLockMs?: number;
  /**
   * A full Redis refusing one of its scripts: waited out (the session's bound), not thrown, so a
   * row that has paid for a call still books it. Omitted: thrown at once.
   */
  refusals?: RefusalWait | undefined;
}

const STATES: readonly BreakerState[] = ['closed', 'open', 'half_open'];
/** A failure's message is kept this short: it is repeated in every passed-over row's error. */
const MAX_REASON_CHARS = 300;

export function breakerKey(prefix: string, model: string): string {
  return `${prefix}:breaker:{${model}}`;
}

/**
 * ARGV: cooldown us, probe lock us, ttl ms. Returns {allowed 0/1, state code, retry in us, failures},
 * and when not allowed the last error as a 5th element (nil when none was recorded); a probe let
 * through gets its lock's value as a 6th, its token.
 */
const CHECK: LuaScript = {
  name: 'breaker_check',
  numberOfKeys: 1,
  lua: `${LUA_PRELUDE}
local key = KEYS[1]
local f = redis.call('HMGET', key, 'opened', 'probe', 'fails', 'last_error')
local fails = tonumber(f[3]) or 0
local opened = tonumber(f[1])
if not opened then return {1, 0, 0, fails} end
local now = now_us()
local reopen_at = opened + tonumber(ARGV[1])
if now < reopen_at then return {0, 1, reopen_at - now, fails, f[4]} end
local probe = tonumber(f[2])
if probe and probe > now then return {0, 2, probe - now, fails, f[4]} end
local token = int_str(now + tonumber(ARGV[2]))
redis.call('HSET', key, 'probe', token)
redis.call('PEXPIRE', key, ARGV[3])
return {1, 2, 0, fails, false, token}
`,
};

/**
 * ARGV: cooldown us. How long until a call could go (closed, or half-open with no probe out), in
 * us, 0 when it could now; without taking the probe. For a caller that only asks (row-runner.ts
 * laterModelOpenToCalls, the summary of a run whose rows found circuits open).
 */
const PEEK: LuaScript = {
  name: 'breaker_peek',
  numberOfKeys: 1,
  lua: `${LUA_PRELUDE}
local f = redis.call('HMGET', KEYS[1], 'opened', 'probe')
local opened = tonumber(f[1])
if not opened then return 0 end
local now = now_us()
local reopen_at = opened + tonumber(ARGV[1])
if now < reopen_at then return reopen_at - now end
local probe = tonumber(f[2])
if probe and probe > now then return probe - now end
return 0
`,
};

/** ARGV: the probe's token. Lets the next caller probe now, if the lock is still this probe's. */
const RELEASE_PROBE: LuaScript = {
  name: 'breaker_release_probe',
  numberOfKeys: 1,
  lua: `
if redis.call('HGET', KEYS[1], 'probe') == ARGV[1] then redis.call('HDEL', KEYS[1], 'probe') end
return 0
`,
};

/**
 * ARGV: failure threshold, ttl ms, what the call's error said ('' for nothing). A failure while closed counts, and opens the circuit at the
 * threshold; a failure after a probe was let through re-opens it now; a failure while open and
 * before any probe (a call that started before it opened) changes nothing. Returns {state code}.
 */
const FAILURE: LuaScript = {
  name: 'breaker_failure',
  numberOfKeys: 1,
  lua: `${LUA_PRELUDE}
local key = KEYS[1]
if ARGV[3] ~= '' then redis.call('HSET', key, 'last_error', ARGV[3]) end
local f = redis.call('HMGET', key, 'opened', 'probe')
if f[1] then
  if not f[2] then return {1} end
  redis.call('HSET', key, 'opened', int_str(now_us()))
  redis.call('HDEL', key, 'probe')
  redis.call('PEXPIRE', key, ARGV[2])
  return {1}
end
local fails = redis.call('HINCRBY', key, 'fails', 1)
redis.call('PEXPIRE', key, ARGV[2])
if fails >= tonumber(ARGV[1]) then
  redis.call('HSET', key, 'opened', int_str(now_us()))
  return {1}
end
return {0}
`,
};

export class CircuitBreaker {
  readonly #redis: RedisClient;
  readonly #run: ScriptRunner;
  readonly #prefix: string;
  readonly #threshold: number;
  readonly #cooldownMs: number;
  readonly #probeLockMs: number;
  /** Idle keys go: long enough to outlive an open circuit and its probe, and a while of failures. */
  readonly #ttlMs: number;

  constructor(redis: RedisClient, options: CircuitBreakerOptions) {
    this.#redis = redis;
    this.#run = scriptRunner(redis, options.refusals, 'the circuit breaker');
    this.#prefix = options.prefix;
    this.#threshold = options.breaker.failure_threshold;
    this.#cooldownMs = options.breaker.cooldown_ms;
    this.#probeLockMs = options.probeLockMs ?? options.breaker.cooldown_ms;
    this.#ttlMs = Math.max(600_000, 2 * (this.#cooldownMs + this.#probeLockMs));
  }

  /** May a call to `model` go now? In half-open state only one caller, anywhere, gets `allowed`. */
  async check(model: string): Promise<BreakerCheck> {
    const reply = await this.#run(CHECK, [breakerKey(this.#prefix, model)], [this.#cooldownMs * 1000, this.#probeLockMs * 1000, this.#ttlMs]);
    const lastError = Array.isArray(reply) && typeof reply[4] === 'string' ? reply[4] : undefined;
    const probe = Array.isArray(reply) && typeof reply[5] === 'string' ? reply[5] : undefined;
    const [allowed, state, retryInUs, failures] = integers(Array.isArray(reply) ? reply.slice(0, 4) : reply, 4, CHECK.name) as [number, number, number, number];
    return { allowed: allowed === 1, state: STATES[state] ?? 'closed', retryInMs: Math.ceil(retryInUs / 1000), failures, ...(lastError !== undefined && { lastError }), ...(probe !== undefined && { probe }) };
  }

  /**
   * Whether a call to `model` could go now, as `check` would answer, but without taking a half-open
   * circuit's probe: asking must not turn away the caller that would make the probe call.
   */
  async opensToCalls(model: string): Promise<boolean> {
    return (await this.shutForMs(model)) === 0;
  }

  /** How long until `model`'s circuit lets a call through (its probe, if half-open), asked as opensToCalls asks; 0 when it would now. */
  async shutForMs(model: string): Promise<number> {
    const reply = await this.#run(PEEK, [breakerKey(this.#prefix, model)], [this.#cooldownMs * 1000]);
    const [waitUs] = integers([reply], 1, PEEK.name) as [number];
    return Math.ceil(waitUs / 1000);
  }

  /**
   * The probe `check` let through sends no call after all (the budget refused it, its answer was
   * cached meanwhile, the call was a 400): the next caller may probe now, not once the lock expires.
   */
  async releaseProbe(model: string, probe: string): Promise<void> {
    await this.#run(RELEASE_PROBE, [breakerKey(this.#prefix, model)], [probe]);
  }

  /** A call to `model` succeeded: the circuit closes and the failure count starts again. */
  async recordSuccess(model: string): Promise<void> {
    await this.#redis.del(breakerKey(this.#prefix, model));
  }

  /**
   * A call to `model` failed in a way that counts; returns the state it leaves the circuit in.
   * `reason` (the call's error message) is kept to tell rows passed over while it is open why.
   */
  async recordFailure(model: string, reason = ''): Promise<'closed' | 'open'> {
    const kept = reason.length > MAX_REASON_CHARS ? `${reason.slice(0, MAX_REASON_CHARS - 1)}…` : reason;
    const reply = await this.#run(FAILURE, [breakerKey(this.#prefix, model)], [this.#threshold, this.#ttlMs, kept]);
    const [open] = integers(reply, 1, FAILURE.name) as [number];
    return open === 1 ? 'open' : 'closed';
  }
}
