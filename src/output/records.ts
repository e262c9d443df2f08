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
  /** Why the call was made: the row's answer (later: classifier, ensemble member, synthesis, judge). */
  purpose: 'answer';
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
  finish_reason?: string | null;
  request_id?: string | null;
  completed_at: string;
}

/** What a worker publishes for the collector when a row is finished. */
export interface RowEvent {
  result: RowResult;
  calls: CallRecord[];
}
