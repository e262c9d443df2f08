import type { Redis } from 'ioredis';
import { z } from 'zod';
import { configSchema, type SwitchyardConfig } from '../config/schema.ts';
import { SetupError } from '../errors.ts';
import { batchIndexKey, batchKeys, type KeySpace } from './keys.ts';
import { runScript, type LuaScript } from './lua-script.ts';
import { storedJson } from './stored-json.ts';

/** Metadata keys pushed to Redis per command. */
const METADATA_KEYS_CHUNK = 10_000;

/** `cancelled`: stopped over the HTTP API; its outputs hold the rows finished before, and running it again runs the rest. */
const batchStatusSchema = z.enum(['enqueuing', 'running', 'finalizing', 'completed', 'completed_with_failures', 'budget_exceeded', 'cancelled']);
export type BatchStatus = z.infer<typeof batchStatusSchema>;

/** A batch whose outputs are written and of which nothing is in the queue: every row has a result, or it was cancelled. */
export function isFinishedStatus(status: BatchStatus): boolean {
  return status === 'completed' || status === 'completed_with_failures' || status === 'budget_exceeded' || status === 'cancelled';
}

/** What Redis remembers about a batch, so any process can resume, collect or report on it. */
const batchMetaSchema = z.object({
  batch_id: z.string(),
  status: batchStatusSchema,
  input: z.string(),
  /** 'openai-batch' when the rows came from OpenAI Batch API lines (custom_id), for batch_output.jsonl. */
  input_kind: z.enum(['rows', 'openai-batch']).default('rows'),
  /** The batch runs on the built-in models and simulator, which a resume starts again. */
  builtin_config: z.stringbool().default(false),
  /**
   * Its last run was --detach'ed: any worker serves its rows, with no run process to wait for.
   * Otherwise the rows are its run's, and a run that is gone (killed) leaves them for its resume.
   * Unset in batches from before it was recorded.
   */
  detached: z.stringbool().optional(),
  /**
   * Its last run is `switchyard serve`'s (posted over the HTTP API), not a CLI run's (a `run
   * --resume` of a posted batch is one): its rows' budget advice is worded for an API client.
   */
  served: z.stringbool().optional(),
  /**
   * The config of the server it was posted to (config-fingerprint.ts), and where that config came
   * from ("--config /srv/team-a.yaml on host a1"): a server started with another config leaves the
   * batch rather than run its rows with other providers, limits and prices. Unset for a CLI run's.
   */
  server_config: z.string().optional(),
  server_config_from: z.string().optional(),
  out_dir: z.string(),
  created_at: z.string(),
  /** Valid rows; unset until the producer has read the whole file. */
  total: z.coerce.number().int().nonnegative().optional(),
  /** Until then, the producer's estimate from the rows and bytes read so far (for progress and ETA). */
  estimated_total: z.coerce.number().int().nonnegative().optional(),
  invalid_rows: z.coerce.number().int().nonnegative().default(0),
  /** The invalid rows by reason code, each with the first one's message (JSON in the hash). */
  invalid_codes: z.preprocess(parseJsonText, z.record(z.string(), z.object({ rows: z.number().int().nonnegative(), example: z.string() }))).optional(),
  /** --model / --route <model>: rows that name no model go to this one instead of being routed. */
  model_override: z.string().optional(),
  /** --ab: each row that names no model goes to one of these, by a hash of its id (JSON in the hash). */
  ab_split: z.preprocess(parseJsonText, z.array(z.object({ model: z.string(), weight: z.number().positive() })).min(2)).optional(),
  /** The splits earlier runs of the batch ran under, oldest first, when a resume changed or dropped it: their rows keep their arms (JSON in the hash). */
  ab_splits_before: z.preprocess(parseJsonText, z.array(z.array(z.object({ model: z.string(), weight: z.number().positive() })).min(2))).optional(),
  /** --compare: every row that names no model is put to each of these, one row per model (compare-fan-out.ts); kept as it is by every run of the batch (JSON in the hash). */
  compare: z.preprocess(parseJsonText, z.array(z.string()).min(2)).optional(),
  /** The records the last run that read the whole file put to every compared model. */
  compare_prompts: z.coerce.number().int().nonnegative().optional(),
  /**
   * compare.csv's prompts longer than an Excel cell, as its last writing counted them (null: none), for a report
   * written again from the files (collect), which reads no input file (JSON in the hash).
   */
  compare_long_prompts: z.preprocess(parseJsonText, z.object({ rows: z.number().int().nonnegative(), first_id: z.string(), longest_chars: z.number().int().nonnegative() }).nullable()).optional(),
  /** --judge: the model that scores every answer, kept for a resume as --ab is. */
  judge_model: z.string().optional(),
  /** --no-cache: the batch neither takes nor keeps answers in the config's answer cache; a resume keeps it until --cache. */
  cache_off: z.stringbool().optional(),
  /** --concurrency of the run that started the batch (or last set it): a resume keeps it unless given another. */
  concurrency: z.coerce.number().int().positive().optional(),
  /** --budget (or the config's budget.batch_usd): USD cap for the batch; rows that would pass it end as budget_exceeded. */
  budget_usd: z.coerce.number().positive().optional(),
  /** budget_usd is the config's budget.batch_usd, not a --budget: a resume follows its own config's instead. */
  budget_from_config: z.stringbool().optional(),
  /** Which cap a budget_exceeded batch met: its own (`batch`) or the month's (`month`), for what to raise. */
  budget_stop: z.enum(['batch', 'month']).optional(),
  /**
   * The month's cap refused one of this run's calls for good: set by the worker's budget gate before
   * the row can end budget_exceeded, so closing the batch knows which cap stopped it (`budget_stop`).
   */
  month_cap_refused: z.stringbool().optional(),
  /** Its rows' fingerprints include their ids (batches created since ids counted): older batches' leave them out, and keep doing so. */
  fingerprint_ids: z.stringbool().optional(),
  prompt_column: z.string().default('prompt'),
  /** The input CSV's field separator, which results.csv uses too; set by the batch's first run. */
  csv_delimiter: z.enum([',', ';', '\t']).default(','),
  /** The input CSV started with a byte order mark (Excel's "CSV UTF-8"): results.csv does too, so Excel reads it as UTF-8. */
  csv_bom: z.stringbool().optional(),
  /** Added to by workers only (HINCRBY), so save() never writes it. */
  cost_nanos: z.coerce.number().int().default(0),
  /** Why the last run stopped reading the input part-way (the HTTP API's runs, which have nobody to tell at once). */
  input_error: z.string().optional(),
  /**
   * The notes the last run said once its file was read (the judge answering rows too, request fields
   * not sent, max_tokens above a model's cap): an HTTP API run's POST is answered before, so they are
   * kept here for its batch view (JSON in the hash).
   */
  file_notes: z.preprocess(parseJsonText, z.array(z.string())).optional(),
  started_at: z.string().optional(),
  finished_at: z.string().optional(),
});
export type BatchMeta = z.infer<typeof batchMetaSchema>;

