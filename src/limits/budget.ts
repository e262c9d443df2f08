import { randomBytes } from 'node:crypto';
import { integers, LUA_PRELUDE, scriptRunner, type LuaScript, type RedisClient, type ScriptRunner } from '../queue/lua-script.ts';
import type { RefusalWait } from '../queue/redis-outage.ts';

/**
 * Spending caps per batch and per calendar month (UTC), shared by every worker through Redis.
 * Money is integer nano-dollars (see src/models/pricing.ts). Before a call the caller reserves
 * its estimated cost; after it, `settle` swaps the estimate for the actual cost. A reservation
 * is admitted only if spent + reserved + estimate stays within every cap that is set, so
 * concurrent workers can never together start more than the caps allow on estimates.
 *
 * The row runner's estimate is the call's most (max_tokens for the output, the prompt's UTF-8
 * bytes for its tokens), but a provider's usage can still differ (a timed-out call's prompt is
 * charged as counted, a chat template's overhead), so `spent` may end slightly above a cap: by at
 * most the sum of the underestimates of the calls in flight. Nothing is refused after the
 * fact; the next reservation sees the overrun and is refused.
 *
 * Each scope is one hash, fields `spent` and `reserved`: the batch's (`batchBudgetKey`, which lives
 * with the batch under its hash tag) and the month's (`monthKey`). The two live in different
 * Cluster slots, so a reservation is two scripts sent together (one round trip of latency): if one
 * scope refuses, the other's hold is released at once. Between the two, a hold that is about to be
 * released can make a concurrent reservation in the other scope see less room than there is, only
 * when both caps are at their edge at once; caps are never exceeded.
 *
 * Every reservation is also a hold with a deadline, in a sorted set beside its hash (`holdsKey`,
 * same Cluster slot). A worker killed mid-call never settles; the next reservation in that scope
 * past the deadline takes the hold's estimate out of `reserved`. Without it the holds of a killed
 * worker would shrink the batch's or the month's budget for as long as the key lives. A settle
 * names its hold, so it settles in the scopes (and the month) it reserved in, and a call that
 * outlives its deadline still books its cost but releases nothing twice.
 *
 * Several estimates can be reserved together (`reserveTogether`, an ensemble row's calls before its
 * first), admitted or refused as one, each its own hold, kept for a call still to come: `renew`
 * moves such a hold's deadline on (and grows it, if the call may cost more and the caps have room)
 * just before its call, and tells when it lapsed meanwhile, so that a call never goes out on a hold
 * already freed.
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

/** An admitted reservation: what `settle` needs to release it and book the call's cost. */
export interface BudgetHold {
  /** Member of each scope's holds set: a unique id, then the estimate. */
  member: string;
  estimateNanos: number;
  scopes: Array<{ scope: BudgetScope; key: string }>;
}

export type BudgetReservation =
  | { ok: true; hold: BudgetHold }
  | { ok: false; scope: BudgetScope; limitNanos: number; spentNanos: number; reservedNanos: number };

export type BudgetTogether = { ok: true; holds: BudgetHold[] } | Extract<BudgetReservation, { ok: false }>;

export interface BudgetUsage {
  spentNanos: number;
  reservedNanos: number;
}

