import { formatUsd } from '../models/pricing.ts';
import type { Report } from '../output/report-json.ts';
import { counted, formatCount, formatDuration } from '../figure-text.ts';
import type { BatchProgress } from '../queue/batch-state.ts';
import type { EnqueueCounts } from '../queue/producer.ts';
import type { CompareTally } from '../routing/compare-fan-out.ts';
import type { Session } from '../queue/session.ts';
import type { Unqueued } from '../queue/unqueue-batch.ts';
import { ROWS_PER_PRIORITY } from '../queue/row-priority.ts';
import { deadProcessRowsText, type ReleasedRows } from '../queue/worker-registry.ts';
import { ROW_FIELD_COLUMNS, type LookalikeColumn } from '../input/row-field-lookalikes.ts';

/**
 * The last line of an interrupted run, once the rows in hand have finished: where the batch stands
 * and how to go on. `report` is the outputs so far, when they could be written.
 */
export async function stoppedText(session: Session, batchId: string, report: Report | null, unqueued: Unqueued | 'failed' | null): Promise<string> {
  const resume = `switchyard run --resume ${batchId}`;
  const queue = unqueuedText(report ? notWrittenElsewhere(unqueued, report) : unqueued);
  if (report) return `Stopped early: the outputs above hold the ${counted(report.totals.rows, 'row')} finished so far.${queue} Nothing done is lost or paid for again: ${resume} runs the rest and writes them whole.`;
  const progress = await session.store.progress(batchId).catch(() => null);
  if (!progress) return `Stopped.${queue} Go on with: ${resume}`;
  const done = `${formatCount(progress.finished)}${progress.total === null ? '' : ` of ${formatCount(progress.total)}`} rows done`;
  return `Stopped: ${done} (${formatCount(progress.failed)} failed), ${formatUsd(progress.costUsd)} spent.${queue} Nothing done is lost or paid for again: ${resume}`;
}

/**
 * The rows other processes were running, counted before the outputs were written: one that
 * finished in between is in them, and is not counted again (each row once: written, taken off the
 * queue, or still running elsewhere).
 */
function notWrittenElsewhere(unqueued: Unqueued | 'failed' | null, report: Report): Unqueued | 'failed' | null {
  const unfinished = report.totals.unfinished_rows;
  if (unqueued === null || unqueued === 'failed' || unqueued.elsewhere === undefined || unfinished === null) return unqueued;
  return { ...unqueued, elsewhere: Math.min(unqueued.elsewhere, Math.max(0, unfinished - unqueued.removed)) };
}

/**
 * What becomes of a gone run's queued rows meanwhile: a worker or server on the same Redis serves
 * every batch's rows, and would run them (QA: a `serve` ran a stopped nightly's rows, unsaid).
 */
const QUEUED_ROWS_SERVED =
  "Until then, a `switchyard worker` or `switchyard serve` on this Redis (and prefix) runs them if one is running: their answers are kept for the resume, which writes them without paying again, and what they cost counts toward the month's spend (budget.monthly_usd).";

/**
 * What a run that gave up on a Redis that stayed away (in its stop, or mid-run past its wait limit)
 * leaves: the rows finished are kept there (as last seen, when they were), the calls in flight and
 * the answers waiting for Redis are not recorded, the queued rows stay queued; the resume, once
 * Redis is back, goes on and writes the outputs. `during`: "of the stop (SIGTERM; a stop waits 30 s for it: SWITCHYARD_STOP_WAIT_S)", or the limit.
 */
export function redisStayedAwayText(redisLabel: string, batchId: string, during: string, awayMs: number, lastSeen: BatchProgress | null): string {
  const done =
    lastSeen === null
      ? 'The rows finished so far stay done'
      : lastSeen.finished === 0
        ? 'No row had finished when last seen'
        : `${formatCount(lastSeen.finished)}${lastSeen.total === null ? '' : ` of ${formatCount(lastSeen.total)}`} rows were done when last seen (${formatCount(lastSeen.failed)} failed, ${formatUsd(lastSeen.costUsd)} spent) and stay done`;
  return (
    `Redis at ${redisLabel} has not answered for ${Math.round(awayMs / 1000)} s ${during}: giving up without writing the outputs.\n` +
    `${done}; the calls in flight are not recorded, nor the answers that waited for Redis (their rows run again, and are paid for again), and the batch's rows still queued stay in the queue (the next \`switchyard run\` on this Redis takes them off, this run being gone). ${QUEUED_ROWS_SERVED}\n` +
    `Once Redis is back (check that it is running and reachable): switchyard run --resume ${batchId} runs the rest and writes the outputs whole.`
  );
}

/**
 * Where a run stands that stopped on a line of its file it could not read: the rows before it that
 * finished, and what became of those still queued (`unqueued` null: a --detach'ed run's, left for
 * the workers).
 */