/** A hash field holding JSON; text that is not JSON is passed on for the schema to reject. */
function parseJsonText(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

/**
 * Fields a run sets afresh each time: absent from its meta, they are deleted from the stored one
 * (the server it was posted to, which a CLI resume is not; its choices of model, A/B split and budget; the last run's finish, which a run going on would show,
 * why it could not read its file and what it noted once it had, and whether the month's cap refused its calls: a resume runs every
 * row that cap stopped again).
 */
const CLEARABLE_FIELDS = ['server_config', 'server_config_from', 'model_override', 'ab_split', 'cache_off', 'budget_usd', 'budget_from_config', 'finished_at', 'input_error', 'month_cap_refused', 'file_notes'] as const;

/** Hash fields are text: objects go in as JSON. */
const fieldText = (value: unknown): string => (typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value));

export interface BatchProgress {
  total: number | null;
  /** While `total` is unknown: the producer's estimate of it, when it has one. */
  estimatedTotal: number | null;
  finished: number;
  succeeded: number;
  failed: number;
  costUsd: number;
  status: BatchStatus;
}

export class BatchStore {
  readonly redis: Redis;
  readonly space: KeySpace;

  constructor(redis: Redis, space: KeySpace) {
    this.redis = redis;
    this.space = space;
  }

  keys(batchId: string) {
    return batchKeys(this.space, batchId);
  }

  async load(batchId: string): Promise<BatchMeta | null> {
    const raw = await this.redis.hgetall(this.keys(batchId).meta);
    if (Object.keys(raw).length === 0) return null;
    const parsed = batchMetaSchema.safeParse(raw);
    if (!parsed.success) throw new DamagedBatchError(batchId, parsed.error);
    return parsed.data;
  }

