import { setTimeout as delay } from 'node:timers/promises';
import { Command } from 'ioredis';
import { UsageError } from '../errors.ts';
import { localProcessAlive, pidNamespace, thisProcessName } from './local-process.ts';
import { runScript, type LuaScript, type RedisClient } from './lua-script.ts';

/**
 * One process at a time runs a batch's collector, the single writer of its output files: two
 * (the same command started twice, a --resume while the first run still goes) would both append
 * every row. The holder keeps a short lease in Redis and renews it while it works; a process that
 * died without releasing it (kill -9) loses it when it expires, so a resume waits at most that long.
 */
export interface BatchLease {
  /** Aborted if the lease was lost (taken over after Redis was gone longer than its lifetime). */
  readonly lost: AbortSignal;
  /** "host pid N" of a process on this machine that died holding the lease, which this one took over. */
  readonly tookOverFrom: string | null;
  release(): Promise<void>;
  /**
   * The release sent without waiting for it, for a process about to exit (an early Ctrl-C: early-stop.ts):
   * as EVAL, written to the connection at once (EVALSHA may need a second round trip), so the
   * next run neither waits for the lease to expire nor takes it over as from a run that held rows.
   */
  releaseNow(): void;
}

const LEASE_MS = 5000;
const RENEW_EVERY_MS = 1000;

/** ARGV: token, lease ms. Returns 1, or {holder token, ms it still lasts}. */
const ACQUIRE: LuaScript = {
  name: 'lease_acquire',
  numberOfKeys: 1,
  lua: `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return {holder, redis.call('PTTL', KEYS[1])}
`,
};

/** ARGV: the dead holder's token, token, lease ms. Returns 1 if taken over. */
const TAKE_OVER: LuaScript = {
  name: 'lease_take_over',
  numberOfKeys: 1,
  lua: `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`,
};

/**
 * ARGV: token, lease ms. Returns 1 while the token holds the lease (taking it back if it expired
 * while Redis was away and nobody took it), 0 once another process holds it.
 */
const RENEW: LuaScript = {
  name: 'lease_renew',
  numberOfKeys: 1,
  lua: `
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
`,
};

/** ARGV: token. */
const RELEASE: LuaScript = {
  name: 'lease_release',
  numberOfKeys: 1,
  lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
`,
};

/** "host pid N" of a lease token (the rest is a random tag). */
export const holderName = (token: string): string => token.split(' ').slice(0, 3).join(' ');

/** Whether a lease's holder is alive, when it is a process this one can see (local-process.ts); null when not. */
export const leaseHolderAlive = (token: string): boolean | null => localProcessAlive(token, token.split(' ')[4]);

/**
 * Takes the batch's lease. A holder on this machine is asked directly: a dead one's lease is taken
 * over at once, a live one's is refused at once. A holder elsewhere is waited out until its lease
 * would have expired (it renews while alive); still held then, a UsageError names the other process.
 */
export async function acquireBatchLease(redis: RedisClient, key: string, batchId: string, options: { leaseMs?: number } = {}): Promise<BatchLease> {
  const leaseMs = options.leaseMs ?? LEASE_MS;
  // "host pid N", a random tag, and the PID namespace (containers may share a hostname).
  const token = `${thisProcessName()} ${Math.random().toString(36).slice(2, 8)} ${pidNamespace() ?? '-'}`;
  const deadline = Date.now() + leaseMs + 500;
  let tookOverFrom: string | null = null;
  for (;;) {
    const reply = await runScript(redis, ACQUIRE, [key], [token, leaseMs]);
    if (reply === 1) break;
    const [holder = 'another process'] = (Array.isArray(reply) ? reply : []) as string[];
    const alive = leaseHolderAlive(holder);
    if (alive === false && (await runScript(redis, TAKE_OVER, [key], [holder, token, leaseMs])) === 1) {
      tookOverFrom = holderName(holder);
      break;
    }
    if (alive === true || Date.now() > deadline) {
      throw new UsageError(
        `batch ${batchId} is being run by another process right now (${holderName(holder)}), which writes its outputs; ` +
          `wait for it to finish or stop it first (\`switchyard status ${batchId}\` shows its progress)`,
      );
    }
    await delay(250);
  }

  const lost = new AbortController();
  // One renewal at a time: while Redis is away, it waits in the client rather than pile up there.
  let renewing: Promise<void> | null = null;
  const renewal = setInterval(() => {
    if (renewing) return;
    renewing = runScript(redis, RENEW, [key], [token, leaseMs]).then(
      (held) => {
        renewing = null;
        if (held !== 1) lost.abort();
      },
      () => void (renewing = null), // Redis away: the outage handling says so; the next renewal tries again
    );
  }, Math.min(RENEW_EVERY_MS, leaseMs / 3));
  renewal.unref();
  return {
    lost: lost.signal,
    tookOverFrom,
    async release() {
      clearInterval(renewal);
      // A renewal still in flight would set the lease again after the release deleted it (its script
      // takes back a missing key), leaving the batch "being run" until it expired: let it land first.
      await renewing;
      await runScript(redis, RELEASE, [key], [token]).catch(() => undefined);
    },
    releaseNow() {
      clearInterval(renewal);
      // Sent as a Command of its own: the session's clients pipeline their methods' commands to the next tick, after the exit.
      const command = new Command('eval', [RELEASE.lua, 1, key, token]);
      command.promise.catch(() => undefined);
      redis.sendCommand(command);
    },
  };
}
