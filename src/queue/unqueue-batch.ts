import type { Queue } from 'bullmq';
import { callTotals } from '../execution/row-result.ts';
import { holdsAnswers } from '../execution/carried-progress.ts';
import { bookedSlots, everyCall, keptBudgetHolds, rowProgressSchema, type RowProgress } from '../execution/row-progress.ts';
import { Budget, type BudgetHold } from '../limits/budget.ts';
import { configSchema } from '../config/schema.ts';
import { releaseSlots, type BookedSlot } from '../limits/slot-release.ts';
import { clearWithdrawalNote, publishCallsOnly, withdrawalNote, type NotedJob } from '../output/row-events.ts';
import { isFinishedStatus, type BatchStore } from './batch-state.ts';
import { leaseHolderAlive } from './batch-lease.ts';
import { carryRow } from './carried-rows.ts';
import { storedJson } from './stored-json.ts';
import { batchOfJobId, parsePromptJobId, promptJobKey } from './keys.ts';
import { fingerprintDiffers } from '../input/row-fingerprint.ts';

/** Jobs looked at per round: their data is read, then they are removed, a round trip each way. */
const CHUNK = 500;

export interface Unqueued {
  /** Rows taken off the queue: a resume queues them again from the file. */
  removed: number;
  /** Rows left in the queue: taken by a worker meanwhile (BullMQ does not remove a locked job). */
  kept: number;
  /**
   * Rows other processes were running when the batch stopped (a `switchyard worker`), these taken
   * meanwhile included: they finish there, so their results come after the outputs written at the
   * stop, and the resume writes them. Counted for a batch's own stop only.
   */
  elsewhere?: number;
  /** Of the rows removed, those whose answers are kept for the resume (carried-rows.ts). */
  carried: number;
}

/** A batch's jobs in the queue: their ids, waiting or parked, and how many of them are waiting (not parked). */
interface QueuedJobs {
  ids: string[];
  waiting: number;
}

/**
 * The jobs waiting or parked in the queue, by batch, in one pass over the queue's ids. The parked
 * ones are listed first: a job BullMQ wakes meanwhile is then listed twice (counted once), never missed.
 */
async function queuedJobsByBatch(queue: Queue): Promise<Map<string, QueuedJobs>> {
  const [parked, waiting] = await Promise.all([queue.getRanges(['delayed'], 0, -1), queue.getRanges(['waiting', 'prioritized'], 0, -1)]);
  const byBatch = new Map<string, QueuedJobs>();
  const seen = new Set<string>();
  const add = (id: string, isWaiting: boolean) => {
    const batchId = batchOfJobId(id);
    if (batchId === null || seen.has(id)) return;
    seen.add(id);
    let jobs = byBatch.get(batchId);
    if (!jobs) {
      jobs = { ids: [], waiting: 0 };
      byBatch.set(batchId, jobs);
    }
    jobs.ids.push(id);
    if (isWaiting) jobs.waiting++;
  };
  // Waiting first, so that a job listed in both counts as waiting, where it is now.
  for (const id of waiting) add(id, true);
  for (const id of parked) add(id, false);
  return byBatch;
}

/**
 * Takes a stopped batch's rows off the queue, so that a worker serving the queue (the next run of
 * another batch, a `switchyard worker`) does not run them, and pay for them, while nobody collects
 * the batch. Nothing is lost: they are unfinished, and `run --resume` queues them again. A parked
 * row that has made calls (a retry's backoff, a rate-limit wait) holds their cost records in its
 * job: they are published to the batch's stream as calls without a result (paid for, so they go
 * to costs.jsonl and the report) once the job is removed. A row that holds answers (a judged row's,
 * an ensemble's members') keeps them for the resume (carried-rows.ts); any other starts afresh.
 * The rate-limit slots parked rows had booked are given back, so the resume does not wait for them.
 */
export async function unqueueBatch(queue: Queue, store: BatchStore, batchId: string): Promise<Unqueued> {
  const unqueued = await unqueueQueuedRows(queue, store, batchId);
  // The stopping process's own workers have let go of their rows by now: the active ones are other processes'.
  // A row whose result is in already, its job not yet marked done, is not one of them: it is in the outputs.
  const activeRows = (await queue.getRanges(['active'], 0, -1)).flatMap((id) => {
    const job = parsePromptJobId(id);
    return job?.batchId === batchId ? [job.row] : [];
  });
  const finishedBits = activeRows.length === 0 ? [] : await Promise.all(activeRows.map((row) => store.redis.getbit(store.keys(batchId).finished, row)));
  const active = finishedBits.filter((bit) => bit === 0).length;
  return { ...unqueued, elsewhere: Math.max(active, unqueued.kept) };
}

/** The same without counting the rows other processes run: for a stop's passes while its own workers still hold rows. */
export async function unqueueQueuedRows(queue: Queue, store: BatchStore, batchId: string): Promise<Unqueued> {
  return unqueueJobs(queue, store, batchId, (await queuedJobsByBatch(queue)).get(batchId)?.ids ?? []);
}

