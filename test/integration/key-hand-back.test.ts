import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { hostname, tmpdir } from 'node:os';
import pino from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createPromptProcessor, type PromptJob } from '../../jobs/prompt.ts';
import { parseConfig } from '../../src/config/load.ts';
import { BatchStore } from '../../src/queue/batch-state.ts';
import { pidNamespace } from '../../src/queue/local-process.ts';
import { workerRegistryKey } from '../../src/queue/worker-registry.ts';
import { createBatchContexts } from '../../workers/batch-context.ts';
import { cleanupPrefix, trackedConnections, uniquePrefix } from '../helpers/redis.ts';

/** The key only the other worker has: never set in this (the keyless worker's) process. */
const KEY = 'SY_TEST_KEY_ONLY_THE_OTHER_WORKER_HAS';

describe("a row whose key only another worker has (jobs/prompt.ts), against the worker registry", () => {
  const space = { prefix: uniquePrefix('key-hand-back') };
  const connections = trackedConnections();
  const redis = connections.connect();
  const store = new BatchStore(redis, space);
  const children: ChildProcess[] = [];
  // Each test's keyed worker is gone before the next: a dead process holds no key (worker-registry.ts).
  afterEach(async () => {
    await Promise.all(children.splice(0).map(async (child) => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await once(child, 'exit');
      }
    }));
  });
  afterAll(async () => {
    await cleanupPrefix(redis, space.prefix);
    connections.disconnectAll();
  });

  /** A live process on this machine, registered as a worker whose environment has KEY. */
  async function keyedWorker(): Promise<ChildProcess> {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 60_000)'], { stdio: 'ignore' });
    children.push(child);
    await once(child, 'spawn');
    const namespace = pidNamespace();
    await redis.hset(workerRegistryKey(space), `keyed-${child.pid}`, JSON.stringify({ process: `${hostname()} pid ${child.pid}`, seen: Date.now(), ...(namespace ? { pid_namespace: namespace } : {}), keys: [KEY] }));
    return child;
  }

  async function detachedBatch(batchId: string): Promise<void> {
    const config = parseConfig({ providers: { paid: { base_url: 'http://127.0.0.1:9/v1', api_key_env: KEY } }, models: { m: { provider: 'paid' } }, default_model: 'm' }, 'test');
    const meta = { batch_id: batchId, status: 'running', input: 'in.csv', input_kind: 'rows', builtin_config: false, out_dir: tmpdir(), created_at: new Date().toISOString(), invalid_rows: 0, prompt_column: 'prompt', csv_delimiter: ',', detached: true } as const;
    await store.save(meta, config);
  }

  const job = (batchId: string, waited: Pick<PromptJob, 'handBacks' | 'keyWaits'>): PromptJob => ({ batchId, row: 1, id: 'r1', messages: [{ role: 'user', content: 'hi' }], metadata: {}, ...waited });

  it('is handed back for as long as that worker is alive, however often it came back (QA: failed missing_api_key after 180 hand-backs while the keyed worker was busy)', async () => {
    expect(process.env[KEY]).toBeUndefined();
    await detachedBatch('busy-holder');
    await keyedWorker();
    const processJob = createPromptProcessor({ redis, space, batches: createBatchContexts(store), logger: pino({ level: 'silent' }) });

    // A row the keyed worker has not taken for 5 minutes: 180 hand-backs, then 24 waits of a --detach batch's.
    const started = Date.now();
    const outcome = await processJob(job('busy-holder', { handBacks: 180, keyWaits: 24 }), { jobId: 'j1', redelivered: false });
    expect(outcome.kind).toBe('park');
    if (outcome.kind !== 'park') return;
    expect(outcome.data.handBacks).toBe(181);
    // The wait for a keyed worker to start counts from when the last one left.
    expect(outcome.data.keyWaits).toBeUndefined();
    // Backed off: held here for 2 s, then 4 s in the queue, not a 1 s round trip for ever.
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
    expect(outcome.waitMs).toBe(4000);
    expect(await redis.getbit(`${space.prefix}:batch:{busy-holder}:finished`, 1)).toBe(0);
  });

  it('goes back after half a second for its first 15 rounds (a free keyed worker takes it within them), then waits longer each time', async () => {
    await detachedBatch('backing-off');
    await keyedWorker();
    const processJob = createPromptProcessor({ redis, space, batches: createBatchContexts(store), logger: pino({ level: 'silent' }) });
    const round = async (data: PromptJob) => {
      const started = Date.now();
      const outcome = await processJob(data, { jobId: 'j2', redelivered: false });
      if (outcome.kind !== 'park') throw new Error(`not handed back: ${outcome.kind}`);
      return { held: Date.now() - started, parked: outcome.waitMs, data: outcome.data };
    };
    const first = await round(job('backing-off', {}));
    expect([first.data.handBacks, first.parked]).toEqual([1, 500]);
    expect(first.held).toBeGreaterThanOrEqual(450);
    expect(first.held).toBeLessThan(1500);
    const rounds: Array<{ handBacks: number | undefined; parked: number; held: number }> = [];
    let data: PromptJob = { ...first.data, handBacks: 14 };
    for (let i = 0; i < 4; i++) {
      const next = await round(data);
      rounds.push({ handBacks: next.data.handBacks, parked: next.parked, held: next.held });
      data = next.data;
    }
    expect(rounds.map(({ handBacks, parked }) => [handBacks, parked])).toEqual([[15, 500], [16, 1000], [17, 2000], [18, 4000]]);
    // Held here first: 0.5, 1, 2, then 2 s (the cap). A loaded machine may add to each, never take away.
    [500, 1000, 2000, 2000].forEach((holdMs, i) => {
      expect(rounds[i]!.held).toBeGreaterThanOrEqual(holdMs - 50);
      expect(rounds[i]!.held).toBeLessThan(holdMs + 1000);
    });
  }, 20_000);

  it("fails missing_api_key once no connected worker has the key, naming the variable and this worker", async () => {
    await detachedBatch('holder-gone');
    const holder = await keyedWorker();
    holder.kill('SIGKILL');
    await once(holder, 'exit');
    const processJob = createPromptProcessor({ redis, space, batches: createBatchContexts(store), logger: pino({ level: 'silent' }) });
    // Its 2 minutes of waiting for a worker with the key used up.
    const outcome = await processJob(job('holder-gone', { handBacks: 3, keyWaits: 24 }), { jobId: 'j3', redelivered: false });
    expect(outcome).toMatchObject({ kind: 'done', row: 'failed' });
    const [result] = (await redis.xrange(`${space.prefix}:batch:{holder-gone}:events`, '-', '+')).map(([, fields]) => fields.join(' '));
    expect(result).toContain('missing_api_key');
    expect(result).toContain(`needs an API key in $${KEY}, which is not set (or is empty) for the worker on ${hostname()} (pid ${process.pid}), and no worker connected to this Redis had it: set $${KEY} for that worker, or start a worker with it set`);
  });
});
