import type { BatchMeta, BatchProgress } from '../queue/batch-state.ts';
import { isFinishedStatus } from '../queue/batch-state.ts';
import { abSplitParameter } from '../routing/ab-split.ts';
import type { BatchWaiting } from '../queue/batch-waiting.ts';

/** The output files the API serves, by the name a client asks for, with their media types. */
export const OUTPUT_FILES = {
  'results.jsonl': 'application/x-ndjson; charset=utf-8',
  'results.csv': 'text/csv; charset=utf-8',
  'compare.csv': 'text/csv; charset=utf-8',
  'costs.jsonl': 'application/x-ndjson; charset=utf-8',
  'errors.jsonl': 'application/x-ndjson; charset=utf-8',
  'report.json': 'application/json; charset=utf-8',
  'report.md': 'text/markdown; charset=utf-8',
  'batch_output.jsonl': 'application/x-ndjson; charset=utf-8',
  'batch_errors.jsonl': 'application/x-ndjson; charset=utf-8',
} as const;
export type OutputFileName = keyof typeof OUTPUT_FILES;

export function isOutputFileName(name: string): name is OutputFileName {
  return Object.hasOwn(OUTPUT_FILES, name);
}

/** A batch as the API shows it: its state, its row counts and cost so far, and where its outputs are. */
export interface BatchView {
  batch_id: string;
  status: BatchMeta['status'];
  /** The outputs are written: the files below can be fetched. */
  finished: boolean;
  /** A cancel asked of this server is under way: the status turns `cancelled` once the rows in hand finish. */
  cancelling: boolean;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  rows: {
    /** Valid rows; null while the file is still being read. */
    total: number | null;
    finished: number;
    succeeded: number;
    failed: number;
    invalid: number;
  };
  cost_usd: number;
  budget_usd: number | null;
  /** What the batch was posted with (model=, ab=, judge=), which a repost keeps: null when not given. */
  model: string | null;
  ab: string | null;
  /** The splits (as `ab`) earlier runs of the batch ran under, oldest first, when a repost or resume changed or dropped it: their rows keep their arms. */
  ab_before: string[];
  /** The models the batch compares (compare=, as given: "a,b"), which every run of it keeps; null when not given. */
  compare: string | null;
  judge: string | null;
  /** false when posted with cache=false (kept by a repost until cache=true); null otherwise: the config's answer cache, if it has one. */
  cache: false | null;
  /** Why its file could not be read to the end; the rows before are queued or done, and posting the fixed file finishes it. */
  input_error: string | null;
  /**
   * What the run noted once the file was read, which the POST's `notes` could not hold when the answer
   * came first (the judge answering rows too, request fields not sent, max_tokens above a model's
   * cap): [] until then, and when it noted nothing.
   */
  file_notes: string[];
  /**
   * Worker processes connected to the queue now, while the batch is unfinished (0: its rows wait for
   * a `switchyard worker`); null once finished, or where Redis does not list its clients.
   */
  workers: number | null;
  /**
   * Why its rows wait, as a worker said it last (a rate limit's next free slot, a budget held by calls
   * in flight, a 429's cooldown, an open circuit), with since when: while that is current (said in the
   * last minute or its wait not over, and no row finished since a few seconds after it); null otherwise.
   */
  waiting: BatchWaiting | null;
  out_dir: string;
  /** URLs of the output files, once the batch is finished. */
  files: Partial<Record<OutputFileName, string>>;
  links: { self: string; results: string; report: string };
}

export function batchPath(batchId: string): string {
  return `/v1/batches/${encodeURIComponent(batchId)}`;
}

/** `present`: the output files that exist in the batch's folder (only looked at once it is finished). */
export function batchView(meta: BatchMeta, progress: BatchProgress, present: ReadonlySet<OutputFileName> = new Set(), cancelling = false, workers: number | null = null, waiting: BatchWaiting | null = null): BatchView {
  const self = batchPath(meta.batch_id);
  const finished = isFinishedStatus(progress.status);
  const files: Partial<Record<OutputFileName, string>> = {};
  if (finished) for (const name of Object.keys(OUTPUT_FILES) as OutputFileName[]) if (present.has(name)) files[name] = `${self}/files/${name}`;
  return {
    batch_id: meta.batch_id,
    status: progress.status,
    finished,
    // The cancel's last steps follow the status it wrote.
    cancelling: cancelling && !finished,
    created_at: meta.created_at,
    started_at: meta.started_at ?? null,
    finished_at: meta.finished_at ?? null,
    // While the file is read (again), an earlier run's total is not this one's (QA: a re-post showed the last run's 200 of 200).
    rows: { total: progress.status === 'enqueuing' ? null : progress.total, finished: progress.finished, succeeded: progress.succeeded, failed: progress.failed, invalid: meta.invalid_rows },
    cost_usd: progress.costUsd,
    budget_usd: meta.budget_usd ?? null,
    model: meta.model_override ?? null,
    ab: meta.ab_split ? abSplitParameter(meta.ab_split) : null,
    ab_before: (meta.ab_splits_before ?? []).map(abSplitParameter),
    compare: meta.compare ? meta.compare.join(',') : null,
    judge: meta.judge_model ?? null,
    cache: meta.cache_off ? false : null,
    input_error: meta.input_error ?? null,
    file_notes: meta.file_notes ?? [],
    workers: finished ? null : workers,
    waiting: finished ? null : waiting,
    out_dir: meta.out_dir,
    files,
    links: { self, results: `${self}/results`, report: `${self}/report` },
  };
}
