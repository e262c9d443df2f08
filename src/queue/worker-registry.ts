import type { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { counted } from '../figure-text.ts';
import { localProcessAlive, pidNamespace, thisProcessName } from './local-process.ts';
import { LUA_PRELUDE, runScript, type LuaScript } from './lua-script.ts';
import type { KeySpace } from './keys.ts';

/**
 * Which process hosts each BullMQ worker. A worker's lock tokens start with its id, so when a
 * process on this machine finds that one which registered here died (kill -9, out of memory), it
 * hands that worker's rows back to the queue at once. Without this they come back only when their
 * locks expire, after queue.lock_ms (30 s by default), and a resume sat idle that long.
 */

interface Registration {
  /** "host pid N" of the process. */
  process: string;
  /** Epoch ms of its last heartbeat, by Redis' clock (TIME), so a machine whose clock is off does not stretch it. */
  seen: number;
  /** Its PID namespace, when known (local-process.ts): only a process in the same one is judged by its pid. */
  pid_namespace?: string;
  /** Names (never values) of the API key variables set in its environment (keyVariableNames). */
  keys?: string[];
}

const HEARTBEAT_MS = 60_000;
/**
 * A process heard from within this long is taken to be serving; one not, is not (gone, or stopped:
 * Ctrl-Z or SIGSTOP leaves a pid that answers but a worker that takes no row).
 */
const LIVE_WITHIN_MS = 3 * HEARTBEAT_MS;
/**
 * How far ahead of Redis' clock a heartbeat may be and still count: Redis' own clocks (a failover,
 * a Cluster's nodes) may differ by a little. One further ahead was stamped by its writer's clock
 * (a Switchyard before Redis stamped them), which says nothing about when it was written.
 */
const AHEAD_TOLERANCE_MS = 10_000;
/** An entry not renewed for this long belongs to a process gone from another machine: its locks lapsed long ago. */
const FORGET_AFTER_MS = 10 * 60_000;

/**
 * KEYS: the registry. ARGV: the worker's id, its registration as JSON without `seen`. Writes the
 * entry with `seen` from Redis' clock (TIME), the one every reader judges it by.
 */
const WRITE_REGISTRATION: LuaScript = {
  name: 'write_worker_registration',
  numberOfKeys: 1,
  lua: `${LUA_PRELUDE}
local seen = int_str(math.floor(now_us() / 1000))
redis.call('HSET', KEYS[1], ARGV[1], '{"seen":' .. seen .. ',' .. string.sub(ARGV[2], 2))
return seen
`,
};

/** KEYS: the registry. Returns Redis' clock in epoch ms (as text) and the registry's entries, flat. */
const READ_REGISTRY: LuaScript = {
  name: 'read_worker_registry',
  numberOfKeys: 1,
  lua: `${LUA_PRELUDE}
return {int_str(math.floor(now_us() / 1000)), redis.call('HGETALL', KEYS[1])}
`,
};

export const workerRegistryKey = (space: KeySpace): string => `${space.prefix}:worker-processes`;

export interface WorkerRegistration {
  unregister(): Promise<void>;
}

/** Records that this process hosts `workerId`, and keeps the record fresh until unregistered. */
export function registerWorker(redis: Redis, space: KeySpace, workerId: string): WorkerRegistration {
  const key = workerRegistryKey(space);
  const namespace = pidNamespace();
  const keys = keyVariableNames();
  // `seen` is Redis' to stamp (WRITE_REGISTRATION): the rest is the same at every heartbeat.
  const registration = JSON.stringify({ process: thisProcessName(), ...(namespace ? { pid_namespace: namespace } : {}), keys } satisfies Omit<Registration, 'seen'>);
  const write = () => runScript(redis, WRITE_REGISTRATION, [key], [workerId, registration]).catch(() => undefined);
  const written = write();
  const heartbeat = setInterval(() => void write(), HEARTBEAT_MS);
  heartbeat.unref();
  return {
    async unregister() {
      clearInterval(heartbeat);
      await written;
      await redis.hdel(key, workerId).catch(() => undefined);
    },
  };
}

/**
 * KEYS: active list, stalled set, stalled-check key. ARGV: the queue's key prefix, the dead worker's
 * token prefix ("<id>:"). Drops the locks that worker held and marks its jobs stalled, so BullMQ's
 * next stalled check (which the caller runs now) moves them back to wait, counting the redelivery.
 * Not at their priority (row-priority.ts): BullMQ (6.7) pushes a stalled job onto the plain wait
 * list, which workers empty before the prioritized set, so a released row is taken next, ahead of
 * every batch's turns (it was taken once already, so it jumps no turn it had not reached).
 */
const RELEASE_LOCKS: LuaScript = {
  name: 'release_dead_worker_locks',
  numberOfKeys: 3,
  lua: `
local released = 0
for _, jobId in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local lockKey = ARGV[1] .. jobId .. ':lock'
  local token = redis.call('GET', lockKey)
  if token and string.sub(token, 1, #ARGV[2]) == ARGV[2] then
    redis.call('DEL', lockKey)
    redis.call('SADD', KEYS[2], jobId)
    released = released + 1
  elseif not token and ARGV[3] == '1' then
    -- Active with its lock expired already (the process died longer ago than lock_ms): stalled, as
    -- BullMQ's own check would find on its next pass but one, up to two stalledIntervals away.
    redis.call('SADD', KEYS[2], jobId)
    released = released + 1
  end
end
if released > 0 then redis.call('DEL', KEYS[3]) end
return released
`,
};

export interface ReleasedRows {
  /** Rows handed back to the queue, by the "host pid N" of the dead process that held them. */
  rowsFrom: Map<string, number>;
  /** "host pid N" of every registered process found dead, rows or not. */
  dead: string[];
}

function parseRegistration(value: string): Registration | null {
  try {
    const parsed = JSON.parse(value) as Partial<Registration>;
    if (typeof parsed.process !== 'string' || typeof parsed.seen !== 'number') return null;
    const keys = Array.isArray(parsed.keys) ? parsed.keys.filter((name): name is string => typeof name === 'string') : [];
    return { process: parsed.process, seen: parsed.seen, keys, ...(typeof parsed.pid_namespace === 'string' ? { pid_namespace: parsed.pid_namespace } : {}) };
  } catch {
    return null;
  }
}

interface RegistryEntry {
  workerId: string;
  /** Null when unreadable. */
  registration: Registration | null;
  /** Whether its process is alive, by its pid; null: elsewhere (only its heartbeats can tell). */
  alive: boolean | null;
  /** Whether it beat within LIVE_WITHIN_MS, by Redis' clock. */
  recent: boolean;
  /** Ms since its last heartbeat, by Redis' clock (negative: stamped ahead of it). */
  age: number;
}

/** Every entry on record, parsed, with whether its process is alive and has beaten recently, judged by Redis' clock. */
async function readRegistrations(redis: Redis, space: KeySpace): Promise<RegistryEntry[]> {
  const [now, flat] = (await runScript(redis, READ_REGISTRY, [workerRegistryKey(space)], [])) as [string, string[]];
  const entries: RegistryEntry[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const registration = parseRegistration(flat[i + 1]!);
    const age = registration ? Number(now) - registration.seen : Infinity;
    const recent = age < LIVE_WITHIN_MS && age > -AHEAD_TOLERANCE_MS;
    entries.push({ workerId: flat[i]!, registration, alive: registration ? localProcessAlive(registration.process, registration.pid_namespace) : null, recent, age });
  }
  return entries;
}

/**
 * Hands the rows of workers whose process on this machine died back to the queue, through
 * `worker`'s stalled check (so they count as redelivered: a row the dead process finished is not
 * run again). Entries of other machines are left to their lock expiry, and forgotten once stale.
 */
export async function releaseRowsOfDeadWorkers(redis: Redis, space: KeySpace, worker: Worker): Promise<ReleasedRows> {
  const released: ReleasedRows = { rowsFrom: new Map(), dead: [] };
  let lapsedLocksAsked = false;
  for (const { workerId, registration, alive, age } of await readRegistrations(redis, space)) {
    if (workerId === worker.id) continue;
    if (registration && alive === false) {
      if (!released.dead.includes(registration.process)) released.dead.push(registration.process);
      // Rows whose locks have lapsed are counted once, with the first dead process found: most likely theirs.
      const withLapsed = lapsedLocksAsked ? '0' : '1';
      lapsedLocksAsked = true;
      const rows = Number(await runScript(redis, RELEASE_LOCKS, [worker.keys.active!, worker.keys.stalled!, worker.keys['stalled-check']!], [worker.toKey(''), `${workerId}:`, withLapsed]));
      if (rows > 0) released.rowsFrom.set(registration.process, (released.rowsFrom.get(registration.process) ?? 0) + rows);
    }
    if (!registration || alive === false || (alive === null && age > FORGET_AFTER_MS)) await redis.hdel(workerRegistryKey(space), workerId);
  }
  if (released.rowsFrom.size > 0) await worker.startStalledCheckTimer();
  return released;
}

/**
 * The names of the environment's variables that look like API keys (KEY, TOKEN or SECRET anywhere in
 * the name: OPENAI_API_KEY, DEEPSEEK_KEY_2, OPENAI_API_KEY_PROD) and are set: what a worker
 * advertises, so one without a provider's key can leave that provider's rows to a worker that has
 * it. Names only: a name says nothing a key would.
 */
export function keyVariableNames(env: NodeJS.ProcessEnv = process.env): string[] {
  return Object.keys(env).filter((name) => KEY_LIKE_NAME.test(name) && Boolean(env[name]?.trim())).sort();
}

/** Variable names workers advertise (keyVariableNames); a provider's api_key_env outside it is not told of. */
const KEY_LIKE_NAME = /KEY|TOKEN|SECRET/i;

/**
 * Registrations of processes serving now: heard from recently, by Redis' clock, and on this machine
 * alive too. A live pid alone is not enough: a stopped process (Ctrl-Z) has one and takes no row.
 */
async function liveRegistrations(redis: Redis, space: KeySpace): Promise<Registration[]> {
  return (await readRegistrations(redis, space)).flatMap(({ registration, alive, recent }) => (registration && recent && alive !== false ? [registration] : []));
}

/**
 * Whether a live worker process other than this one has the key variable `name` set. Asked before
 * a row fails for a key missing here (jobs/prompt.ts), so it is cached for a few seconds.
 */
export function keyHolders(redis: Redis, space: KeySpace, cacheMs = 5000): (name: string) => Promise<boolean> {
  let cached: { at: number; names: Promise<Set<string>> } | null = null;
  const self = thisProcessName();
  return async (name) => {
    if (!cached || Date.now() - cached.at > cacheMs) {
      const names = liveRegistrations(redis, space).then((live) => new Set(live.filter((r) => r.process !== self).flatMap((r) => r.keys ?? [])));
      cached = { at: Date.now(), names };
      names.catch(() => (cached = null));
    }
    return (await cached.names.catch(() => new Set<string>())).has(name);
  };
}

/**
 * "host pid N" of each process with a worker registered now whose heartbeat is recent (and, on this
 * machine, whose pid is alive). For `status`, beside Redis' own count of connections.
 */
export async function workerProcesses(redis: Redis, space: KeySpace): Promise<string[]> {
  return [...new Set((await liveRegistrations(redis, space)).map((registration) => registration.process))].sort();
}

/** "12 rows held by host pid 4242, which died on this machine, are back in the queue (…)." per process. */
export function deadProcessRowsText(released: ReleasedRows, except: string | null = null): string {
  return [...released.rowsFrom]
    .filter(([name]) => name !== except)
    .map(([name, rows]) => `${counted(rows, 'row')} held by ${name}, which died on this machine, ${rows === 1 ? 'is' : 'are'} back in the queue (one of a batch whose run died too waits for that batch's resume; one of a --detach'ed batch or a server's is run).`)
    .join(' ');
}
