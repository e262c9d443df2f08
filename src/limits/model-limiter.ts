import { COOL_DOWN, COOLDOWN_LEFT, RELEASE, RESERVE, SETTLE } from './limiter-scripts.ts';
import { integers, scriptRunner, type RedisClient, type ScriptRunner } from '../queue/lua-script.ts';
import type { RefusalWait } from '../queue/redis-outage.ts';
import { requestIntervalUs, tokenCapacity, tokenSpanUs, windowTokens } from './pacing.ts';

/**
 * Per-model requests and tokens per minute, shared by every worker through Redis, the only state
 * workers share: the limits hold however many workers run, on however many machines. Instead of
 * yes/no it hands out reserved start times, so a row that must wait can park its job until its
 * slot instead of sleeping in a worker slot. See pacing.ts for why the pacing keeps a provider
 * that counts over a rolling 60 s window within its limits.
 *
 * Each operation is one Redis round trip (one Lua script, atomic, on Redis' clock). A model with
 * neither rpm nor tpm costs no round trip, except at most one per `cooldownPollMs` to learn about
 * a cooldown another worker set (a 429 from a model with no configured limits).
 */

export type LimitKind = 'requests' | 'tokens' | 'cooldown';

export interface ReserveInput {
  model: string;
  rpm?: number | undefined;
  tpm?: number | undefined;
  /** The call's tokens as the provider will count them before it runs: prompt + max_tokens. */
  tokens: number;
  /** Reserve nothing when the start would be further away than this. */
  maxWaitMs: number;
  /** Share of rpm/tpm to use, in (0, 1] (`limits.headroom`). */
  headroom: number;
}

export type Reservation =
  /** Start the call at `slotAt` (Redis clock, epoch ms), i.e. in `waitMs`; `limitedBy` says what made it wait. */
  | { reserved: true; slotAt: number; waitMs: number; limitedBy: LimitKind | null }
  /** Nothing reserved: the earliest start is `waitMs` away, held back by `limitedBy`. */
  | { reserved: false; waitMs: number; limitedBy: LimitKind };

export interface SettleInput {
  model: string;
  tpm?: number | undefined;
  headroom: number;
  /** The reservation's `slotAt`: the tokens are corrected in the window where they were reserved. */
  slotAt: number;
  estimatedTokens: number;
  /** What the call used (prompt + completion); 0 for a call that never reached the provider. */
  actualTokens: number;
}

export interface ReleaseInput {
  model: string;
  rpm?: number | undefined;
  tpm?: number | undefined;
  headroom: number;
  /**
   * Reservations that will not be used: their start (Redis clock, epoch ms) and the tokens they were
   * made for. Only those still ahead come back, unless `due`: the row holding it came to its start
   * and knows it makes no call (the budget made it wait, say), so it comes back all the same.
   */
  reservations: ReadonlyArray<{ slotAt: number; tokens: number; due?: boolean }>;
}

export interface CoolDownInput {
  model: string;
  /** How long no call may start, from now on Redis' clock (a 429's retry-after, or the reset of a limit a 200's x-ratelimit headers say is used up). Relative, so skewed clocks agree. */
  forMs: number;
}

export interface ModelLimiterOptions {
  /** Key prefix (the KeySpace prefix). */
  prefix: string;
  /** How often a model without rpm/tpm checks Redis for a cooldown; default 1000 ms, Infinity: never. */
  cooldownPollMs?: number;
  /**
   * A full Redis refusing one of its scripts: waited out (the session's bound), not thrown, so a
   * row that has paid for a call still books it. Omitted: thrown at once.
   */
  refusals?: RefusalWait | undefined;
}

const LIMITED_BY: readonly (LimitKind | null)[] = [null, 'requests', 'tokens', 'cooldown'];

/** The one hash holding a model's limiter state; the model is the hash tag, so it has one Cluster slot. */
export function limiterKey(prefix: string, model: string): string {
  return `${prefix}:limit:{${model}}`;
}

interface KnownCooldown {
  checkedAt: number;
  /** Local clock; a relative wait from Redis turned into a local deadline. */
  untilLocal: number;
}

export class ModelLimiter {
  readonly #run: ScriptRunner;
  readonly #prefix: string;
  readonly #pollMs: number;
  readonly #cooldowns = new Map<string, KnownCooldown>();
  readonly #cooldownReads = new Map<string, Promise<number>>();

  constructor(redis: RedisClient, options: ModelLimiterOptions) {
    this.#run = scriptRunner(redis, options.refusals, 'the rate limiter');
    this.#prefix = options.prefix;
    this.#pollMs = options.cooldownPollMs ?? 1000;
  }

  async reserve(input: ReserveInput): Promise<Reservation> {
    const { rpm, tpm, headroom } = input;
    if (!(input.maxWaitMs >= 0)) throw new RangeError(`maxWaitMs must be >= 0, got ${input.maxWaitMs}`);
    if (rpm === undefined && tpm === undefined) return this.#reserveUnlimited(input.model, input.maxWaitMs);
    const intervalUs = rpm === undefined ? 0 : requestIntervalUs(rpm, headroom);
    const capacity = tpm === undefined ? 0 : tokenCapacity(tpm, headroom);
    const charged = tpm === undefined ? 0 : windowTokens(input.tokens, capacity);
    const spanUs = tpm === undefined ? 0 : tokenSpanUs(charged, capacity);
    const reply = await this.#run(RESERVE, [this.#key(input.model)], [intervalUs, capacity, charged, spanUs, Math.floor(input.maxWaitMs * 1000)]);
    const [reserved, startUs, nowUs, code] = integers(reply, 4, RESERVE.name) as [number, number, number, number];
    const waitMs = Math.max(0, Math.ceil((startUs - nowUs) / 1000));
    const limitedBy = LIMITED_BY[code] ?? null;
    if (reserved === 1) return { reserved: true, slotAt: Math.floor(startUs / 1000), waitMs, limitedBy: waitMs > 0 ? limitedBy : null };
    return { reserved: false, waitMs, limitedBy: limitedBy ?? 'requests' };
  }

