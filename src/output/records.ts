/** The lines Switchyard writes: one result per row, one cost record per model call. */

export interface Usage {
  input_tokens: number;
  output_tokens: number;
}

export interface CallRecord {
  batch_id: string;
  row: number;
  id: string;
  model: string;
  /** 1-based count of calls made for this row to this model. */
  attempt: number;
  /** Why the call was made: the row's answer, labelling its task type, an ensemble member's answer, the ensemble's synthesis, or scoring the answer (judge). */
  purpose: 'answer' | 'classify' | 'ensemble_member' | 'synthesis' | 'judge';
  /** The row's task type when known (null for the classifier call that decides it). */
  task_type: string | null;
  /** Position of `model` in the row's chain: 0 first choice, 1+ a fallback; null for classifier calls. */
  chain_position: number | null;
  /** The A/B arm (`--ab`) the row was in when the call was made; absent without a split. */
  ab_arm?: string;
  status: 'succeeded' | 'failed';
  /** null when no HTTP answer arrived (timeout, connection refused). */
  http_status: number | null;
  input_tokens: number;
  output_tokens: number;
  /** null when the model has no configured price. */
  cost_usd: number | null;
  latency_ms: number;
  started_at: string;
  error_code?: string;
  /** A failed call's error, as a row's would say it (which model, at which URL, what went wrong); at most CALL_ERROR_CHARS long. */
  error_message?: string;
  /** The provider sent no token usage: the tokens (and so the cost) are Switchyard's count. */
  usage_estimated?: true;
  /** A streamed call (models.<name>.stream): ms from its start to the first token of the answer. */
  ttft_ms?: number;
  /**
   * How long the model's rate limits (rpm, tpm or a 429's cooldown, shared by every batch and worker
   * on its endpoint) made the call wait for its slot, in ms; absent when it did not wait.
   */
  limit_wait_ms?: number;
  /**
   * Only in a row's saved progress, never written out: the call is in the batch's costs already,
   * published when a stopped run took the row off the queue (src/queue/carried-rows.ts).
   */
  recorded?: true;
  /**
   * Only in a row's progress, never written out: the call's own id, given when the progress was
   * first saved in the row's job while the row went on (its worker may lose the job meanwhile,
   * paused past its lock, and the worker that takes it over carries the call). Both may publish it;
   * the batch's `published_calls` set lets only the first (row-events.ts).
   */
  saved_as?: string;
}

/** How much of a failed call's error its record keeps: the failure in full, a provider's long body cut (it is kept in every failed call's record, and in a parked row's job). */
const CALL_ERROR_CHARS = 500;

/** A failed call's error message as its record keeps it (error_message). */
export function callErrorMessage(message: string): string {
  return message.length <= CALL_ERROR_CHARS ? message : `${message.slice(0, CALL_ERROR_CHARS - 1)}…`;
}

export interface RowFailure {
  code: string;
  message: string;
  http_status?: number | null;
}

export interface RowResult {
  id: string;
  row: number;
  status: 'succeeded' | 'failed';
  model: string;
  output: string | null;
  usage: Usage;
  /** Sum of this row's calls; null when a model called had no price. */
  cost_usd: number | null;
  latency_ms: number;
  attempts: number;
  error?: RowFailure;
  metadata: Record<string, unknown>;
  custom_id?: string;
  /** Routing: the task type, why this chain, every model called or skipped, the one that answered. */
  task_type: string | null;
  route_reason: string;
  models_tried: string[];
  final_model: string | null;
  /** The arm of the batch's A/B split (`--ab`) the row's id gave it: a model, an ensemble or `auto` (routed); absent without a split, or for a row naming its own model. */
  ab_arm?: string;
  /** Why the row left its first-choice model(s), e.g. "deepseek-v4-pro: server_error after 4 attempts"; null when it did not. */
  fallback_reason: string | null;
  finish_reason?: string | null;
  /**
   * A row cut off at a token limit (finish_reason "length"): its answer call's output tokens, which
   * `usage` may exceed (an LLM classifier's call, a broken stream's, counted there too). Absent in
   * results written before it, and for a row answered from the cache (`cached.usage` has them).
   */
  answer_output_tokens?: number;
  /** The model declined to answer (its message's `refusal`): why, in its words; `output` is then "". */
  refusal?: string;
  request_id?: string | null;
  /** For a row answered by an ensemble: each member's answer (or why it has none); `output` is the synthesis. */
  ensemble?: EnsembleOutcome;
  /** The judge's score of a succeeded answer (config `judge`); its call is not in the row's usage, cost or attempts. */
  judge?: JudgeOutcome;
  /** For a row answered from the cache (config `cache`): no call was made for it. */
  cached?: CacheOrigin;
  completed_at: string;
}

/** Where a cached answer came from, and what it would have cost to ask for it again. */
export interface CacheOrigin {
  /** The row whose call gave the answer, and when. */
  batch_id: string;
  row: number;
  cached_at: string;
  /** That call's tokens. */
  usage: { input_tokens: number; output_tokens: number };
  /** Those tokens at the model's price now; null for a model with no price. */
  saved_usd: number | null;
}

export interface JudgeOutcome {
  /** The judge model as configured, and the one that scored (it may be a fallback of it). */
  model: string;
  final_model: string | null;
  /** 1 to 10; null when the judge's calls failed or its reply held no score (then `error` says why). */
  score: number | null;
  reason: string | null;
  /** What the judge's calls cost (null when its model has no price). */
  cost_usd: number | null;
  error?: RowFailure;
}

export interface EnsembleOutcome {
  name: string;
  synthesizer: string;
  /** `model` is the member as configured; `final_model` the one that answered (it may be a fallback of the member's). */
  members: Array<{ model: string; status: 'succeeded' | 'failed'; output: string | null; final_model: string | null; error?: RowFailure }>;
}

/** What a worker publishes for the collector when a row is finished. */
export interface RowEvent {
  result: RowResult;
  calls: CallRecord[];
}
