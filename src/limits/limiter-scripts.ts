import { LUA_PRELUDE, type LuaScript } from '../queue/lua-script.ts';
import { BUCKET_US, CREDIT_CAP_US, FIGURE_ANSWERS, LINE_IDLE_MS, WINDOW_US } from './pacing.ts';

/**
 * The model limiter's Lua, one hash per model (KEYS[1]). Times are integer microseconds of Redis'
 * clock (TIME), so workers with skewed clocks agree. Fields:
 *   req   next_request_at: earliest start of the next request (GCRA theoretical arrival time)
 *   tok   next_token_at: the same for tokens
 *   cool  cooldown_until: no start before this (a 429's retry-after, for every worker)
 *   last  the latest reserved start; starts never go backwards (FIFO, and the window needs it)
 *   b<k>  tokens reserved to start in bucket k = floor(start / BUCKET_US), for the 60 s window
 *   sum, lo, hi  the total of the b<k> fields and the lowest and highest k present
 *   lines  calls deferred past the book-ahead horizon (nothing booked) hold a ticket in their
 *         batch's line: JSON {batch: [next ticket, bookings served, last ask ms]}. Within a batch,
 *         ticket - served is how many of its own calls come before a deferred one; across batches
 *         the lines are served in turn (round robin), so a small batch's calls are not queued behind
 *         a large one's. A line none of whose calls asked for LINE_IDLE_MS is dropped.
 *   ask   the latest turn a deferred call was told (the hash is kept until then)
 *   ans   the running figure of answer tokens, in thousandths (a provider that meters usage)
 *   anc   how many answers the figure rests on (counted up to FIGURE_ANSWERS)
 *   crd   settled credit (us of token span) that could not move next_token_at back, carried to the next bookings
 * Buckets older than the window before `last` are dropped, so there are about 241 of them however
 * far ahead reservations reach, and every loop over them is short.
 * Limited-by codes: 0 none, 1 requests, 2 tokens, 3 cooldown.
 */

const COMMON = `${LUA_PRELUDE}
local WINDOW = ${WINDOW_US}
local BUCKET = ${BUCKET_US}
local key = KEYS[1]
local function bucket_field(k) return 'b' .. int_str(k) end
local function bucket_value(k) return tonumber(redis.call('HGET', key, bucket_field(k))) or 0 end
-- req, tok, cool, last and sum (0 when unset), then lo and hi (nil when no bucket is held).
local function read_state()
  local f = redis.call('HMGET', key, 'req', 'tok', 'cool', 'last', 'sum', 'lo', 'hi')
  return tonumber(f[1]) or 0, tonumber(f[2]) or 0, tonumber(f[3]) or 0, tonumber(f[4]) or 0, tonumber(f[5]) or 0, tonumber(f[6]), tonumber(f[7])
end
-- Adds delta tokens (never below 0) to the bucket of a start, if that bucket is still held; returns the window's new sum.
local function adjust_bucket(start, delta, sum)
  local field = bucket_field(math.floor(start / BUCKET))
  local held = tonumber(redis.call('HGET', key, field))
  if not held then return sum end
  local corrected = math.max(0, held + delta)
  redis.call('HSET', key, field, int_str(corrected))
  return sum + corrected - held
end
-- Keep the hash while anything in it can still matter: future times, or buckets inside a window.
local function expire(now, req, tok, cool, last)
  local horizon = math.max(req, tok, cool, last + WINDOW + BUCKET, tonumber(redis.call('HGET', key, 'ask')) or 0)
  redis.call('PEXPIRE', key, math.max(1000, math.ceil((horizon - now) / 1000) + 1000))
end
`;

/**
 * ARGV: request interval us (0: no rpm), token capacity (0: no tpm), window tokens, token span us,
 * max wait us, book-ahead us (-1: none), turn step us, ticket (-1: none), line (the call's batch).
 * Returns {outcome, start us, now us, limited-by code, answer figure in thousandths or -1, ticket or
 * -1, answers the figure rests on}. Outcome 1: booked at start. 0: nothing booked, start past max
 * wait. 2 (with a book-ahead only): nothing booked, its turn past the book-ahead; `start` is then the
 * call's turn: the first start free, and a turn step per booking still before it with the batches'
 * lines served in turn (the calls before its ticket in its own line, and as many of each other line's
 * as come before its place, at most that line's length). The call keeps its ticket (a new one at its
 * line's end when it held none) to ask again with: deferred calls ask again in the order of their
 * turns, not all at once, and one asking before its turn (calls of other batches came meanwhile) is
 * told its turn again. While the first start free is within a quarter of the book-ahead (calls run
 * short), whoever asks is booked.
 */
