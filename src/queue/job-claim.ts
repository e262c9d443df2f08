import type { Redis } from 'ioredis';
import { runScript, type LuaScript } from './lua-script.ts';

/**
 * KEYS: a job's hash, its lock. ARGV: the lock's token as its worker holds it, the job's data
 * (JSON). Replaces the data only while that token still holds the lock: 1, else 0.
 */
const SAVE_WHILE_HELD: LuaScript = {
  name: 'save_while_held',
  numberOfKeys: 2,
  lua: `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[2])
return 1
`,
};

/**
 * Saves a job's data if this worker still holds its claim. False when it does not: the worker
 * paused past its lock (a laptop asleep, a stopped process) and the stalled check gave the job to
 * another worker, whose data this must not overwrite. `jobKey` is BullMQ's hash of the job.
 */
export async function saveWhileHeld(redis: Redis, jobKey: string, token: string, data: unknown): Promise<boolean> {
  return (await runScript(redis, SAVE_WHILE_HELD, [jobKey, `${jobKey}:lock`], [token, JSON.stringify(data)])) === 1;
}

/** Whether `token` still holds the job's lock (one GET). */
export async function holdsJobClaim(redis: Redis, jobKey: string, token: string): Promise<boolean> {
  return (await redis.get(`${jobKey}:lock`)) === token;
}
