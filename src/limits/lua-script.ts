import type { Cluster, Redis } from 'ioredis';

/**
 * A Lua script run through ioredis' `defineCommand`: EVALSHA, falling back to EVAL once per
 * connection when the server does not know the script (NOSCRIPT), so each call is one round trip
 * and only the first on a connection carries the script's text.
 */

export type RedisClient = Redis | Cluster;

export interface LuaScript {
  /** A name unique among Switchyard's scripts; it becomes a method on the client. */
  name: string;
  numberOfKeys: number;
  lua: string;
}

type ScriptMethod = (...keysAndArgs: (string | number)[]) => Promise<unknown>;

const defined = new WeakMap<RedisClient, Set<string>>();

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

export async function runScript(redis: RedisClient, script: LuaScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
  if (keys.length !== script.numberOfKeys) throw new Error(`${script.name} takes ${script.numberOfKeys} keys, got ${keys.length}`);
  const method = `switchyard_${script.name}`;
  let names = defined.get(redis);
  if (!names) {
    names = new Set();
    defined.set(redis, names);
  }
  if (!names.has(method)) {
    redis.defineCommand(method, { numberOfKeys: script.numberOfKeys, lua: script.lua });
    names.add(method);
  }
  const call = (redis as unknown as Record<string, ScriptMethod>)[method];
  if (call === undefined) throw new Error(`ioredis did not define ${method}`);
  return call.call(redis, ...keys, ...args);
}

/** The reply of a script that returns an array of integers. */
export function integers(reply: unknown, length: number, script: string): number[] {
  if (!Array.isArray(reply) || reply.length < length || !reply.every((value) => typeof value === 'number')) {
    throw new Error(`${script}: unexpected reply ${JSON.stringify(reply)}`);
  }
  return reply as number[];
}