export const RESERVE: LuaScript = {
  name: 'limiter_reserve',
  numberOfKeys: 1,
  lua: `${COMMON}
local req_iv = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local charged = tonumber(ARGV[3])
local span = tonumber(ARGV[4])
local max_wait = tonumber(ARGV[5])
local book_ahead = tonumber(ARGV[6])
local turn_step = tonumber(ARGV[7])
local ticket = tonumber(ARGV[8])
local line_id = ARGV[9]
local now = now_us()
local req, tok, cool, last, sum, lo, hi = read_state()

-- Buckets out of the window of every start still possible (none is before now, last or cool) go.
if lo then
  local keep_from = math.floor((math.max(now, last, cool) - WINDOW) / BUCKET)
  if keep_from > lo then
    for k = lo, math.min(hi, keep_from - 1) do
      local field = bucket_field(k)
      sum = sum - (tonumber(redis.call('HGET', key, field)) or 0)
      redis.call('HDEL', key, field)
    end
    if keep_from > hi then
      lo = nil
      hi = nil
      sum = 0
      redis.call('HDEL', key, 'lo', 'hi')
      redis.call('HSET', key, 'sum', 0)
    else
      lo = keep_from
      redis.call('HSET', key, 'lo', int_str(lo), 'sum', int_str(sum))
    end
  end
end

local start, by = now, 0
local function at_least(t, code)
  if t > start then
    start = t
    by = code
  end
end
at_least(cool, 3)
if req_iv > 0 then at_least(req, 1) end
if cap > 0 then
  at_least(tok, 2)
  at_least(last, 2)
  -- The window before start holds the buckets k >= floor((start - WINDOW) / BUCKET); all present
  -- buckets are at or before start. Drop the oldest ones until this request fits.
  if lo then
    local from = math.floor((start - WINDOW) / BUCKET)
    local held = sum
    for k = lo, math.min(hi, from - 1) do held = held - bucket_value(k) end
    local excess = held + charged - cap
    if excess > 0 then
      for k = math.max(lo, from), hi do
        excess = excess - bucket_value(k)
        if excess <= 0 then
          at_least((k + 1) * BUCKET + WINDOW, 2)
          break
        end
      end
    end
  end
else
  at_least(last, 1)
end
-- After a 429, the pace restarts at the cooldown's end: a start behind it that waits at least as
-- long for the cooldown as for the pace after it waits for the provider's limit, not for rpm/tpm.
if by ~= 3 and cool > now and cool - now >= start - cool then by = 3 end

local figure = tonumber(redis.call('HGET', key, 'ans')) or -1
local answers = tonumber(redis.call('HGET', key, 'anc')) or 0
if start - now > max_wait then return {0, start, now, by, figure, -1, answers} end
if book_ahead >= 0 then
  -- The batches' lines of calls deferred past the book-ahead: {next ticket, bookings served, last ask ms} per batch.
  local lines = {}
  local stored = redis.call('HGET', key, 'lines')
  if stored then lines = cjson.decode(stored) end
  local now_ms = math.floor(now / 1000)
  -- A line none of whose calls asked for a while is dropped: its batch left (cancelled, its rows gone
  -- to fallbacks or the cache) or its workers stopped; a call of it that comes back takes a new ticket.
  local idle_ms = ${LINE_IDLE_MS} + math.floor(math.max(0, start - now) / 1000)
  for id, held in pairs(lines) do
    if now_ms - held[3] > idle_ms then lines[id] = nil end
  end
  local mine = lines[line_id]
  -- A ticket from before the line was dropped or forgotten (a stop) is no place: a new one is given if deferred.
  local fresh = mine == nil or ticket < 0 or ticket >= mine[1]
  -- Calls of its own batch before it, then the others' as if the lines were served in turn: as many
  -- of each other batch's waiting calls as come before its place, at most all of them.
  local place = 0
  if mine then place = math.max(0, (fresh and mine[1] or ticket) - mine[2]) end
  local before = place
  for id, held in pairs(lines) do
    if id ~= line_id then before = before + math.min(place, math.max(0, held[1] - held[2])) end
  end
  local turn = start + before * turn_step
  -- Calls running short (the next start within a quarter of the book-ahead): whoever asks is booked,
  -- so that the limit is used while the calls whose turn it is are late or gone.
  local starved = start - now <= book_ahead / 4
  if turn - now > book_ahead and not starved then
    if turn - now > max_wait then return {0, turn, now, by, figure, -1, answers} end
    if fresh then
      if not mine then
        mine = {0, 0, now_ms}
        lines[line_id] = mine
      end
      ticket = mine[1]
      mine[1] = mine[1] + 1
    end
    mine[3] = now_ms
    redis.call('HSET', key, 'lines', cjson.encode(lines), 'ask', int_str(math.max(turn, tonumber(redis.call('HGET', key, 'ask')) or 0)))
    expire(now, req, tok, cool, last)
    return {2, turn, now, by, figure, ticket, answers}
  end
  if mine and not fresh then
    -- A booking counts one. Rows ask again out of their order (each is told its turn a little early),
    -- and counting every ticket before each booking soon told the whole line its turn was now. Only
    -- when calls ran short does a ticket's booking count the tickets before it, those of rows that
    -- left the line (a fallback, the cache) among them, which would otherwise keep the turns told late.
    mine[2] = starved and math.max(mine[2] + 1, ticket + 1) or mine[2] + 1
    -- Served past its last ticket (bookings out of order): the next ticket is at the line's head.
    mine[1] = math.max(mine[1], mine[2])
    mine[3] = now_ms
  end
  if next(lines) ~= nil then redis.call('HSET', key, 'lines', cjson.encode(lines)) elseif stored then redis.call('HDEL', key, 'lines') end
end

last = start
redis.call('HSET', key, 'last', int_str(last))
if req_iv > 0 then
  req = start + req_iv
  redis.call('HSET', key, 'req', int_str(req))
end
if cap > 0 then
  -- Credit a settle could not give back (next_token_at goes before neither the latest start nor now) shortens this span.
  local credit = tonumber(redis.call('HGET', key, 'crd')) or 0
  local used = math.min(credit, span)
  if used > 0 then redis.call('HSET', key, 'crd', int_str(credit - used)) end
  tok = start + span - used
  local k = math.floor(start / BUCKET)
  if charged > 0 then
    redis.call('HINCRBY', key, bucket_field(k), charged)
    sum = sum + charged
    if not lo then lo = k end
    if not hi or k > hi then hi = k end
    redis.call('HSET', key, 'lo', int_str(lo), 'hi', int_str(hi), 'sum', int_str(sum))
  end
  redis.call('HSET', key, 'tok', int_str(tok))
end
expire(now, req, tok, cool, last)
return {1, start, now, by, figure, -1, answers}
`,
};

