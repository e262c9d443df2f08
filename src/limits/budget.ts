import { integers, runScript, type LuaScript, type RedisClient } from '../queue/lua-script.ts';

/**
 * Spending caps per batch and per calendar month (UTC), shared by every worker through Redis.
 * Money is integer nano-dollars (see src/models/pricing.ts). Before a call the caller reserves
 * its estimated cost; after it, `settle` swaps the estimate for the actual cost. A reservation
 * is admitted only if spent + reserved + estimate stays within every cap that is set, so
 * concurrent workers can never together start more than the caps allow on estimates.
 *
 * The actual cost may exceed the estimate (an estimate from max_tokens is an upper bound for
 * output, but prices and token counts can still differ), so `spent` may end slightly above a cap:
 * by at most the sum of the underestimates of the calls in flight. Nothing is refused after the
 * fact; the next reservation sees the overrun and is refused.
 *
 * Each scope is one hash, fields `spent` and `reserved`: the batch's (`batchBudgetKey`, which lives
 * with the batch under its hash tag) and the month's (`monthKey`). The two live in different
 * Cluster slots, so a reservation is two single-key scripts sent together (one round trip of
 * latency): if one scope refuses, the other's hold is released at once. Between the two, a hold
 * that is about to be released can make a concurrent reservation in the other scope see less room
 * than there is, only when both caps are at their edge at once; caps are never exceeded.
 */

export type BudgetScope = 'batch' | 'month';

export interface BudgetReserveInput {
  batchKey: string;
  /** Omit to track no monthly spend. */
  monthKey?: string | undefined;
  batchLimitNanos?: number | undefined;
  monthLimitNanos?: number | undefined;
  estimateNanos: number;
}

export type BudgetReservation =
  | { ok: true }
  | { ok: false; scope: BudgetScope; limitNanos: number; spentNanos: number; reservedNanos: number };

export interface BudgetSettleInput {
  batchKey: string;
  monthKey?: string | undefined;
  /** What was reserved (the same estimateNanos). */
  estimateNanos: number;
  /** What the call cost; 0 releases a reservation whose call never happened. */
  actualNanos: number;
}

export interface BudgetUsage {
  spentNanos: number;
  reservedNanos: number;
}

export interface BudgetOptions {
  /** A batch's budget key expires after this long without a reservation or settlement; default 30 days. */
  batchKeyTtlMs?: number;
}

const DAY_MS = 86_400_000;
/** A month's key is kept this long after the month ends, for reports. */
const MONTH_KEPT_MS = 40 * DAY_MS;

export function batchBudgetKey(prefix: string, batchId: string): string {
  return `${prefix}:batch:{${batchId}}:budget`;
}

/** `<prefix>:budget:month:2026-11` for the UTC month holding `date`. */
export function monthKey(prefix: string, date: Date): string {
  return `${prefix}:budget:month:${date.toISOString().slice(0, 7)}`;
}

/** When a month key expires: 40 days after its month ends; null when the key names no month. */
export function monthKeyExpiresAt(key: string): number | null {
  const match = /:(\d{4})-(\d{2})$/.exec(key);
  if (!match) return null;
  const year = Number(match[1]);
  const month = Number(match[2]);
  if (month < 1 || month > 12) return null;
  return Date.UTC(year, month, 1) + MONTH_KEPT_MS; // Date.UTC months are 0-based: `month` is the next one
}

/** ARGV: limit (-1: none), estimate, expire mode ('at' | 'in'), ms. Returns {ok 0/1, spent, reserved}. */
const RESERVE: LuaScript = {
  name: 'budget_reserve',
  numberOfKeys: 1,
  lua: `
local key = KEYS[1]
local f = redis.call('HMGET', key, 'spent', 'reserved')
local spent = tonumber(f[1]) or 0
local reserved = tonumber(f[2]) or 0
local limit = tonumber(ARGV[1])
local estimate = tonumber(ARGV[2])
if limit >= 0 and spent + reserved + estimate > limit then return {0, spent, reserved} end
reserved = redis.call('HINCRBY', key, 'reserved', estimate)
if ARGV[3] == 'at' then redis.call('PEXPIREAT', key, ARGV[4]) else redis.call('PEXPIRE', key, ARGV[4]) end
return {1, spent, reserved}
`,
};

