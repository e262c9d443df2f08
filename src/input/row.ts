import type { CsvDelimiter } from './csv-delimiter.ts';
import type { LookalikeColumn } from './row-field-lookalikes.ts';
import { z } from 'zod';

/**
 * A message's content: text, or OpenAI's list of content parts when every part is text (as tools
 * that write Batch files often do), joined by newlines. Images, audio and files are refused.
 */
const messageContentSchema = z.union([z.string(), z.array(z.looseObject({ type: z.string() })).min(1)], { error: 'expected text, or a list of {"type": "text", "text": "..."} parts' }).transform((content, ctx) => {
  if (typeof content === 'string') return content;
  const texts: string[] = [];
  for (const part of content) {
    if (part.type !== 'text' || typeof part['text'] !== 'string') {
      ctx.addIssue({ code: 'custom', message: `only text content parts are supported, not "${part.type}"` });
      return z.NEVER;
    }
    texts.push(part['text']);
  }
  return texts.join('\n');
});

export const chatMessageSchema = z.strictObject({
  role: z.enum(['system', 'user', 'assistant', 'developer']),
  content: messageContentSchema,
  /** A participant's name, sent as given (OpenAI's chat messages take one). */
  name: z.string().min(1).optional(),
});
export type ChatMessage = z.infer<typeof chatMessageSchema>;

/** The message that asks: the last user message, else the last message (a record of system text alone). */
export function askingMessage(messages: readonly ChatMessage[]): ChatMessage | undefined {
  return messages.findLast((message) => message.role === 'user') ?? messages.at(-1);
}

/** One valid prompt read from an input file, before it becomes a job. */
export interface InputRow {
  /** 1-based position among the file's records (CSV data rows, JSONL lines); the job id is built from it. */
  row: number;
  /** 1-based line in the file where the record starts, for messages. */
  line: number;
  /** The row's own id column / custom_id, else the row number as text. */
  id: string;
  messages: ChatMessage[];
  model?: string;
  temperature?: number;
  max_tokens?: number;
  metadata: Record<string, unknown>;
  /** Set for OpenAI Batch API input lines, so the batch output files can be written. */
  custom_id?: string;
  /** Other request fields sent with the call as given (an OpenAI Batch line's top_p, stop, ...). */
  params?: Record<string, unknown>;
  /** Put to `model` by --compare (compare-fan-out.ts), not named by the record: its route_reason says so. */
  compared?: true;
}

/** A record that could not become a job; it is written to errors.jsonl and the batch goes on. */
export interface RowError {
  row: number;
  line: number;
  id?: string;
  /** The line's custom_id, for an OpenAI Batch API line: its failure goes to batch_errors.jsonl too. */
  custom_id?: string;
  code: 'missing_prompt' | 'bad_json' | 'bad_field' | 'unknown_model' | 'bad_csv' | 'bad_encoding' | 'duplicate_id';
  message: string;
}

/** Invalid rows by reason code: how many, and the first one's message with its line (for reports). */
export type InvalidRowCounts = Partial<Record<RowError['code'], { rows: number; example: string }>>;

/** Counts a row error into `counts` (the first of each code becomes its example). */
export function countInvalidRow(counts: InvalidRowCounts, error: RowError): void {
  const entry = counts[error.code];
  if (entry) entry.rows += 1;
  else counts[error.code] = { rows: 1, example: error.message.startsWith('line ') ? error.message : `line ${error.line}: ${error.message}` };
}

export type ReadItem = { kind: 'row'; value: InputRow } | { kind: 'error'; value: RowError };

/**
 * What the producer queues: the reader's items, and row numbers the batch leaves empty this run
 * (`vacant`: the other models' numbers of a --compare record that is invalid or names its own
 * model). A resume withdraws what an earlier run left at a vacant number, as at an invalid row's.
 */
export type QueueItem = ReadItem | { kind: 'vacant'; value: { row: number } };

/** How far a reader is into its file, so the row count can be estimated before the end. */
export interface ReadPosition {
  /** Bytes up to the end of the last record handed out. */
  bytesRead: number;
  /** The file's size when it was opened (0 when unknown, e.g. a pipe). */
  fileBytes: number;
  /** A CSV file's field separator, once its header is read (results.csv uses the same). */
  csvDelimiter?: CsvDelimiter;
  /** Whether the CSV file starts with a UTF-8 byte order mark (results.csv then does too). */
  csvBom?: boolean;
  /** CSV header columns that look meant as row fields (`Model`, `Max_Tokens`) but, not named exactly so, are metadata. */
  csvLookalikeColumns?: LookalikeColumn[];
  /** CSV header columns named as a request field that JSONL lines send (`response_format`, `seed`): metadata in a CSV. */
  csvRequestFieldColumns?: string[];
  /** OpenAI request fields at a JSONL prompt line's top level that are not sent (`n`, `stream`, `tools`...), kept as metadata: how many lines had each. */
  unsentRequestFields?: Record<string, number>;
}

/** Fields every reader understands besides the prompt itself. */
export interface RowRules {
  promptColumn: string;
  /** Models a row may name; any other value becomes an `unknown_model` error. */
  knownModels: ReadonlySet<string>;
  /** Numeric text may have a decimal comma ("0,7"): a `;` CSV file, as Excel writes where that is the decimal mark. */
  decimalComma?: boolean;
  /** The file was posted to the HTTP API (`serve`): advice names what to change in the request, not what to run. */
  overHttp?: boolean;
  /** The file was UTF-16 (read from a UTF-8 copy): a record refused for its code units is said to be no UTF-16 text. */
  utf16?: boolean;
}