/** What a run's start found in the queue (unqueueOrphanedBatches). */
export interface QueueAtStart {
  /** What came off the queue, by batch whose run is gone. */
  orphans: Map<string, Unqueued>;
  /** The rows of other batches left waiting (not parked), which this run's rows take turns with. */
  othersWaiting: number;
}

/**
 * The same for batches whose run is gone without taking its rows off (kill -9, out of memory): a
 * batch that is not finished, was not --detach'ed, and whose lease is free or held by a process of
 * this machine that died. A detached batch is any worker's to serve, and one whose run lives (here
 * or elsewhere) is its run's: both are left alone, and their waiting rows counted, from the same
 * listing of the queue (listing takes ~0.1 s per 50,000 queued ids, so a run's start lists it once).
 */
export async function unqueueOrphanedBatches(queue: Queue, store: BatchStore, ownBatchId: string): Promise<QueueAtStart> {
  const start: QueueAtStart = { orphans: new Map(), othersWaiting: 0 };
  for (const [batchId, jobs] of await queuedJobsByBatch(queue)) {
    if (batchId === ownBatchId) continue;
    if (await isOrphaned(store, batchId)) start.orphans.set(batchId, await unqueueJobs(queue, store, batchId, jobs.ids));
    else start.othersWaiting += jobs.waiting;
  }
  return start;
}

/** A batch whose run is gone (see unqueueOrphanedBatches): not finished, not --detach'ed, its lease free or its holder dead here. */
export async function isOrphaned(store: BatchStore, batchId: string): Promise<boolean> {
  const meta = await store.load(batchId).catch(() => null); // a damaged batch is left as it is
  if (!meta || meta.detached !== false || isFinishedStatus(meta.status)) return false;
  const holder = await store.redis.get(store.keys(batchId).lease);
  return holder === null || leaseHolderAlive(holder) === false;
}

/**
 * What a row taken off the queue leaves: the calls its job holds go to the batch's stream (paid
 * for), and answers worth keeping to the resume. 'removed' when it held none worth keeping.
 */
export async function withdrawJobData(store: BatchStore, batchId: string, data: unknown, job?: NotedJob): Promise<'removed' | 'carried'> {
  const parked = parkedRow(data);
  if (!(await worthWithdrawing(store, batchId, parked))) {
    // A note a stop killed before removing it left on this job goes with it.
    if (job) await clearWithdrawalNote(store.redis, store.keys(batchId), job);
    return 'removed';
  }
  return withdrawParkedRow(store, batchId, parked!, job && { ...job, noted: false });
}

/**
 * Whether a removed job's data holds what must not be lost with it, calls or answers. Not when its
 * row is written already from this content: its worker published the row, then lost its claim before
 * BullMQ marked the job done (the stalled check of another worker moved it back); its calls went out
 * with the row, and carrying its answers would have the resume pay for a judge or synthesis again.
 */
async function worthWithdrawing(store: BatchStore, batchId: string, parked: ParkedRow | null): Promise<boolean> {
  return parked !== null && holdsRecords(parked) && !(await rowWrittenFrom(store, batchId, parked));
}

/** Whether a parked row's job holds what must not be lost with it: calls (paid for) or answers (kept for the resume). */
function holdsRecords(parked: ParkedRow): boolean {
  // A row a resume queued for its judge alone holds its earlier run's answer, but no call of its own yet.
  return everyCall(parked.progress).length > 0 || holdsAnswers(parked.progress);
}

/**
 * Publishes a removed job's calls and carries its answers. `job.noted`: its stop noted it in the
 * batch's `withdrawing` hash before removing it; the calls then go out with the note, once.
 */
async function withdrawParkedRow(store: BatchStore, batchId: string, parked: ParkedRow, job: (NotedJob & { noted: boolean }) | undefined): Promise<'removed' | 'carried'> {
  const calls = everyCall(parked.progress);
  const keys = store.keys(batchId);
  // Recorded first: answers carried without their cost records would be paid for unrecorded.
  await publishCallsOnly(store.redis, keys, parked.row, calls, callTotals(calls).costNanos, job);
  if (parked.fingerprint === undefined || !holdsAnswers(parked.progress)) return 'removed';
  await carryRow(store.redis, keys, parked.row, parked.fingerprint, parked.progress);
  return 'carried';
}

/** Whether the row the job holds has its result written already, from this very content (its bit set, its fingerprint the same). */
async function rowWrittenFrom(store: BatchStore, batchId: string, parked: ParkedRow): Promise<boolean> {
  const keys = store.keys(batchId);
  const [finished, recorded] = await Promise.all([store.redis.getbit(keys.finished, parked.row), parked.fingerprint === undefined ? null : store.redis.getrangeBuffer(keys.fingerprints, parked.row * 4, parked.row * 4 + 3)]);
  if (finished !== 1) return false;
  return recorded === null || recorded.length !== 4 || !fingerprintDiffers(recorded.readUInt32BE(0), parked.fingerprint!);
}

