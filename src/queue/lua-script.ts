import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { whileRedisRefuses, type RefusalWait } from './redis-outage.ts';

/**
 * A Lua script run by EVALSHA, falling back to EVAL when the server does not know it yet
 * (NOSCRIPT): one round trip per call, and only the first call carries the script's text. Plain
 * EVALSHA (not ioredis' defineCommand) so it batches with auto-pipelining like any other command.
 */

export type RedisClient = Redis | Cluster;

export interface LuaScript {
  /** A name for messages. */
  name: string;
  numberOfKeys: number;
  lua: string;
}

const shas = new WeakMap<LuaScript, string>();

function shaOf(script: LuaScript): string {
  let sha = shas.get(script);
  if (!sha) {
    sha = createHash('sha1').update(script.lua).digest('hex');
    shas.set(script, sha);
  }
  return sha;
}

/**
 * Lua prelude for every script that reads the clock. Redis 7 replicates a script's effects, so
 * TIME may precede writes; older servers (5.x, 6.x) need the explicit switch.
 */
export const LUA_PRELUDE = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- Integers up to 2^53 as exact decimal strings (tostring would print 1.8e+15).
local function int_str(x) return string.format('%.0f', x) end
`;

export async function runScript(redis: RedisClient, script: LuaScript, keys: readonly string[], args: readonly (string | number | Buffer)[]): Promise<unknown> {
  if (keys.length !== script.numberOfKeys) throw new Error(`${script.name} takes ${script.numberOfKeys} keys, got ${keys.length}`);
  try {
    return await redis.evalsha(shaOf(script), keys.length, ...keys, ...args);
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
    return redis.eval(script.lua, keys.length, ...keys, ...args);
  }
}

export type ScriptRunner = (script: LuaScript, keys: readonly string[], args: readonly (string | number | Buffer)[]) => Promise<unknown>;

/**
 * runScript on one connection. With `refusals`, a script that a full Redis refuses is run again
 * until Redis takes it (whileRedisRefuses, said as `source`): Redis refuses a script at its first
 * write, so a refused one changed nothing and is safe to run again.
 */
export function scriptRunner(redis: RedisClient, refusals?: RefusalWait, source = 'a script'): ScriptRunner {
  if (!refusals) return (script, keys, args) => runScript(redis, script, keys, args);
  return (script, keys, args) => whileRedisRefuses(source, () => runScript(redis, script, keys, args), refusals);
}

/** The reply of a script that returns an array of integers. */
export function integers(reply: unknown, length: number, script: string): number[] {
  if (!Array.isArray(reply) || reply.length < length || !reply.every((value) => typeof value === 'number')) {
    throw new Error(`${script}: unexpected reply ${JSON.stringify(reply)}`);
  }
  return reply as number[];
}