  async save(meta: Omit<BatchMeta, 'cost_nanos'>, config: SwitchyardConfig): Promise<void> {
    const keys = this.keys(meta.batch_id);
    const fields = Object.fromEntries(Object.entries(meta).filter(([key, value]) => value !== undefined && key !== 'cost_nanos').map(([k, v]) => [k, fieldText(v)]));
    // A run that drops the batch's --model or --ab (--route auto, another choice) must not leave the old one behind.
    const dropped = CLEARABLE_FIELDS.filter((field) => meta[field] === undefined);
    const tx = this.redis.multi();
    if (dropped.length > 0) tx.hdel(keys.meta, ...dropped);
    await tx
      .hset(keys.meta, fields)
      .set(keys.config, JSON.stringify(config))
      .zadd(batchIndexKey(this.space), Date.parse(meta.created_at), meta.batch_id)
      .exec();
  }

  async update(batchId: string, fields: Partial<Pick<BatchMeta, 'status' | 'total' | 'estimated_total' | 'invalid_rows' | 'invalid_codes' | 'input_kind' | 'started_at' | 'finished_at' | 'input_error' | 'file_notes' | 'budget_stop' | 'month_cap_refused' | 'compare_long_prompts'>>): Promise<void> {
    const entries = Object.entries(fields).filter(([, value]) => value !== undefined).map(([k, v]) => [k, fieldText(v)]);
    if (entries.length > 0) await this.redis.hset(this.keys(batchId).meta, Object.fromEntries(entries));
  }

  async loadConfigJson(batchId: string): Promise<string | null> {
    return this.redis.get(this.keys(batchId).config);
  }

  /** The config the batch's last run saved (`json` as stored), or null; a damaged one throws DamagedBatchError. */
  async loadConfig(batchId: string): Promise<{ config: SwitchyardConfig; json: string } | null> {
    const json = await this.loadConfigJson(batchId);
    if (json === null) return null;
    const parsed = configSchema.safeParse(storedJson(json));
    if (!parsed.success) throw new DamagedBatchError(batchId, parsed.error);
    return { config: parsed.data, json };
  }

  async progress(batchId: string): Promise<BatchProgress | null> {
    return (await this.loadWithProgress(batchId))?.progress ?? null;
  }

  /** The meta and the progress from one read of the meta hash (progress needs it too). */
  async loadWithProgress(batchId: string): Promise<{ meta: BatchMeta; progress: BatchProgress } | null> {
    const keys = this.keys(batchId);
    const [meta, finished, succeeded] = await Promise.all([
      this.load(batchId),
      this.redis.bitcount(keys.finished),
      this.redis.bitcount(keys.succeeded),
    ]);
    if (!meta) return null;
    const progress: BatchProgress = {
      total: meta.total ?? null,
      estimatedTotal: meta.estimated_total ?? null,
      finished,
      succeeded,
      failed: finished - succeeded,
      costUsd: meta.cost_nanos / 1e9,
      status: meta.status,
    };
    return { meta, progress };
  }

  /** Row numbers (from `fromRow`, `count` of them) whose succeeded bit is set, read in one call. */
  async succeededRows(batchId: string, fromRow: number, count: number): Promise<Set<number>> {
    return this.rowsSetIn(this.keys(batchId).succeeded, fromRow, count);
  }

  /** Row numbers (from `fromRow`, `count` of them) withdrawn with their answer set aside (withdraw-rows.ts), read in one call. */
  async setAsideRows(batchId: string, fromRow: number, count: number): Promise<Set<number>> {
    return this.rowsSetIn(this.keys(batchId).setAside, fromRow, count);
  }

  /** Row numbers (from `fromRow`, `count` of them) whose finished bit is set, read in one call. */
  async finishedRows(batchId: string, fromRow: number, count: number): Promise<Set<number>> {
    return this.rowsSetIn(this.keys(batchId).finished, fromRow, count);
  }

  private async rowsSetIn(key: string, fromRow: number, count: number): Promise<Set<number>> {
    const firstByte = Math.floor(fromRow / 8);
    const lastByte = Math.floor((fromRow + count - 1) / 8);
    const bytes = await this.redis.getrangeBuffer(key, firstByte, lastByte);
    const rows = new Set<number>();
    for (let i = 0; i < bytes.length; i++) {
      const byte = bytes[i] ?? 0;
      if (byte === 0) continue;
      for (let bit = 0; bit < 8; bit++) {
        // Redis bitmaps number bits from the most significant bit of each byte.
        const row = (firstByte + i) * 8 + bit;
        if (byte & (0x80 >> bit) && row >= fromRow && row < fromRow + count) rows.add(row);
      }
    }
    return rows;
  }

