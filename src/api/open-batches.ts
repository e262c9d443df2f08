import type { RunHost } from '../batch/run-batch.ts';
import { acquireBatchLease, holderName, leaseHolderAlive, type BatchLease } from '../queue/batch-lease.ts';
import { isFinishedStatus, type BatchMeta } from '../queue/batch-state.ts';
import { parsePromptJobId } from '../queue/keys.ts';
import { runScript, type LuaScript } from '../queue/lua-script.ts';
import { counted } from '../figure-text.ts';
import type { BackgroundCollection } from './background-collection.ts';
import { loadBatchState } from './batch-lookup.ts';
import type { BatchStarter } from './batch-start.ts';

/** What taking up an open batch again needs (one submitted over the API whose outputs are not written yet). */
export interface OpenBatchesOptions {
  host: RunHost;
  collection: BackgroundCollection;
  starter: BatchStarter;
  say: (line: string) => void;
  /** The set of batches submitted over the API whose outputs are not written yet. */
  openKey: string;
  /** The set of those whose cancel a stopped server did not finish, and what finishes one. */
  cancellingKey: string;
  cancel: (batchId: string) => Promise<void>;
}

/**
 * Takes a batch out of the open sets only if its status is still the one read (ARGV[2], '' for
 * none). Read, then removed in two steps, the batch posted again meanwhile (to another server on
 * this Redis: its status is `enqueuing` before it is marked open) lost its new run's open mark, and
 * a restart of that server never took the run up again.
 */
const FORGET_IF_STILL_ENDED: LuaScript = {
  name: 'forget-ended-open-batch',
  numberOfKeys: 3,
  lua: `
if (redis.call('HGET', KEYS[1], 'status') or '') ~= ARGV[2] then return 0 end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
`,
};

/** Collects the batches submitted here whose outputs a stopped server left unwritten. */
export async function resumeOpenBatches(options: OpenBatchesOptions): Promise<void> {
  for (const batchId of await options.host.session.redis.smembers(options.openKey)) {
    if (options.host.stop.aborted) return;
    await resumeOpenBatch(options, batchId);
  }
}

