import { randomBytes } from 'node:crypto';
/**
 * A batch's Redis keys, the queue's and BullMQ's names. Batch keys share a `{batchId}` hash tag so
 * a Redis Cluster keeps one batch's keys on one slot (MULTI and Lua need that). Keys shared across
 * batches (rate limits, breakers, budgets, the worker registry) are named beside their scripts.
 */
export const PROMPT_QUEUE = 'prompts';

export interface KeySpace {
  /** Prefix for BullMQ's own keys and ours; tests use a unique one each. */
  prefix: string;
}

export function batchKeys(space: KeySpace, batchId: string) {
  const base = `${space.prefix}:batch:{${batchId}}`;
  return {
    /** Hash: status, total, created_at, input, out_dir, cost_nanos, ... */
    meta: base,
    /** String: the batch's config as JSON, so workers anywhere run it without a local file. */
    config: `${base}:config`,
    /** Bitmap by row: 1 once the row succeeded (resume skips it). */
    succeeded: `${base}:succeeded`,
    /** Bitmap by row: 1 once the row has a final result, succeeded or failed, in this round. */
    finished: `${base}:finished`,
    /** Stream of RowEvent JSON, drained by the batch's collector. */
    events: `${base}:events`,
    /** Hash: the collector's checkpoint (stream id and output file sizes). */
    checkpoint: `${base}:checkpoint`,
    /** List: the rows' metadata keys in first-seen order (results.csv's extra columns), added by the producer. */
    metadataKeys: `${base}:metadata_keys`,
    /** Bitmap by row: 1 for a row that had a result but is invalid in the file now; the outputs leave it out. */
    withdrawn: `${base}:withdrawn`,
    /** Bitmap by row: 1 for a withdrawn row that had succeeded; given back unchanged (its fingerprint kept), its answer is kept. */
    setAside: `${base}:set_aside`,
    /** String of 4 bytes per row (at row x 4): each row's fingerprint when enqueued, so a resume sees edited rows. */
    fingerprints: `${base}:fingerprints`,
    /** Hash by row: answers kept for the resume (carried-rows.ts): a stopped run's parked rows', unscored ones, failed ensemble rows' members'. */
    carried: `${base}:carried`,
    /** Hash by job id: a parked row's job being taken off the queue, noted until its calls are published (unqueue-batch.ts). */
    withdrawing: `${base}:withdrawing`,
    /** Set: ids of the calls published that a row had saved in its job while it went on, so none goes out twice (row-events.ts). */
    publishedCalls: `${base}:published_calls`,
    /** String with a TTL: which process collects the batch now (batch-lease.ts). */
    lease: `${base}:lease`,
    /** Hash with a TTL: why the batch's rows wait, as a worker last said it, and when (batch-waiting.ts). */
    waiting: `${base}:waiting`,
    /** String: present for a batch submitted over the HTTP API (`switchyard serve`), which owns its input file. */
    submittedOverApi: `${base}:api`,
  };
}

export type BatchKeys = ReturnType<typeof batchKeys>;

export function batchIndexKey(space: KeySpace): string {
  return `${space.prefix}:batches`;
}

/** Set: batches submitted over the HTTP API whose outputs are not written yet; a server starting collects them. */
export function apiOpenBatchesKey(space: KeySpace): string {
  return `${space.prefix}:api:open`;
}

/** Set: those of them whose cancel was asked for and is not done yet; a server starting finishes it. */
export function apiCancellingBatchesKey(space: KeySpace): string {
  return `${space.prefix}:api:cancelling`;
}

/**
 * A row's job id: batch, row and the row's fingerprint (row-fingerprint.ts), so running the same
 * batch again never queues a row twice, while a row edited in the file since its job was queued
 * gets a job of its own (the old one is then superseded). BullMQ rejects ':' in custom ids.
 */
export function promptJobId(batchId: string, row: number, fingerprint: number): string {
  return `${batchId}_${row}_${fingerprint.toString(36)}`;
}

/** BullMQ's hash of a prompt job (its data, its creation time); its lock is this key + ':lock'. */
export function promptJobKey(space: KeySpace, jobId: string): string {
  return `${space.prefix}:${PROMPT_QUEUE}:${jobId}`;
}

/** A prompt job id's parts (a batch id may itself hold '_'), or null for another id. */
export function parsePromptJobId(jobId: string): { batchId: string; row: number; fingerprint: number } | null {
  const match = /^(.+)_(\d+)_([0-9a-z]+)$/.exec(jobId);
  return match ? { batchId: match[1]!, row: Number(match[2]), fingerprint: parseInt(match[3]!, 36) } : null;
}

/** The batch a prompt job id belongs to, or null for another id. */
export function batchOfJobId(jobId: string): string | null {
  return parsePromptJobId(jobId)?.batchId ?? null;
}

const BATCH_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function isValidBatchId(id: string): boolean {
  return BATCH_ID_PATTERN.test(id);
}

/** What is wrong with a batch id, for a message that names it (`label`: "batch id", "batch_id"). */
export function batchIdRule(label: string, id: string): string {
  return `${label} "${id}" may only use letters, digits, '.', '_' and '-' (at most 64 characters), starting with a letter or digit`;
}

/**
 * A batch id of its time and 8 random base-36 characters: two given out in the same second (a
 * server's clients posting at once) would be taken for one batch posted twice, its input replaced,
 * so the odds of that are kept at one in 2.8e12, not 1.7e6 (QA).
 */
export function newBatchId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  const random = [...randomBytes(8)].map((byte) => (byte % 36).toString(36)).join('');
  return `b${stamp}-${random}`;
}
