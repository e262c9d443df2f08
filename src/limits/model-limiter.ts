import { COOL_DOWN, COOLDOWN_LEFT, RELEASE, RESERVE, SETTLE } from './limiter-scripts.ts';
import { integers, scriptRunner, type RedisClient, type ScriptRunner } from '../queue/lua-script.ts';
import type { RefusalWait } from '../queue/redis-outage.ts';
import { ANSWER_FIGURE_WEIGHT, BOOK_AHEAD_US, FIGURE_ANSWERS, TURN_STEP_SHARE, expectedAnswerTokens, requestIntervalUs, tokenCapacity, tokenSpanUs, windowTokens } from './pacing.ts';

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
  /**
   * The provider meters what calls use (`tpm_counts: usage`), and this is the prompt's share of
   * `tokens`: with a tpm, the call is booked at its prompt + the endpoint's expected answer (see
   * pacing.ts). Metered or not, a start more than BOOK_AHEAD_US away is not booked (`deferred`).
   */
  meteredPromptTokens?: number | undefined;
  /** The ticket an earlier ask of this call was deferred with (`deferred`): it keeps its place among the deferred calls. */
  turnTicket?: number | undefined;
  /** The line the call's deferred turn is kept in: its batch. Batches' lines take turns for the model's slots. */
  line?: string | undefined;
  /** Reserve nothing when the start would be further away than this. */
  maxWaitMs: number;
  /** Share of rpm/tpm to use, in (0, 1] (`limits.headroom`). */
  headroom: number;
}

export type Reservation =
  /**
   * Start the call at `slotAt` (Redis clock, epoch ms), i.e. in `waitMs`; `limitedBy` says what made
   * it wait. `tokens`: what was booked, which the call settles (or gives back) from.
   */
  | { reserved: true; slotAt: number; waitMs: number; limitedBy: LimitKind | null; tokens: number }
  /**
   * Nothing reserved: the earliest start is `waitMs` away, held back by `limitedBy`. `deferred`:
   * it is within the max wait, but its turn is further than a call books ahead; `waitMs` is then when to
   * ask again (half the book-ahead before the call's turn, so that it is booked then), `ticket` the
   * place to ask again with (`turnTicket`), and `tokens` what it would be booked for now.
   */
  | { reserved: false; waitMs: number; limitedBy: LimitKind; deferred?: true; ticket?: number; tokens?: number };

export interface SettleInput {
  model: string;
  tpm?: number | undefined;
  headroom: number;
  /** The reservation's `slotAt`: the tokens are corrected in the window where they were reserved. */
  slotAt: number;
  estimatedTokens: number;
  /** What the call used (prompt + completion); 0 for a call that never reached the provider. */
  actualTokens: number;
  /**
   * An answered call to a provider that meters usage: the prompt's estimate it was booked with, so
   * that what it used beyond it goes into the endpoint's running figure of answers.
   */
  meteredPromptTokens?: number | undefined;
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
  /** A stop: the turns handed to this line's (batch's) deferred calls go too (limiter-scripts.ts RELEASE). */
  forgetTurns?: { line: string } | undefined;
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
  /**
   * How far ahead a call whose provider counts what it requests (rpm, `tpm_counts: requested`) may
   * book its start; default BOOK_AHEAD_US. Infinity: a start any distance within the max wait is
   * booked, first come, first served, with no turns between batches (the pacing checked over
   * minutes of bookings made at once, in tests).
   */
  bookAheadMs?: number;
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
  /** BOOK_AHEAD_US unless the options said otherwise; -1: none. */
  readonly #requestedBookAheadUs: number;
  readonly #cooldowns = new Map<string, KnownCooldown>();
  readonly #cooldownReads = new Map<string, Promise<number>>();
  /** Each endpoint's running figure of answer tokens and how many answers it rests on, as Redis last said them (a reservation's reply). */
  readonly #figures = new Map<string, number>();
  readonly #figureAnswers = new Map<string, number>();

  constructor(redis: RedisClient, options: ModelLimiterOptions) {
    this.#run = scriptRunner(redis, options.refusals, 'the rate limiter');
    this.#prefix = options.prefix;
    this.#pollMs = options.cooldownPollMs ?? 1000;
    const bookAheadMs = options.bookAheadMs ?? BOOK_AHEAD_US / 1000;
    if (!(bookAheadMs >= 0)) throw new RangeError(`bookAheadMs must be >= 0, got ${bookAheadMs}`);
    this.#requestedBookAheadUs = bookAheadMs === Number.POSITIVE_INFINITY ? -1 : Math.floor(bookAheadMs * 1000);
  }