export async function unreadableFileText(session: Session, batchId: string, unqueued: Unqueued | 'failed' | null): Promise<string> {
  const progress = await session.store.progress(batchId).catch(() => null);
  const done =
    progress === null
      ? 'Stopped there: the rows before that line that had finished are kept.'
      : progress.finished === 0
        ? 'Stopped there: no row before that line had finished yet.'
        : `Stopped there: ${counted(progress.finished, 'row')} before that line had finished (${formatCount(progress.failed)} failed, ${formatUsd(progress.costUsd)} spent) and ${progress.finished === 1 ? 'is' : 'are'} kept.`;
  if (unqueued === null) return `${done} Rows before it that were queued stay queued for the workers.`;
  return `${done}${unqueuedText(unqueued)}`;
}

/** Rows already in the queue when a run starts (other batches', or this one's left by a --detach'ed run): its rows take turns with them (row-priority.ts). */
export function queuedAheadText(rows: number): string {
  return (
    `Note: ${counted(rows, 'row')} of other batches (from --detach, \`switchyard serve\` or another run) ${rows === 1 ? 'is' : 'are'} queued on this Redis: ` +
    `this run's rows take turns with ${rows === 1 ? 'it' : 'them'}, ${ROWS_PER_PRIORITY} at a time, and the workers here take ${rows === 1 ? 'it' : 'theirs'} too (each answer going to its own batch), so this run takes longer than alone.`
  );
}

/** What this run did with the queued rows of a batch whose run is gone. */
export function orphanedBatchText(batchId: string, unqueued: Unqueued): string {
  const kept = unqueued.kept > 0 ? ` (${counted(unqueued.kept, 'row')} taken by a worker meanwhile stay)` : '';
  return `Batch ${batchId} has rows queued but its run is gone (killed?): took ${counted(unqueued.removed, 'row')} off the queue${kept}, so this run does not run them for it. \`switchyard run --resume ${batchId}\` finishes it.`;
}

/** What became of the stopped batch's queued rows, as a sentence (with a leading space), or ''. */
function unqueuedText(unqueued: Unqueued | 'failed' | null): string {
  if (unqueued === 'failed') return ` Its queued rows could not be taken off the queue (Redis did not answer): the next \`switchyard run\` on this Redis takes them off, this run being gone. ${QUEUED_ROWS_SERVED}`;
  if (unqueued === null || unqueued.removed + unqueued.kept + (unqueued.elsewhere ?? 0) === 0) return '';
  const carried = unqueued.carried > 0 ? ` (${formatCount(unqueued.carried)} ${unqueued.carried === 1 ? 'keeps the answers it' : 'keep the answers they'} had for the resume)` : '';
  const removed = unqueued.removed > 0 ? ` ${counted(unqueued.removed, 'queued row')} came off the queue${carried}, so no other run or worker takes ${unqueued.removed === 1 ? 'it' : 'them'} meanwhile.` : '';
  const running = unqueued.elsewhere ?? unqueued.kept;
  const kept = running > 0 ? ` ${counted(running, 'row')} other workers were running ${running === 1 ? 'stays' : 'stay'} with them: ${running === 1 ? 'it finishes' : 'they finish'} there, after these outputs were written, and the resume writes ${running === 1 ? 'it' : 'them'}.` : '';
  return `${removed}${kept}`;
}

/** What a run says about rows that a process on this machine which died had in hand ('' for nothing). */
export function releasedRowsText(released: ReleasedRows, tookOverFrom: string | null, lockMs: number): string {
  const others = deadProcessRowsText(released, tookOverFrom);
  if (!tookOverFrom) return others;
  const rows = released.rowsFrom.get(tookOverFrom);
  const ownText =
    rows !== undefined
      ? `; the ${counted(rows, 'row')} it held ${rows === 1 ? 'is' : 'are'} back in the queue.`
      : released.dead.includes(tookOverFrom)
        ? '.'
        : // A run whose workers were not on record: its rows come back as their queue locks expire.
          `: the rows it held come back when their queue locks expire, within queue.lock_ms (${formatDuration(lockMs)}).`;
  return `The batch's last run (${tookOverFrom}) stopped without finishing${ownText}${others ? ` ${others}` : ''}`;
}

/** "a", "a and b", "a, b and c". */
function list(names: readonly string[]): string {
  return names.length === 1 ? names[0]! : `${names.slice(0, -1).join(', ')} and ${names.at(-1)!}`;
}

/** The note about CSV columns that look meant as row fields but are metadata (`Model` for `model`); null for none. */
export function lookalikeColumnsText(columns: readonly LookalikeColumn[] | undefined): string | null {
  if (columns === undefined || columns.length === 0) return null;
  const one = columns.length === 1;
  return (
    `Note: column${one ? '' : 's'} ${list(columns.map(({ column }) => `"${column}"`))} ${one ? 'is' : 'are'} metadata, not ${one ? 'a row field' : 'row fields'}: ` +
    `row fields are named exactly ${ROW_FIELD_COLUMNS.join(', ')} (rename ${list(columns.map(({ column, field }) => `"${column}" to ${field}`))} to use ${one ? 'it' : 'them'}).`
  );
}