async function unqueueJobs(queue: Queue, store: BatchStore, batchId: string, ids: readonly string[]): Promise<Unqueued> {
  const keys = store.keys(batchId);
  const result: Unqueued = { removed: 0, kept: 0, carried: 0 };
  const slots: BookedSlot[] = [];
  const holds: BudgetHold[] = [];
  for (let start = 0; start < ids.length; start += CHUNK) {
    const chunk = ids.slice(start, start + CHUNK);
    const jobs = await Promise.all(chunk.map((id) => queue.getJob(id)));
    const outcomes = await Promise.all(
      jobs.map(async (job): Promise<'removed' | 'carried' | 'kept' | 'gone'> => {
        if (!job?.id) return 'gone'; // finished meanwhile
        const parked = parkedRow(job.data);
        const keep = await worthWithdrawing(store, batchId, parked);
        // Once removed, its calls live only in its data: noted first, so that a stop killed before
        // their publish leaves them to the batch's next collector (finishWithdrawals).
        const noted = { id: job.id, timestamp: job.timestamp };
        if (keep) await store.redis.hset(keys.withdrawing, job.id, withdrawalNote(noted, job.data));
        // Removed first: a job a worker took meanwhile keeps its calls, and publishes them itself.
        if ((await queue.remove(job.id)) !== 1) {
          if (keep) await clearWithdrawalNote(store.redis, keys, noted);
          return 'kept';
        }
        if (parked) slots.push(...bookedSlots(parked.progress));
        if (parked) holds.push(...keptBudgetHolds(parked.progress));
        return keep ? withdrawParkedRow(store, batchId, parked!, { ...noted, noted: true }) : 'removed';
      }),
    );
    for (const outcome of outcomes) {
      if (outcome === 'gone') continue;
      if (outcome === 'carried') result.removed++;
      result[outcome]++;
    }
  }
  // Rows removed without a slot may hold a turn in the batch's line for a rate-limited model (model-limiter.ts), given back too.
  if (slots.length > 0 || result.removed > 0) await releaseBatchSlots(store, batchId, slots);
  // The budget an ensemble row held for its calls still to come goes back (else it would lapse only after minutes).
  if (holds.length > 0) {
    const budget = new Budget(store.redis);
    await Promise.all(holds.map((hold) => budget.settle(hold, 0)));
  }
  return result;
}

/**
 * Publishes the calls of jobs a stop removed but was killed before publishing (their notes in the
 * batch's `withdrawing` hash), and carries their answers: run by the batch's collector as it starts.
 * A noted job still queued (the same job: its creation time) was not removed, and is left to
 * whoever removes or runs it (its publish clears the note); a job of that id queued since (a
 * resume's) is another one. A note's calls go out once, whoever publishes them first.
 */
export async function finishWithdrawals(store: BatchStore, batchId: string): Promise<number> {
  const keys = store.keys(batchId);
  let finished = 0;
  for (const [jobId, note] of Object.entries(await store.redis.hgetall(keys.withdrawing))) {
    const space = note.indexOf(' ');
    const timestamp = Number(note.slice(0, space));
    const queuedAt = await store.redis.hget(promptJobKey(store.space, jobId), 'timestamp');
    if (queuedAt !== null && Number(queuedAt) === timestamp) continue;
    const parked = parkedRow(storedJson(note.slice(space + 1)));
    if (parked) await withdrawParkedRow(store, batchId, parked, { id: jobId, timestamp, noted: true });
    else await clearWithdrawalNote(store.redis, keys, { id: jobId, timestamp });
    finished++;
  }
  return finished;
}

/** The rate-limit slots the removed rows had booked (and the turns of rows deferred) go back, under the limits of the batch's config. */
async function releaseBatchSlots(store: BatchStore, batchId: string, slots: readonly BookedSlot[]): Promise<void> {
  const configJson = await store.loadConfigJson(batchId);
  // Without its config the slots only lapse: a resume then waits behind them, nothing worse.
  const parsed = configSchema.safeParse(storedJson(configJson));
  if (parsed.success) await releaseSlots(store.redis, store.space.prefix, parsed.data, batchId, slots);
}

/** A parked row's job: its row, fingerprint and progress (what it has done, and any slot it holds). */
interface ParkedRow {
  row: number;
  fingerprint: number | undefined;
  progress: RowProgress;
}

/** The job's parked row, or null for a job not yet started. */
function parkedRow(data: unknown): ParkedRow | null {
  const { row, fingerprint, progress } = (data ?? {}) as { row?: unknown; fingerprint?: unknown; progress?: unknown };
  const parsed = rowProgressSchema.safeParse(progress);
  if (typeof row !== 'number' || progress === undefined || !parsed.success) return null;
  return { row, fingerprint: typeof fingerprint === 'number' ? fingerprint : undefined, progress: parsed.data };
}
