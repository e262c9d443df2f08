import { createHash } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { readJsonl } from './read-jsonl.ts';
import type { RowError } from '../input/row.ts';
import type { RowResult } from './records.ts';

/**
 * Output files in the OpenAI Batch API format, for batches whose input was Batch API lines.
 * Each line is a BatchRequestOutput: `{ id, custom_id, response, error }`.
 *
 * - Succeeded row -> batch_output.jsonl:
 *   `response: { status_code: 200, request_id, body: <chat.completion> }, error: null`.
 * - Failed row that got an HTTP answer (error.http_status set) -> batch_errors.jsonl:
 *   `response: { status_code: <status>, request_id, body: { error: { message, type, param: null,
 *   code } } }, error: null`, as OpenAI reports a request that failed with an HTTP error.
 * - Failed row with no HTTP answer (timeout, connection refused, budget stop...) ->
 *   batch_errors.jsonl: `response: null, error: { code, message }`, as OpenAI reports requests
 *   it could not run (e.g. `batch_expired`).
 * - Invalid request line that has a custom_id (an unknown model, a bad field; from errors.jsonl)
 *   -> batch_errors.jsonl the same way, so every custom_id of the input has its line in one of the
 *   two files. A repeated custom_id is left out: its first line's answer (or error) already has
 *   that id. A prompt line in the same file ({"prompt"}, no custom_id) is in results.jsonl only.
 *
 * Ids are deterministic, derived from the batch id and row (so a re-run writes the same files):
 * `batch_req_<hex>` for the line, `chatcmpl-<hex>` for the completion, and `req_<hex>` as
 * request_id when the provider's own request id is unknown. Both files are always written,
 * possibly empty. Lines keep results.jsonl's (input) order.
 */
export interface OpenAiBatchFiles {
  outputPath: string;
  errorsPath: string;
  succeeded: number;
  failed: number;
}

interface ChatCompletionBody {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: { role: 'assistant'; content: string | null; refusal: string | null };
    logprobs: null;
    finish_reason: string;
  }>;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  system_fingerprint: null;
}

interface OpenAiErrorBody {
  error: { message: string; type: string; param: null; code: string };
}

interface BatchRequestOutputLine {
  id: string;
  custom_id: string;
  response: { status_code: number; request_id: string; body: ChatCompletionBody | OpenAiErrorBody } | null;
  error: { code: string; message: string } | null;
}

const BATCH_OUTPUT_FILE = 'batch_output.jsonl';
const BATCH_ERRORS_FILE = 'batch_errors.jsonl';

export async function writeOpenAiBatchFiles(
  resultsJsonlPath: string,
  invalidRowsJsonlPath: string,
  outDir: string,
  batchId: string,
): Promise<OpenAiBatchFiles> {
  const outputPath = join(outDir, BATCH_OUTPUT_FILE);
  const errorsPath = join(outDir, BATCH_ERRORS_FILE);
  const output = lineWriter(outputPath);
  const errors = lineWriter(errorsPath);
  let succeeded = 0;
  let failed = 0;
  // errors.jsonl is in input order too: its request lines are merged in by row.
  const invalid = invalidRequestLines(invalidRowsJsonlPath)[Symbol.asyncIterator]();
  let nextInvalid = await invalid.next();
  const writeInvalidBefore = async (row: number) => {
    while (!nextInvalid.done && nextInvalid.value.row < row) {
      failed += 1;
      await errors.write(invalidRequestLine(nextInvalid.value, batchId));
      nextInvalid = await invalid.next();
    }
  };
  try {
    for await (const result of readJsonl<RowResult>(resultsJsonlPath)) {
      // A prompt line among the Batch lines has no custom_id to be matched by: results.jsonl alone has it.
      if (result.custom_id === undefined) continue;
      await writeInvalidBefore(result.row);
      const line = toBatchOutputLine(result, batchId);
      if (result.status === 'succeeded') {
        succeeded += 1;
        await output.write(line);
      } else {
        failed += 1;
        await errors.write(line);
      }
    }
    await writeInvalidBefore(Number.POSITIVE_INFINITY);
  } catch (error) {
    output.abort();
    errors.abort();
    throw error;
  }
  await Promise.all([output.close(), errors.close()]);
  return { outputPath, errorsPath, succeeded, failed };
}