/** The note about CSV columns named as request fields (`response_format`) that only JSONL lines send; null for none. */
export function requestFieldColumnsText(columns: readonly string[] | undefined): string | null {
  if (columns === undefined || columns.length === 0) return null;
  const one = columns.length === 1;
  return (
    `Note: column${one ? '' : 's'} ${list(columns.map((column) => `"${column}"`))} ${one ? 'is' : 'are'} metadata, not sent with the calls: a CSV row sends its prompt, system, temperature and max_tokens alone. ` +
    `To send ${one ? 'it' : 'them'} (structured output, a seed...), give the rows as JSONL lines with ${one ? 'that field' : 'those fields'} (docs/formats.md).`
  );
}

/** The note about OpenAI Batch body fields that are not sent (kept in metadata.body_extra), by how many lines had each; null for none. */
export function unsentBodyFieldsText(unsent: Record<string, number>): string | null {
  const entries = Object.entries(unsent);
  if (entries.length === 0) return null;
  const fields = entries.map(([name, lines]) => `${name} (${counted(lines, 'line')})`).join(', ');
  return `Note: request body fields not sent to the models: ${fields}. They are kept in each result's metadata.body_extra.`;
}

/** The note about OpenAI request fields on JSONL prompt lines that are not sent (kept as metadata); null for none. */
export function unsentRequestFieldsText(unsent: Record<string, number> | undefined): string | null {
  const entries = Object.entries(unsent ?? {});
  if (entries.length === 0) return null;
  const fields = entries.map(([name, lines]) => `${name} (${counted(lines, 'line')})`).join(', ');
  return `Note: request fields on prompt lines not sent to the models: ${fields}. They change what an answer is (several, streamed, tool calls), so they are kept in each result's metadata instead.`;
}

/** " (3 with the answers the stopped run had for them, ...; 2 failed ensemble rows ...)": the queued rows whose answers are not paid for again. */
function keptAnswersText(counts: EnqueueCounts): string {
  const parts = [
    ...(counts.carriedAnswers > 0 ? [`${formatCount(counts.carriedAnswers)} with the answers the stopped run had for them, not paid for again`] : []),
    ...(counts.carriedLabels > 0 ? [`${counted(counts.carriedLabels, 'row')} with the task type the LLM classifier gave ${counts.carriedLabels === 1 ? 'it' : 'them'}, not asked again`] : []),
    ...(counts.failedWithAnswers > 0 ? [`${counted(counts.failedWithAnswers, 'failed ensemble row')} ${counts.failedWithAnswers === 1 ? 'keeps the answers its' : 'keep the answers their'} members gave: only the members that did not answer, and the synthesis, run again`] : []),
  ];
  return parts.length > 0 ? ` (${parts.join('; ')})` : '';
}

/**
 * "Read 2,000 rows: 1,998 valid, 2 invalid (see errors.jsonl); 1,998 queued, ..."; under --compare
 * (`compared`: its models and what the fan-out met) the file's records first, then the rows they
 * make: "Read 300 records: 297 valid, 3 invalid (...); they make 875 rows (...)" (QA: "Read 878
 * rows" for a 300-record file counted each model's copy). An invalid record is one row either way.
 * `local`: the calls in flight this process's workers make; 'elsewhere' when only other workers can call its models; null for --detach.
 */
export function readText(counts: EnqueueCounts, local: number | 'elsewhere' | null, compared?: { models: readonly string[]; tally: CompareTally }): string {
  const invalid = `${formatCount(counts.invalid)} invalid${counts.invalid > 0 ? ' (see errors.jsonl)' : ''}`;
  let read = `Read ${counted(counts.total + counts.invalid, 'row')}: ${formatCount(counts.total)} valid, ${invalid}`;
  if (compared) {
    const records = compared.tally.prompts + compared.tally.ownModel;
    read =
      `Read ${counted(records + counts.invalid, 'record')}: ${formatCount(records)} valid, ${invalid}; ` +
      `they make ${counted(counts.total, 'row')} (each record put to the ${compared.models.length} compared models, one row per model, unless it names its own)`;
  }
  return (
    read +
    (counts.alreadySucceeded > 0 ? `, ${formatCount(counts.alreadySucceeded)} already done` : '') +
    (counts.rescored > 0 ? `, ${formatCount(counts.rescored)} answered before but not scored by this judge: scored now, their answers kept` : '') +
    (counts.changedSinceSucceeded > 0 ? `, ${formatCount(counts.changedSinceSucceeded)} changed in the file since they succeeded (they run again)` : '') +
    (counts.backInFile > 0 ? `, ${formatCount(counts.backInFile)} back in the file as they were (their answers kept)` : '') +
    (counts.goneFromFile > 0 ? `, ${formatCount(counts.goneFromFile)} of the last run no longer in the file (left out of the outputs; given back unchanged, they keep their answers)` : '') +
    `; ${formatCount(counts.enqueued)} queued` +
    keptAnswersText(counts) +
    `, ${local === null ? 'no workers here (--detach)' : local === 'elsewhere' ? 'for the workers on this Redis that have the keys' : `workers here making up to ${counted(local, 'call')} at a time`}.`
  );
}