  async reserve(input: ReserveInput): Promise<Reservation> {
    const { rpm, tpm, headroom } = input;
    if (!(input.maxWaitMs >= 0)) throw new RangeError(`maxWaitMs must be >= 0, got ${input.maxWaitMs}`);
    if (rpm === undefined && tpm === undefined) return this.#reserveUnlimited(input.model, input.maxWaitMs, input.tokens);
    const intervalUs = rpm === undefined ? 0 : requestIntervalUs(rpm, headroom);
    const capacity = tpm === undefined ? 0 : tokenCapacity(tpm, headroom);
    const metered = tpm === undefined ? undefined : input.meteredPromptTokens;
    const tokens = metered === undefined ? input.tokens : this.#meteredBooking(input.model, metered, input.tokens);
    const charged = tpm === undefined ? 0 : windowTokens(tokens, capacity);
    const spanUs = tpm === undefined ? 0 : tokenSpanUs(charged, capacity);
    // A deferred call's turn comes a turn step per booking before it: a booking's interval or span (at the figure where the provider meters usage, its prompt alone while none is known), a little short, since a turn told too soon costs one more ask and one too late the limit's use.
    const turnTokens = metered === undefined ? charged : windowTokens(metered + Math.min(input.tokens - metered, this.#figures.get(input.model) ?? 0), capacity);
    const turnUs = Math.floor(TURN_STEP_SHARE * Math.max(intervalUs, tpm === undefined ? 0 : tokenSpanUs(turnTokens, capacity)));
    // Before any answer has said how long answers run, a metered call is booked at max_tokens: only one due now is, so that the first answers set the figure before a few seconds of bookings at max_tokens hold up the calls behind them. On few answers, a shorter way ahead.
    const answers = this.#figures.has(input.model) ? (this.#figureAnswers.get(input.model) ?? 0) : 0;
    const bookAheadUs = metered === undefined ? this.#requestedBookAheadUs : Math.floor((BOOK_AHEAD_US * Math.min(FIGURE_ANSWERS, answers)) / FIGURE_ANSWERS);
    const args = [intervalUs, capacity, charged, spanUs, Math.floor(input.maxWaitMs * 1000), bookAheadUs, turnUs, input.turnTicket ?? -1, input.line ?? ''];
    const reply = await this.#run(RESERVE, [this.#key(input.model)], args);
    const [outcome, startUs, nowUs, code, figure, ticket, figureAnswers] = integers(reply, 7, RESERVE.name) as [number, number, number, number, number, number, number];
    if (figure >= 0) {
      this.#figures.set(input.model, figure / 1000);
      this.#figureAnswers.set(input.model, figureAnswers);
    }
    const waitMs = Math.max(0, Math.ceil((startUs - nowUs) / 1000));
    const limitedBy = LIMITED_BY[code] ?? null;
    if (outcome === 1) return { reserved: true, slotAt: Math.floor(startUs / 1000), waitMs, limitedBy: waitMs > 0 ? limitedBy : null, tokens };
    if (outcome === 2) return { reserved: false, waitMs: Math.max(0, waitMs - bookAheadUs / 2000), limitedBy: limitedBy ?? (tpm === undefined ? 'requests' : 'tokens'), deferred: true, ticket, tokens };
    return { reserved: false, waitMs, limitedBy: limitedBy ?? 'requests' };
  }

  /**
   * Corrects a reservation's tokens to what the call used: unused tokens come back (the next
   * reservations may start sooner, never before now), extra ones push them later. An answered
   * metered call also moves the endpoint's running figure of answers. No round trip when the model
   * has no tpm, or the estimate was exact and there is no figure to move.
   */
  async settle(input: SettleInput): Promise<void> {
    if (input.tpm === undefined) return;
    const capacity = tokenCapacity(input.tpm, input.headroom);
    const estimated = windowTokens(input.estimatedTokens, capacity);
    const actual = windowTokens(input.actualTokens, capacity);
    const answer = input.meteredPromptTokens === undefined ? -1 : Math.max(0, Math.round(input.actualTokens - input.meteredPromptTokens));
    if (estimated === actual && answer < 0) return;
    const spanDelta = tokenSpanUs(actual, capacity) - tokenSpanUs(estimated, capacity);
    await this.#run(SETTLE, [this.#key(input.model)], [spanDelta, actual - estimated, Math.floor(input.slotAt) * 1000, answer, ANSWER_FIGURE_WEIGHT]);
  }

  /** What a metered call books: its prompt and the answer expected of it (pacing.ts), the figure as last heard from Redis. */
  #meteredBooking(model: string, promptTokens: number, tokens: number): number {
    return promptTokens + expectedAnswerTokens(this.#figures.get(model) ?? null, Math.max(0, tokens - promptTokens));
  }

  /**
   * Gives back reservations that no call will use (rows taken off the queue by a stopped run, a row
   * that came to its slot and will not call), so the next ones do not wait behind them. Those
   * already started are left as they are, unless `due`. Returns how many were given back; no round
   * trip for a model without limits.
   */
  async release(input: ReleaseInput): Promise<number> {
    const { rpm, tpm, headroom } = input;
    if ((rpm === undefined && tpm === undefined) || (input.reservations.length === 0 && !input.forgetTurns)) return 0;
    const intervalUs = rpm === undefined ? 0 : requestIntervalUs(rpm, headroom);
    const capacity = tpm === undefined ? 0 : tokenCapacity(tpm, headroom);
    const args: (number | string)[] = [intervalUs, input.forgetTurns ? 1 : 0, input.forgetTurns?.line ?? ''];
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

  async #reserveUnlimited(model: string, maxWaitMs: number, tokens: number): Promise<Reservation> {
    const known = this.#cooldowns.get(model);
    const stale = !known || Date.now() - known.checkedAt >= this.#pollMs;
    if (stale && this.#pollMs !== Number.POSITIVE_INFINITY) await this.#refreshCooldown(model);
    const now = Date.now();
    const waitMs = Math.max(0, Math.ceil((this.#cooldowns.get(model)?.untilLocal ?? 0) - now));
    if (waitMs > maxWaitMs) return { reserved: false, waitMs, limitedBy: 'cooldown' };
    // No Redis time here: the slot is on this machine's clock (only waitMs matters to the caller).
    return { reserved: true, slotAt: now + waitMs, waitMs, limitedBy: waitMs > 0 ? 'cooldown' : null, tokens };
  }
}