/**
 * After a call: moves next_token_at by the token span difference (never before now) and corrects
 * the start's bucket by the window tokens difference (never below 0). With answer tokens (>= 0),
 * moves the running figure of answers toward them (the first sets it). A key that expired stays gone.
 * ARGV: span delta us, window tokens delta, start us, answer tokens (-1: none), figure weight.
 */
export const SETTLE: LuaScript = {
  name: 'limiter_settle',
  numberOfKeys: 1,
  lua: `${COMMON}
if redis.call('EXISTS', key) == 0 then return 0 end
local span_delta = tonumber(ARGV[1])
local tokens_delta = tonumber(ARGV[2])
local start = tonumber(ARGV[3])
local answer = tonumber(ARGV[4])
local weight = tonumber(ARGV[5])
local now = now_us()
local req, tok, cool, last, sum = read_state()
-- No start comes before the latest booked one or now. While calls are paced (next_token_at ahead),
-- the part of a credit that cannot move next_token_at back past them is kept (up to CREDIT_CAP) for
-- the next bookings, and a debit is paid from it first: otherwise a call that used less than it
-- booked gave nothing back whenever a later call had booked meanwhile, while one that used more
-- always took its extra, and the pace ran below the limit. Idle, no new credit is kept (no burst);
-- what was kept before goes to the next booking, at most CREDIT_CAP of span, and the window still bounds the minute.
local credit = tonumber(redis.call('HGET', key, 'crd')) or 0
if span_delta > 0 and credit > 0 then
  local paid = math.min(credit, span_delta)
  credit = credit - paid
  span_delta = span_delta - paid
end
if span_delta < 0 and tok > now then
  local floor = math.max(now, last)
  credit = math.min(${CREDIT_CAP_US}, credit + math.max(0, -span_delta - math.max(0, tok - floor)))
  tok = math.max(tok + span_delta, floor)
else
  tok = math.max(tok + span_delta, now)
end
redis.call('HSET', key, 'tok', int_str(tok), 'crd', int_str(credit), 'sum', int_str(adjust_bucket(start, tokens_delta, sum)))
if answer >= 0 then
  -- A plain mean of the first answers (an exponential one started at the first answer was that one
  -- answer for a while, and the first seconds' bookings were made at it), then the exponential mean.
  local figure = tonumber(redis.call('HGET', key, 'ans')) or 0
  local answers = math.min(${FIGURE_ANSWERS}, (tonumber(redis.call('HGET', key, 'anc')) or 0) + 1)
  figure = figure + (answer * 1000 - figure) * math.max(weight, 1 / answers)
  redis.call('HSET', key, 'ans', int_str(math.floor(figure + 0.5)), 'anc', int_str(answers))
end
expire(now, req, tok, cool, last)
return 1
`,
};

