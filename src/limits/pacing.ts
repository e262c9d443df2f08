/**
 * The arithmetic behind the model limiter (model-limiter.ts), in whole microseconds so the Lua side
 * adds exact integers and never drifts. Pure functions, unit-tested on their own.
 *
 * Why this pacing keeps a provider that counts over a rolling 60 s window happy:
 *
 * - Requests: strict GCRA spacing, no burst. Reserved starts are at least
 *   T = 60 s / (rpm x headroom) apart (rounded up to a microsecond), so any 60 s window holds at
 *   most ceil(rpm x headroom) of them, which is at most rpm. A burst (letting B requests go at once
 *   when idle) would let B - 1 extra starts into some window unless the pace were slowed to pay for
 *   them; it only helps the first few calls after an idle spell, and a batch runner is throughput
 *   bound with many calls in flight, so the first call goes at once and the rest follow at the pace.
 *   The unused (1 - headroom) share then absorbs jitter between a reserved start and the request's
 *   arrival at the provider (delayed jobs waking late, network): at rpm 600 and headroom 0.98 that
 *   is 12 requests, about 1.2 s of slack.
 *
 * - Tokens: GCRA pacing alone is not enough. Spacing each request by its own tokens' share of the
 *   minute bounds a 60 s window to capacity + the last request's tokens (a window opens just after
 *   one request and closes just after another ~60 s later, catching both): 2 requests of 900 tokens
 *   at tpm 1000 would be 55 s apart and both in one window. So token reservations also keep a
 *   window of what was reserved, in 250 ms buckets by reserved start, and a request starts only where
 *   the 60 s window before it (each bucket counted until 60.25 s after the bucket opened, so every
 *   request is counted for at least its full 60 s) plus its own tokens fits in
 *   capacity = floor(tpm x headroom). Pacing still spreads the calls out, which keeps a window's
 *   edges from seeing bursts; the bucket window makes the bound exact.
 *
 * - A request above the whole capacity would wait forever; it is charged as the whole capacity
 *   instead, so it gets a window to itself (a provider takes it if it is within tpm, and answers
 *   "request too large" otherwise, which no waiting would fix).
 *
 * - A provider that meters what calls use (`tpm_counts: usage`) counts prompt + answer, not
 *   prompt + max_tokens. The bound above holds for what was booked; to pace by use, a call is booked
 *   at prompt + the endpoint's expected answer (`expectedAnswerTokens`: a running figure of what
 *   answers used beyond their prompt's estimate, capped at max_tokens; max_tokens until one is
 *   known) and its booking is settled to what it used, up or down, once it ends. A settle changes
 *   the bucket the call started in, so the window again holds what the provider counted; and no
 *   call books more than BOOK_AHEAD_US ahead (a later one is told when to ask again, nothing booked:
 *   starts never go backwards, so credit settled after a booking is lost to it, and bookings made
 *   minutes ahead, as a queued batch's parked rows did, kept the pace at max_tokens). So at any
 *   time only the calls booked in the last BOOK_AHEAD_US and those in flight can be counted wrong,
 *   by their answers' deviation from the figure; `limits.headroom` absorbs that, and a 429 cools it.
 *   A credit that cannot move next_token_at back (no start goes before the latest booked one) is
 *   carried to the next bookings, up to CREDIT_CAP_US, and a debit is paid from it first, so the
 *   pace follows the calls' use and not use plus its upward deviations. This changes the spacing
 *   only: the bucket window still holds every start's settled tokens and still bounds the minute.
 *   Before the endpoint's first answer, calls are booked at max_tokens, and only one due now is;
 *   the figure is a plain mean of the first FIGURE_ANSWERS answers, and calls book ahead a share of
 *   BOOK_AHEAD_US per answer it rests on until then.
 */

const WINDOW_MS = 60_000;
export const WINDOW_US = WINDOW_MS * 1000;
/**
 * Width of one bucket of the tokens window. A bucket is held one bucket longer than the window, so
 * the usable share of tpm is headroom x 60 / (60 + width): 1 s buckets capped a binding tpm at 96.4%
 * of the limit (at headroom 0.98); 250 ms buckets allow 97.6%, at up to 241 buckets per model.
 */
export const BUCKET_US = 250_000;

/**
 * How far ahead a call to a rate-limited model may book its start. Long enough that the calls booked
 * ahead and in flight keep a binding limit busy; short, so that where the provider meters usage what
 * they book (the figure's guess) is soon settled to what they used and the figure follows the
 * answers, and so that batches take turns for the model's slots: a call beyond it is told its turn
 * with the batches' lines served in turn (limiter-scripts.ts RESERVE), where slots booked minutes
 * ahead, first come, first served, kept a small batch posted beside a large one waiting until the
 * large one's queued rows had all started (QA: 20 rows waited 94 s behind 1,000 at 600 rpm).
 */
export const BOOK_AHEAD_US = 4_000_000;