/** ARGV: estimate, actual, expire mode, ms. reserved -= estimate (not below 0), spent += actual. */
const SETTLE: LuaScript = {
  name: 'budget_settle',
  numberOfKeys: 1,
  lua: `
local key = KEYS[1]
local reserved = redis.call('HINCRBY', key, 'reserved', -tonumber(ARGV[1]))
if reserved < 0 then redis.call('HSET', key, 'reserved', 0) end
local actual = tonumber(ARGV[2])
if actual ~= 0 then redis.call('HINCRBY', key, 'spent', actual) end
if ARGV[3] == 'at' then redis.call('PEXPIREAT', key, ARGV[4]) else redis.call('PEXPIRE', key, ARGV[4]) end
return 1
`,
};

function checkNanos(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a whole number of nano-dollars >= 0, got ${value}`);
}

interface ScopeCall {
  scope: BudgetScope;
  key: string;
  limit: number | undefined;
}

export class Budget {
  readonly #redis: RedisClient;
  readonly #batchTtlMs: number;

  constructor(redis: RedisClient, options: BudgetOptions = {}) {
    this.#redis = redis;
    this.#batchTtlMs = options.batchKeyTtlMs ?? 30 * DAY_MS;
  }

  async reserve(input: BudgetReserveInput): Promise<BudgetReservation> {
    checkNanos('estimateNanos', input.estimateNanos);
    if (input.batchLimitNanos !== undefined) checkNanos('batchLimitNanos', input.batchLimitNanos);
    if (input.monthLimitNanos !== undefined) checkNanos('monthLimitNanos', input.monthLimitNanos);
    const scopes: ScopeCall[] = [{ scope: 'batch', key: input.batchKey, limit: input.batchLimitNanos }];
    if (input.monthKey !== undefined) scopes.push({ scope: 'month', key: input.monthKey, limit: input.monthLimitNanos });
    const replies = await Promise.all(
      scopes.map(async (call) => {
        const reply = await runScript(this.#redis, RESERVE, [call.key], [call.limit ?? -1, input.estimateNanos, ...this.#expiry(call.key, call.scope)]);
        const [ok, spent, reserved] = integers(reply, 3, RESERVE.name) as [number, number, number];
        return { ...call, ok: ok === 1, spent, reserved };
      }),
    );
    const refused = replies.find((reply) => !reply.ok);
    if (!refused) return { ok: true };
    await Promise.all(replies.filter((reply) => reply.ok).map((reply) => this.#settleOne(reply.key, reply.scope, input.estimateNanos, 0)));
    return { ok: false, scope: refused.scope, limitNanos: refused.limit ?? 0, spentNanos: refused.spent, reservedNanos: refused.reserved };
  }

  async settle(input: BudgetSettleInput): Promise<void> {
    checkNanos('estimateNanos', input.estimateNanos);
    checkNanos('actualNanos', input.actualNanos);
    const settles = [this.#settleOne(input.batchKey, 'batch', input.estimateNanos, input.actualNanos)];
    if (input.monthKey !== undefined) settles.push(this.#settleOne(input.monthKey, 'month', input.estimateNanos, input.actualNanos));
    await Promise.all(settles);
  }

  async usage(key: string): Promise<BudgetUsage> {
    const [spent, reserved] = await this.#redis.hmget(key, 'spent', 'reserved');
    return { spentNanos: Number(spent ?? 0), reservedNanos: Number(reserved ?? 0) };
  }

  async spent(key: string): Promise<number> {
    return (await this.usage(key)).spentNanos;
  }

  async #settleOne(key: string, scope: BudgetScope, estimate: number, actual: number): Promise<void> {
    await runScript(this.#redis, SETTLE, [key], [estimate, actual, ...this.#expiry(key, scope)]);
  }

  #expiry(key: string, scope: BudgetScope): [string, number] {
    const at = scope === 'month' ? monthKeyExpiresAt(key) : null;
    if (at !== null) return ['at', at];
    return ['in', scope === 'month' ? 71 * DAY_MS : this.#batchTtlMs];
  }
}