  /**
   * Corrects a reservation's tokens to what the call used: unused tokens come back (the next
   * reservations may start sooner, never before now), extra ones push them later. No round trip
   * when the model has no tpm or the estimate was exact.
   */
  async settle(input: SettleInput): Promise<void> {
    if (input.tpm === undefined) return;
    const capacity = tokenCapacity(input.tpm, input.headroom);
    const estimated = windowTokens(input.estimatedTokens, capacity);
    const actual = windowTokens(input.actualTokens, capacity);
    if (estimated === actual) return;
    const spanDelta = tokenSpanUs(actual, capacity) - tokenSpanUs(estimated, capacity);
    await this.#run(SETTLE, [this.#key(input.model)], [spanDelta, actual - estimated, Math.floor(input.slotAt) * 1000]);
  }

  /**
   * Gives back reservations that no call will use (rows taken off the queue by a stopped run, a row
   * that came to its slot and will not call), so the next ones do not wait behind them. Those
   * already started are left as they are, unless `due`. Returns how many were given back; no round
   * trip for a model without limits.
   */
  async release(input: ReleaseInput): Promise<number> {
    const { rpm, tpm, headroom } = input;
    if ((rpm === undefined && tpm === undefined) || input.reservations.length === 0) return 0;
    const intervalUs = rpm === undefined ? 0 : requestIntervalUs(rpm, headroom);
    const capacity = tpm === undefined ? 0 : tokenCapacity(tpm, headroom);
    const args: number[] = [intervalUs];
    for (const { slotAt, tokens, due } of input.reservations) {
      const charged = tpm === undefined ? 0 : windowTokens(tokens, capacity);
      args.push(Math.floor(slotAt) * 1000, charged, tpm === undefined ? 0 : tokenSpanUs(charged, capacity), due ? 1 : 0);
    }
    return Number(await this.#run(RELEASE, [this.#key(input.model)], args));
  }

  /**
   * After a 429: no worker starts a call to the model for `forMs`. Reservations made before it
   * are not revoked: a caller holding one checks `cooldownRemainingMs` before its call and
   * reserves again when it is not 0. Returns the end of the cooldown (Redis clock, epoch ms).
   */
  async coolDown(input: CoolDownInput): Promise<{ untilMs: number }> {
    if (!(input.forMs >= 0)) throw new RangeError(`forMs must be >= 0, got ${input.forMs}`);
    const reply = await this.#run(COOL_DOWN, [this.#key(input.model)], [Math.ceil(input.forMs * 1000)]);
    const [untilUs, nowUs] = integers(reply, 2, COOL_DOWN.name) as [number, number];
    this.#remember(input.model, untilUs - nowUs);
    return { untilMs: Math.ceil(untilUs / 1000) };
  }

  /** Milliseconds left of the model's cooldown (0: none): check it before starting a call reserved earlier. */
  async cooldownRemainingMs(model: string): Promise<number> {
    const reply = await this.#run(COOLDOWN_LEFT, [this.#key(model)], []);
    const [untilUs, nowUs] = integers(reply, 2, COOLDOWN_LEFT.name) as [number, number];
    const leftUs = Math.max(0, untilUs - nowUs);
    this.#remember(model, leftUs);
    return Math.ceil(leftUs / 1000);
  }

  #key(model: string): string {
    return limiterKey(this.#prefix, model);
  }

  #remember(model: string, leftUs: number): void {
    const now = Date.now();
    this.#cooldowns.set(model, { checkedAt: now, untilLocal: now + Math.max(0, leftUs) / 1000 });
  }

  /** One read for all the rows that find the cooldown stale at the same moment. */
  #refreshCooldown(model: string): Promise<number> {
    let pending = this.#cooldownReads.get(model);
    if (!pending) {
      pending = this.cooldownRemainingMs(model).finally(() => this.#cooldownReads.delete(model));
      this.#cooldownReads.set(model, pending);
    }
    return pending;
  }

  async #reserveUnlimited(model: string, maxWaitMs: number): Promise<Reservation> {
    const known = this.#cooldowns.get(model);
    const stale = !known || Date.now() - known.checkedAt >= this.#pollMs;
    if (stale && this.#pollMs !== Number.POSITIVE_INFINITY) await this.#refreshCooldown(model);
    const now = Date.now();
    const waitMs = Math.max(0, Math.ceil((this.#cooldowns.get(model)?.untilLocal ?? 0) - now));
    if (waitMs > maxWaitMs) return { reserved: false, waitMs, limitedBy: 'cooldown' };
    // No Redis time here: the slot is on this machine's clock (only waitMs matters to the caller).
    return { reserved: true, slotAt: now + waitMs, waitMs, limitedBy: waitMs > 0 ? 'cooldown' : null };
  }
}