  /** The metadata keys of the batch's rows, in the order the producer first saw them. */
  async metadataKeys(batchId: string): Promise<string[]> {
    return this.redis.lrange(this.keys(batchId).metadataKeys, 0, -1);
  }

  async addMetadataKeys(batchId: string, keys: readonly string[]): Promise<void> {
    // In chunks: spread as one call's arguments, a CSV's 150,000 columns overflowed the stack and stopped its file (QA).
    for (let start = 0; start < keys.length; start += METADATA_KEYS_CHUNK) await this.redis.rpush(this.keys(batchId).metadataKeys, ...keys.slice(start, start + METADATA_KEYS_CHUNK));
  }

  async recentBatchIds(limit: number): Promise<string[]> {
    return this.redis.zrevrange(batchIndexKey(this.space), 0, limit - 1);
  }

  /**
   * `limit` batches, newest first: the newest, or (`afterId`) those created before that one; and
   * whether older ones follow. Null when `afterId` is no batch (forgotten since, say).
   */
  async batchIdsAfter(afterId: string | null, limit: number): Promise<{ ids: string[]; more: boolean } | null> {
    // One more than asked for tells whether more follow.
    const ids = afterId === null ? await this.redis.zrevrange(batchIndexKey(this.space), 0, limit) : await runScript(this.redis, IDS_AFTER, [batchIndexKey(this.space)], [afterId, limit]);
    if (!Array.isArray(ids)) return null;
    const page = ids.map(String);
    return { ids: page.slice(0, limit), more: page.length > limit };
  }

  async batchCount(): Promise<number> {
    return this.redis.zcard(batchIndexKey(this.space));
  }
}

/** The index's ids after ARGV[1], ARGV[2] + 1 of them, newest first; false when ARGV[1] is not in it. One script: a batch created between the rank and the range would shift the page. */
const IDS_AFTER: LuaScript = {
  name: 'batch_ids_after',
  numberOfKeys: 1,
  lua: `
local rank = redis.call('ZREVRANK', KEYS[1], ARGV[1])
if not rank then return false end
return redis.call('ZREVRANGE', KEYS[1], rank + 1, rank + 1 + tonumber(ARGV[2]))
`,
};

/**
 * A batch record in Redis that is not one Switchyard wrote whole, or none at all under a batch in
 * use: Redis came back without its data, or its keys were deleted (by hand, a FLUSHALL, or a
 * maxmemory policy that evicts any key), and a worker's publish may have re-created the hash with
 * only the running cost in it.
 */
export class DamagedBatchError extends SetupError {
  override name = 'DamagedBatchError';
  readonly #batchId: string;
  /** What happened to the record and what Redis must do, without the way on, which depends on who reads it. */
  readonly #damage: string;
  /** `error`: what does not parse in the record; 'gone' when the record is not there at all. */
  constructor(batchId: string, error: z.ZodError | 'gone') {
    const what =
      error === 'gone'
        ? 'its record in Redis is gone while it was in use: Redis lost its data (restarted without persistence, or from an older snapshot), or its keys were deleted or evicted. '
        : `its record in Redis is incomplete (${[...new Set(error.issues.map((issue) => String(issue.path[0] ?? '?')))].join(', ')}): Redis lost its data while it was in use (restarted without persistence, or from an older snapshot), or its keys were deleted or evicted. `;
    const damage = `batch ${batchId}: ${what}Redis must keep them: persistence on, maxmemory-policy noeviction, and no deleting the keys of a batch in use. `;
    super(`${damage}Then run the file again as a new batch (a new --batch-id, and a new --out: the folder is this batch's); \`switchyard forget ${batchId}\` removes what is left of this one.`);
    this.#batchId = batchId;
    this.#damage = damage;
  }

  /**
   * The same for a batch posted over the API, whose client has no --batch-id or --out to give (QA: it was told
   * them): it posts the file again under another batch_id; forgetting the rest is the server's operator's.
   */
  forApi(): string {
    return `${this.#damage}Then post the file again as a new batch, under another batch_id (this one's folder holds its outputs); \`switchyard forget ${this.#batchId}\`, where the server runs, removes what is left of this one.`;
  }
}
