import { LUA_PRELUDE, type LuaScript } from '../queue/lua-script.ts';
import { BUCKET_US, WINDOW_US } from './pacing.ts';

/**
 * The model limiter's Lua, one hash per model (KEYS[1]). Times are integer microseconds of Redis'
 * clock (TIME), so workers with skewed clocks agree. Fields:
 *   req   next_request_at: earliest start of the next request (GCRA theoretical arrival time)
 *   tok   next_token_at: the same for tokens
 *   cool  cooldown_until: no start before this (a 429's retry-after, for every worker)
 *   last  the latest reserved start; starts never go backwards (FIFO, and the window needs it)
 *   b<k>  tokens reserved to start in bucket k = floor(start / BUCKET_US), for the 60 s window
 *   sum, lo, hi  the total of the b<k> fields and the lowest and highest k present
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
  local horizon = math.max(req, tok, cool, last + WINDOW + BUCKET)
  redis.call('PEXPIRE', key, math.max(1000, math.ceil((horizon - now) / 1000) + 1000))
end
`;

/**
 * ARGV: request interval us (0: no rpm), token capacity (0: no tpm), window tokens, token span us,
 * max wait us. Returns {reserved 0/1, start us, now us, limited-by code}.
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

if start - now > max_wait then return {0, start, now, by} end

last = start
redis.call('HSET', key, 'last', int_str(last))
if req_iv > 0 then
  req = start + req_iv
  redis.call('HSET', key, 'req', int_str(req))
end
if cap > 0 then
  tok = start + span
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
return {1, start, now, by}
`,
};

/**
 * After a call: moves next_token_at by the token span difference (never before now) and corrects
 * the start's bucket by the window tokens difference (never below 0). A key that expired stays gone.
 * ARGV: span delta us, window tokens delta, start us.
 */
export const SETTLE: LuaScript = {
  name: 'limiter_settle',
  numberOfKeys: 1,
  lua: `${COMMON}
if redis.call('EXISTS', key) == 0 then return 0 end
local span_delta = tonumber(ARGV[1])
local tokens_delta = tonumber(ARGV[2])
local start = tonumber(ARGV[3])
local now = now_us()
local req, tok, cool, last, sum = read_state()
tok = math.max(tok + span_delta, now)
redis.call('HSET', key, 'tok', int_str(tok), 'sum', int_str(adjust_bucket(start, tokens_delta, sum)))
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
 * ARGV: request interval us (0: no rpm), then per reservation: start us, window tokens, token span us, due (1/0).
 * Returns the number of reservations given back.
 */
export const RELEASE: LuaScript = {
  name: 'limiter_release',
  numberOfKeys: 1,
  lua: `${COMMON}
if redis.call('EXISTS', key) == 0 then return 0 end
local req_iv = tonumber(ARGV[1])
local now = now_us()
local req, tok, cool, last, sum = read_state()
local req_back, tok_back, last_back, released = 0, 0, 0, 0
for i = 2, #ARGV, 4 do
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