/**
 * The invalid rows that were request lines with a custom_id; none when there is no errors.jsonl. A
 * repeated custom_id (duplicate_id) is not one: its first line's answer is that id's line.
 */
async function* invalidRequestLines(path: string): AsyncGenerator<RowError & { custom_id: string }> {
  if (!existsSync(path)) return;
  for await (const error of readJsonl<RowError>(path)) {
    if (error.custom_id !== undefined && error.code !== 'duplicate_id') yield { ...error, custom_id: error.custom_id };
  }
}

/** An invalid request line as OpenAI reports a request it could not run: no response, an error. */
function invalidRequestLine(error: RowError & { custom_id: string }, batchId: string): BatchRequestOutputLine {
  const message = error.message.startsWith('line ') ? error.message : `line ${error.line}: ${error.message}`;
  return { id: `batch_req_${lineHash(batchId, error.row).slice(0, 32)}`, custom_id: error.custom_id, response: null, error: { code: error.code, message } };
}

function lineHash(batchId: string, row: number): string {
  return createHash('sha256').update(`${batchId}\u0000${row}`).digest('hex');
}

/** One result as an OpenAI Batch output line (see the module comment for the format). */
function toBatchOutputLine(result: RowResult, batchId: string): BatchRequestOutputLine {
  const hash = lineHash(batchId, result.row);
  const customId = result.custom_id ?? result.id;
  const requestId = result.request_id ?? `req_${hash.slice(32, 64)}`;
  const base = { id: `batch_req_${hash.slice(0, 32)}`, custom_id: customId };

  if (result.status === 'succeeded') {
    const { input_tokens: prompt, output_tokens: completion } = result.usage;
    const body: ChatCompletionBody = {
      id: `chatcmpl-${hash.slice(32, 64)}`,
      object: 'chat.completion',
      created: Math.floor(Date.parse(result.completed_at) / 1000),
      model: result.model,
      choices: [
        {
          index: 0,
          // A refusal's content is null, as the provider sent it.
          message: { role: 'assistant', content: result.refusal !== undefined && result.output === '' ? null : result.output, refusal: result.refusal ?? null },
          logprobs: null,
          finish_reason: result.finish_reason ?? 'stop',
        },
      ],
      usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
      system_fingerprint: null,
    };
    return { ...base, response: { status_code: 200, request_id: requestId, body }, error: null };
  }

  const code = result.error?.code ?? 'unknown_error';
  const message = result.error?.message ?? 'The request failed.';
  const status = result.error?.http_status;
  if (typeof status === 'number') {
    const body: OpenAiErrorBody = { error: { message, type: errorType(status), param: null, code } };
    return { ...base, response: { status_code: status, request_id: requestId, body }, error: null };
  }
  return { ...base, response: null, error: { code, message } };
}

/** OpenAI's error `type` for an HTTP status (its error bodies carry one). */
function errorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

interface LineWriter {
  write(value: unknown): Promise<void>;
  close(): Promise<void>;
  abort(): void;
}

/** A JSONL file writer that waits for `drain` and turns stream errors into rejections. */
function lineWriter(path: string): LineWriter {
  const stream = createWriteStream(path);
  let failure: unknown;
  stream.on('error', (error) => {
    failure ??= error;
  });
  return {
    async write(value) {
      if (failure !== undefined) throw failure;
      if (!stream.write(`${JSON.stringify(value)}\n`)) await once(stream, 'drain');
    },
    async close() {
      stream.end();
      try {
        await finished(stream);
      } catch (error) {
        failure ??= error;
      }
      if (failure !== undefined) throw failure;
    },
    abort() {
      stream.destroy();
    },
  };
}