/**
 * A batch's line of deferred calls that no call of it asked in for this long (beyond how far the
 * model's next free start is) is dropped: its batch left (cancelled, its rows gone to a fallback or
 * the cache) or its workers stopped. A line's first call asks about every BOOK_AHEAD_US / 2.
 */
export const LINE_IDLE_MS = 30_000;

/**
 * A deferred call is told its turn as if each booking before it took this share of its own span at
 * the figure: bookings differ, and the figure moves, and a call that asks again a little early is
 * told again (keeping its place), while one that comes late leaves the limit unused.
 */
export const TURN_STEP_SHARE = 0.8;

/**
 * Most settled credit (token span, us) kept for the next bookings when it could not move the next
 * start back (limiter-scripts.ts SETTLE): a second of the minute, so that it makes no burst.
 */
export const CREDIT_CAP_US = 1_000_000;

/** Weight of the newest answer in the running figure of answers' tokens (an exponential mean). */
export const ANSWER_FIGURE_WEIGHT = 0.1;

/**
 * The figure is a plain mean of the first answers, up to this many (then the exponential mean), and
 * calls book only this share of BOOK_AHEAD_US ahead per answer it rests on: bookings made on the first
 * answer or two, one of 120 tokens say where they average 70, set the pace of their seconds.
 */
export const FIGURE_ANSWERS = 10;

/**
 * The answer tokens a call is booked for where the provider meters usage: the endpoint's running
 * figure, at most what the call may use (max_tokens); max_tokens while no figure is known.
 */
export function expectedAnswerTokens(figure: number | null, maxAnswerTokens: number): number {
  if (figure === null || !(figure >= 0)) return maxAnswerTokens;
  return Math.min(maxAnswerTokens, Math.ceil(figure));
}

function checkHeadroom(headroom: number): void {
  if (!(headroom > 0 && headroom <= 1)) throw new RangeError(`headroom must be in (0, 1], got ${headroom}`);
}

function checkPositive(name: string, value: number): void {
  if (!(Number.isFinite(value) && value > 0)) throw new RangeError(`${name} must be a positive number, got ${value}`);
}

/** Microseconds between two reserved request starts: 60 s / (rpm x headroom), rounded up. */
export function requestIntervalUs(rpm: number, headroom: number): number {
  checkPositive('rpm', rpm);
  checkHeadroom(headroom);
  return Math.ceil(WINDOW_US / (rpm * headroom));
}

/** Tokens the limiter hands out per 60 s window: floor(tpm x headroom), at least 1. */
export function tokenCapacity(tpm: number, headroom: number): number {
  checkPositive('tpm', tpm);
  checkHeadroom(headroom);
  return Math.max(1, Math.floor(tpm * headroom));
}

/** What a request of `tokens` is charged in the window: its tokens, at most the whole capacity. */
export function windowTokens(tokens: number, capacity: number): number {
  if (!(Number.isFinite(tokens) && tokens >= 0)) throw new RangeError(`tokens must be a number >= 0, got ${tokens}`);
  return Math.min(Math.ceil(tokens), capacity);
}

/** Microseconds of the minute a request's (window) tokens take at the paced rate, rounded up. */
export function tokenSpanUs(charged: number, capacity: number): number {
  return Math.ceil((charged * WINDOW_US) / capacity);
}

/**
 * The longest x-ratelimit-reset-requests / -tokens of an answer, in ms; only of the limits it says
 * are used up (x-ratelimit-remaining-* 0) when `exhaustedOnly`. Null when it sent none.
 */
export function rateLimitResetMs(headers: Headers | undefined, exhaustedOnly: boolean): number | null {
  let wait: number | null = null;
  for (const kind of ['requests', 'tokens']) {
    if (exhaustedOnly && headers?.get(`x-ratelimit-remaining-${kind}`)?.trim() !== '0') continue;
    const reset = parseResetDuration(headers?.get(`x-ratelimit-reset-${kind}`) ?? '');
    if (reset !== null) wait = Math.max(wait ?? 0, reset);
  }
  return wait;
}

/**
 * Milliseconds from an x-ratelimit-reset-* header: OpenAI-style durations ("1s", "6m0s", "20ms",
 * "1h2m3.5s") or plain seconds ("0.5"). Null when it is neither.
 */
export function parseResetDuration(value: string): number | null {
  const text = value.trim();
  if (text === '') return null;
  if (/^\d+(\.\d+)?$/.test(text)) return Math.ceil(Number(text) * 1000);
  const unitMs: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };
  const part = /(\d+(?:\.\d+)?)(ms|h|m|s)/gy;
  let total = 0;
  let consumed = 0;
  for (let match = part.exec(text); match !== null; match = part.exec(text)) {
    total += Number(match[1]) * (unitMs[match[2] ?? ''] ?? Number.NaN);
    consumed = part.lastIndex;
  }
  return consumed === text.length && Number.isFinite(total) ? Math.ceil(total) : null;
}