/**
 * Gives back reservations nobody will use (rows a stopped run took off the queue; a row at its slot
 * that will not call, flagged due): each one still ahead, or due, moves next_request_at back by the request interval, next_token_at by its token span, the
 * latest start by the larger of the two, never before now, and takes its tokens out of its bucket.
 * Exact when they were the latest reservations (one batch on the model); with another batch's
 * reservations among them, new ones may start beside those for a while, which a 429 would cool.
 * With `forget turns` (a stop), the stopped batch's line of deferred calls is dropped too: its rows
 * held those tickets, and they would otherwise count before other batches' calls (and a resume's)
 * until the line went idle. Other batches' lines keep their places.
 * ARGV: request interval us (0: no rpm), forget turns (1/0), the line (batch) whose turns to forget,
 * then per reservation: start us, window tokens, token span us, due (1/0).
 * Returns the number of reservations given back.
 */
export const RELEASE: LuaScript = {
  name: 'limiter_release',
  numberOfKeys: 1,
  lua: `${COMMON}
if redis.call('EXISTS', key) == 0 then return 0 end
local req_iv = tonumber(ARGV[1])
if ARGV[2] == '1' then
  local stored = redis.call('HGET', key, 'lines')
  if stored then
    local lines = cjson.decode(stored)
    lines[ARGV[3]] = nil
    if next(lines) ~= nil then redis.call('HSET', key, 'lines', cjson.encode(lines)) else redis.call('HDEL', key, 'lines') end
  end
end
local now = now_us()
local req, tok, cool, last, sum = read_state()
local req_back, tok_back, last_back, released = 0, 0, 0, 0
for i = 4, #ARGV, 4 do
  local start = tonumber(ARGV[i])
  if start > now or ARGV[i + 3] == '1' then
    local charged = tonumber(ARGV[i + 1])
    local span = tonumber(ARGV[i + 2])
    released = released + 1
    req_back = req_back + req_iv
    tok_back = tok_back + span
    last_back = last_back + math.max(req_iv, span)
    if charged > 0 then sum = adjust_bucket(start, -charged, sum) end
  end
end
if released == 0 then return 0 end
if req > now then req = math.max(now, req - req_back) end
if tok > now then tok = math.max(now, tok - tok_back) end
if last > now then last = math.max(now, last - last_back) end
redis.call('HSET', key, 'req', int_str(req), 'tok', int_str(tok), 'last', int_str(last), 'sum', int_str(sum))
expire(now, req, tok, cool, last)
return released
`,
};

/** ARGV: cooldown length us. Returns {cooldown_until us, now us}. */
export const COOL_DOWN: LuaScript = {
  name: 'limiter_cool_down',
  numberOfKeys: 1,
  lua: `${COMMON}
local now = now_us()
local req, tok, cool, last = read_state()
cool = math.max(cool, now + tonumber(ARGV[1]))
redis.call('HSET', key, 'cool', int_str(cool))
expire(now, req, tok, cool, last)
return {cool, now}
`,
};

/** Returns {cooldown_until us (0: none), now us}. */
export const COOLDOWN_LEFT: LuaScript = {
  name: 'limiter_cooldown_left',
  numberOfKeys: 1,
  lua: `${LUA_PRELUDE}
return {tonumber(redis.call('HGET', KEYS[1], 'cool')) or 0, now_us()}
`,
};