async function resumeOpenBatch({ host, collection, starter, say, openKey, cancellingKey, cancel }: OpenBatchesOptions, batchId: string): Promise<void> {
  const { store, redis } = host.session;
  let lease: BatchLease | null = null;
  try {
    const metaKey = store.keys(batchId).meta;
    const statusSeen = (await redis.hget(metaKey, 'status')) ?? '';
    const state = await loadBatchState(store, batchId).catch(() => null);
    if (!state || isFinishedStatus(state.meta.status)) {
      await runScript(redis, FORGET_IF_STILL_ENDED, [metaKey, openKey, cancellingKey], [batchId, statusSeen]);
      return;
    }
    const cancelling = (await redis.sismember(cancellingKey, batchId)) === 1;
    const holder = await redis.get(store.keys(batchId).lease);
    if (holder !== null && leaseHolderAlive(holder) !== false) {
      // Another server on this Redis and prefix has it: it is that server's to finish.
      say(`[${batchId}] Left to ${holderName(holder)}, which runs it now.`);
      return;
    }
    const elsewhere = cancelling ? null : anotherConfigsBatch(state.meta, host, state.progress.total === null ? null : state.progress.total - state.progress.finished);
    if (elsewhere) {
      say(`[${batchId}] ${elsewhere}`);
      return;
    }
    lease = await acquireBatchLease(redis, store.keys(batchId).lease, batchId);
    // Rows neither finished nor queued were taken off the queue while no server ran the batch (a
    // `run --resume` of it that stopped, or a run that took them for a dead run's): collecting alone would wait for them for good.
    const missing = state.meta.status === 'enqueuing' || cancelling ? 0 : await rowsOffTheQueue(host, batchId);
    if (missing > 0) say(`[${batchId}] ${counted(missing, 'row')} ${missing === 1 ? 'was' : 'were'} neither finished nor queued (taken off the queue while no server ran the batch): queuing them again from its file.`);
    if ((state.meta.status === 'enqueuing' && !cancelling) || missing > 0) {
      // Stopped while its file was being read, or rows taken off: read the file again (rows already queued or done are kept).
      const ended = await starter.start(batchId, lease, { resume: batchId }, []);
      if (ended === 'collecting') lease = null;
    } else {
      const { meta } = state;
      // The built-in models' simulator is this process's now: its workers call them.
      if (meta.builtin_config && host.config.builtIn) host.prime?.(batchId, host.config.config, meta.model_override, meta.ab_split, Date.parse(meta.started_at ?? meta.created_at), true);
      collection.start(batchId, lease, { outDir: meta.out_dir, startedAt: new Date(meta.started_at ?? meta.created_at) });
      lease = null;
    }
    if (lease !== null) return;
    if (cancelling) {
      say(`[${batchId}] Finishing its cancel, which the server stopped in the middle of.`);
      await cancel(batchId);
    } else say(`[${batchId}] Going on with it: submitted before the server last stopped, its outputs are not written yet.`);
  } catch (error) {
    say(`[${batchId}] Submitted before the server last stopped, and left as it is: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    await lease?.release();
  }
}

/**
 * Why a batch posted to a server with another config is left to it, or null when it is this
 * server's to go on with: the same config (its fingerprint), or a batch from before servers
 * recorded theirs. Going on here would run its rows left with this config's providers, limits and
 * prices (QA: a team's server ran another team's batch on its own provider). A batch being
 * cancelled is finished whatever the config: a cancel runs no row.
 */
function anotherConfigsBatch(meta: BatchMeta, host: RunHost, rowsLeft: number | null): string | null {
  const own = host.serverConfig;
  if (!own || meta.server_config === undefined || meta.server_config === own.fingerprint) return null;
  const left = rowsLeft === null ? 'its rows not run yet' : `its ${counted(rowsLeft, 'row')} not finished`;
  return (
    `Left as it is: it was posted to a server with another config (${meta.server_config_from ?? 'not recorded'}; config ${meta.server_config}), and this server's ` +
    `(${own.from}; config ${own.fingerprint}) would run ${left} with other providers, limits and prices. To finish it as it was posted, start \`switchyard serve\` ` +
    `with that config on this Redis and prefix; to run the rest with this server's config instead, post its file again here with batch_id=${meta.batch_id}.`
  );
}

/**
 * How many of the batch's rows are neither finished nor in the queue (waiting, parked or being run
 * by any worker). The queue is read first: a row that finishes after it is then in both reads, and
 * counted once, while one missing from it stays missing (this server holds the lease: no run queues it).
 */
async function rowsOffTheQueue(host: RunHost, batchId: string): Promise<number> {
  const { store } = host.session;
  const queue = host.session.openPromptQueue();
  const queuedRows = new Set<number>();
  try {
    for (const id of await queue.getRanges(['waiting', 'prioritized', 'delayed', 'active'], 0, -1)) {
      const job = parsePromptJobId(id);
      if (job?.batchId === batchId) queuedRows.add(job.row);
    }
  } finally {
    await queue.close();
  }
  const progress = await store.progress(batchId);
  if (progress?.total == null) return 0;
  let queuedUnfinished = queuedRows.size;
  if (queuedRows.size > 0) {
    let first = Infinity;
    let last = -Infinity;
    for (const row of queuedRows) [first, last] = [Math.min(first, row), Math.max(last, row)];
    const finished = await store.finishedRows(batchId, first, last - first + 1);
    for (const row of queuedRows) if (finished.has(row)) queuedUnfinished--;
  }
  return Math.max(0, progress.total - progress.finished - queuedUnfinished);
}

/**
 * Redis came back with an older state of a batch being collected (an RDB snapshot): the rows it
 * forgot have no job left, so the batch's file is read again as a resume reads it, queuing every
 * row not finished, and collected anew; what the server does at start for a batch stopped mid-read.
 */
export async function requeueRolledBack({ host, starter, say }: OpenBatchesOptions, batchId: string): Promise<void> {
  if (host.stop.aborted) return; // the next server to start goes on with it
  let lease: BatchLease | null = null;
  try {
    lease = await acquireBatchLease(host.session.redis, host.session.store.keys(batchId).lease, batchId);
    if ((await starter.start(batchId, lease, { resume: batchId }, [])) === 'collecting') lease = null;
  } catch (error) {
    say(`[${batchId}] Could not queue its rows again: ${error instanceof Error ? error.message : String(error)}. Restart the server to try again; nothing written is lost.`);
  } finally {
    await lease?.release();
  }
}