export interface BudgetOptions {
  /**
   * How long a hold lasts unsettled before a later reservation frees it; default 5 minutes. It must
   * outlast the longest call (the provider's timeout), or calls in flight stop counting early.
   */
  holdTtlMs?: number;
  /**
   * A full Redis refusing one of its scripts: waited out (the session's bound), not thrown, so a
   * row that has paid for a call still books it. Omitted: thrown at once.
   */
  refusals?: RefusalWait | undefined;
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

/**
 * The sorted set of a scope's holds, in its hash's Cluster slot: a key with a hash tag keeps it; a
 * key without one is hashed whole, which is what a tag holding the whole key hashes to.
 */
export function holdsKey(scopeKey: string): string {
  return /\{[^}]+\}/.test(scopeKey) ? `${scopeKey}:holds` : `{${scopeKey}}:holds`;
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

/**
 * Takes `amount` (a Lua number) off the hash's `reserved`, not below 0. Amounts go to HINCRBY as
 * int_str: Lua writes 0 negated as "-0" and large numbers with an exponent, which Redis refuses.
 */
const RELEASE_FN = `
local function release(amount)
  if amount > 0 and redis.call('HINCRBY', KEYS[1], 'reserved', int_str(-amount)) < 0 then redis.call('HSET', KEYS[1], 'reserved', 0) end
end
`;

/** Frees the holds past their deadline (their workers died mid-call); leaves `now` (ms) in scope. */
const RECLAIM_STALE_HOLDS = `
local now = math.floor(now_us() / 1000)
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', int_str(now))
if #stale > 0 then
  local freed = 0
  for i = 1, #stale do freed = freed + tonumber(string.match(stale[i], ':(%d+)$')) end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', int_str(now))
  release(freed)
end
`;

/** Sets both keys' expiry from ARGV[mode] ('at' | 'in' | 'never') and ARGV[mode + 1] (ms); 'never' takes an expiry off. */
const EXPIRE_BOTH = (mode: number) => `
for i = 1, 2 do
  if ARGV[${mode}] == 'at' then redis.call('PEXPIREAT', KEYS[i], ARGV[${mode + 1}])
  elseif ARGV[${mode}] == 'in' then redis.call('PEXPIRE', KEYS[i], ARGV[${mode + 1}])
  else redis.call('PERSIST', KEYS[i]) end
end
`;

/**
 * KEYS: the scope's hash, its holds. ARGV: limit (-1: none), estimate (all the members' together),
 * expire mode, ms, hold ttl ms, then one hold member or more. Returns {ok 0/1, spent, reserved}.
 */
const RESERVE: LuaScript = {
  name: 'budget_reserve',
  numberOfKeys: 2,
  lua: `${LUA_PRELUDE}${RELEASE_FN}${RECLAIM_STALE_HOLDS}
local f = redis.call('HMGET', KEYS[1], 'spent', 'reserved')
local spent = tonumber(f[1]) or 0
local reserved = tonumber(f[2]) or 0
local limit = tonumber(ARGV[1])
local estimate = tonumber(ARGV[2])
if limit >= 0 and spent + reserved + estimate > limit then return {0, spent, reserved} end
reserved = redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[2])
for i = 6, #ARGV do redis.call('ZADD', KEYS[2], int_str(now + tonumber(ARGV[5])), ARGV[i]) end
${EXPIRE_BOTH(3)}
return {1, spent, reserved}
`,
};

/**
 * KEYS: the scope's hash, its holds. ARGV: hold member, estimate, actual, expire mode, ms. Releases
 * the hold's estimate if the hold is still there (not freed as stale), then books the actual cost.
 */
const SETTLE: LuaScript = {
  name: 'budget_settle',
  numberOfKeys: 2,
  lua: `${LUA_PRELUDE}${RELEASE_FN}
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then release(tonumber(ARGV[2])) end
if tonumber(ARGV[3]) > 0 then redis.call('HINCRBY', KEYS[1], 'spent', ARGV[3]) end
${EXPIRE_BOTH(4)}
return 1
`,
};

/**
 * KEYS: the scope's hash, its holds. ARGV: hold member, its new member (its id with the new
 * estimate), the estimate's growth (>= 0), limit (-1: none), hold ttl ms. Moves a live hold's
 * deadline on, grown to its new estimate if that fits the limit as a reservation would. Returns 1;
 * 0 when the hold lapsed (or was settled); 2 when its growth does not fit (the hold left as it was).
 */
const RENEW: LuaScript = {
  name: 'budget_renew',
  numberOfKeys: 2,
  lua: `${LUA_PRELUDE}
local now = math.floor(now_us() / 1000)
local deadline = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not deadline or tonumber(deadline) <= now then return 0 end
local growth = tonumber(ARGV[3])
if growth > 0 then
  local f = redis.call('HMGET', KEYS[1], 'spent', 'reserved')
  local limit = tonumber(ARGV[4])
  if limit >= 0 and (tonumber(f[1]) or 0) + (tonumber(f[2]) or 0) + growth > limit then return 2 end
  redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[3])
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[2], int_str(now + tonumber(ARGV[5])), ARGV[2])
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
  readonly #run: ScriptRunner;
  readonly #holdTtlMs: number;
  /** Hold ids: this instance's random prefix and a counter. */
  readonly #holdPrefix = randomBytes(6).toString('hex');
  #holds = 0;

  constructor(redis: RedisClient, options: BudgetOptions = {}) {
    this.#redis = redis;
    this.#run = scriptRunner(redis, options.refusals, 'the budget');
    this.#holdTtlMs = options.holdTtlMs ?? 5 * 60_000;
  }

  async reserve(input: BudgetReserveInput): Promise<BudgetReservation> {
    const reservation = await this.reserveTogether({ ...input, estimatesNanos: [input.estimateNanos] });
    return reservation.ok ? { ok: true, hold: reservation.holds[0]! } : reservation;
  }

  /**
   * Several estimates admitted together or not at all, each its own hold (settled on its own): an
   * ensemble row's members and synthesis, reserved before its first call (ensemble-row.ts).
   */
  async reserveTogether(input: Omit<BudgetReserveInput, 'estimateNanos'> & { estimatesNanos: readonly number[] }): Promise<BudgetTogether> {
    for (const estimate of input.estimatesNanos) checkNanos('estimateNanos', estimate);
    const estimateNanos = input.estimatesNanos.reduce((sum, estimate) => sum + estimate, 0);
    checkNanos('estimateNanos', estimateNanos);
    if (input.batchLimitNanos !== undefined) checkNanos('batchLimitNanos', input.batchLimitNanos);
    if (input.monthLimitNanos !== undefined) checkNanos('monthLimitNanos', input.monthLimitNanos);
    const scopes: ScopeCall[] = [{ scope: 'batch', key: input.batchKey, limit: input.batchLimitNanos }];
    if (input.monthKey !== undefined) scopes.push({ scope: 'month', key: input.monthKey, limit: input.monthLimitNanos });
    const members = input.estimatesNanos.map((estimate) => `${this.#holdPrefix}.${++this.#holds}:${estimate}`);
    const replies = await Promise.all(
      scopes.map(async (call) => {
        const args = [call.limit ?? -1, estimateNanos, ...this.#expiry(call.key, call.scope), this.#holdTtlMs, ...members];
        const reply = await this.#run(RESERVE, [call.key, holdsKey(call.key)], args);
        const [ok, spent, reserved] = integers(reply, 3, RESERVE.name) as [number, number, number];
        return { ...call, ok: ok === 1, spent, reserved };
      }),
    );
    const refused = replies.find((reply) => !reply.ok);
    const held = scopes.map(({ scope, key }) => ({ scope, key }));
    if (!refused) return { ok: true, holds: members.map((member, i) => ({ member, estimateNanos: input.estimatesNanos[i]!, scopes: held })) };
    await Promise.all(replies.filter((reply) => reply.ok).flatMap((reply) => members.map((member, i) => this.#settleOne(reply.key, reply.scope, member, input.estimatesNanos[i]!, 0))));
    return { ok: false, scope: refused.scope, limitNanos: refused.limit ?? 0, spentNanos: refused.spent, reservedNanos: refused.reserved };
  }

  /** Releases the hold and books what the call cost (0 for a call that never happened) in each of its scopes. */
  async settle(hold: BudgetHold, actualNanos: number): Promise<void> {
    checkNanos('actualNanos', actualNanos);
    await Promise.all(hold.scopes.map(({ scope, key }) => this.#settleOne(key, scope, hold.member, hold.estimateNanos, actualNanos)));
  }

  /**
   * Moves a hold's deadline on, for a hold kept while its row waits (an ensemble's, for a call still
   * to come), grown to `estimateNanos` when the call may cost more than it holds, if the limits
   * (as `reserve` takes them) leave room: the hold as it is now. Null when it lapsed meanwhile or
   * cannot grow: whatever is left of it is then released.
   */
  async renew(hold: BudgetHold, input: Pick<BudgetReserveInput, 'batchLimitNanos' | 'monthLimitNanos' | 'estimateNanos'>): Promise<BudgetHold | null> {
    checkNanos('estimateNanos', input.estimateNanos);
    const estimateNanos = Math.max(hold.estimateNanos, input.estimateNanos);
    const member = `${hold.member.slice(0, hold.member.lastIndexOf(':'))}:${estimateNanos}`;
    const replies = await Promise.all(
      hold.scopes.map(async ({ scope, key }) => {
        const limit = (scope === 'batch' ? input.batchLimitNanos : input.monthLimitNanos) ?? -1;
        return (await this.#run(RENEW, [key, holdsKey(key)], [hold.member, member, estimateNanos - hold.estimateNanos, limit, this.#holdTtlMs])) === 1;
      }),
    );
    if (replies.every(Boolean)) return { ...hold, member, estimateNanos };
    // Released in every scope, as it now stands there: grown, or as it was (lapsed ones are gone already).
    await Promise.all(hold.scopes.map(({ scope, key }, i) => (replies[i] ? this.#settleOne(key, scope, member, estimateNanos, 0) : this.#settleOne(key, scope, hold.member, hold.estimateNanos, 0))));
    return null;
  }

  async usage(key: string): Promise<BudgetUsage> {
    const [spent, reserved] = await this.#redis.hmget(key, 'spent', 'reserved');
    return { spentNanos: Number(spent ?? 0), reservedNanos: Number(reserved ?? 0) };
  }

  async spent(key: string): Promise<number> {
    return (await this.usage(key)).spentNanos;
  }

  async #settleOne(key: string, scope: BudgetScope, member: string, estimate: number, actual: number): Promise<void> {
    await this.#run(SETTLE, [key, holdsKey(key)], [member, estimate, actual, ...this.#expiry(key, scope)]);
  }

  #expiry(key: string, scope: BudgetScope): [string, number] {
    // A batch's spend lasts as long as the batch (`switchyard forget` deletes it with the batch's
    // other keys): one that expired would let a resume after weeks spend its --budget again in full.
    // 'never' also takes off the 30-day expiry earlier versions set.
    if (scope === 'batch') return ['never', 0];
    const at = monthKeyExpiresAt(key);
    return at !== null ? ['at', at] : ['in', 71 * DAY_MS];
  }
}
