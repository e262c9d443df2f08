import type { SwitchyardConfig } from '../config/schema.ts';
import { noModelPriced } from '../models/pricing.ts';
import { CollectionTally } from '../output/collection-tally.ts';
import { collectBatch } from '../output/collector.ts';
import { budgetStop, finalizeBatch, writeOutputsSoFar } from '../output/finalize-batch.ts';
import { outputPaths } from '../output/paths.ts';
import { reportModels } from '../output/report.ts';
import { counted, formatCount, formatDuration } from '../figure-text.ts';
import type { ResumeHint } from '../output/report-markdown.ts';
import { renderSummaryLines } from '../output/report-summary.ts';
import type { Report } from '../output/report-json.ts';
import { createProgressDisplay, type ProgressDisplay } from '../progress/progress-display.ts';
import type { BatchProgress } from '../queue/batch-state.ts';
import type { Session } from '../queue/session.ts';
import { CIRCUIT_FAILURES } from '../execution/row-runner.ts';
import { CONTEXT_TOO_LONG } from '../execution/fallback-rules.ts';
import { pastRateLimitText, rateLimitPaceLines } from './rate-limit-pace.ts';
import { reachableModels, reportedNames, shutCircuits, shutCircuitsText } from './shut-circuits.ts';

export interface CollectAndReportOptions {
  session: Session;
  batchId: string;
  startedAt: Date;
  say: (line: string) => void;
  signal?: AbortSignal;
  /** Stop early but write the outputs of the rows finished so far (see collectBatch's drain). */
  drain?: AbortSignal;
  /** `drain` comes from a cancel of the batch: its report says it was cancelled. */
  drainIsCancel?: boolean;
  /** Aborted as the run begins to stop (Ctrl-C): the progress display says so. */
  stopping?: AbortSignal;
  /** Where the progress display goes (stderr by default); null for none (a server collecting many batches). */
  progressStream?: NodeJS.WriteStream | null;
  /** The batch's config when the caller has it (`run`); otherwise it is read from Redis. */
  config?: SwitchyardConfig;
  /** Told the batch's progress each time the display reads it. */
  onProgress?: (progress: BatchProgress) => void;
  /** How report.md says to run the rest of the batch (FinalizeOptions.resumeHint). */
  resumeHint?: ResumeHint;
  /** The report's run ends when its last row finished (FinalizeOptions.endsAtLastRow): `collect` of a detached batch. */
  endsAtLastRow?: boolean;
}

/**
 * Runs a batch's collector with a progress display until every row has a result, then writes the
 * final files and prints the summary. Drained early, it writes the files and summary of the rows
 * finished so far (the report counts the rest as unfinished); stopped, it returns null.
 */
export async function collectAndReport(options: CollectAndReportOptions): Promise<Report | null> {
  const { session, batchId, say } = options;
  const state = await session.store.loadWithProgress(batchId);
  if (!state) throw new Error(`batch ${batchId} has no state in Redis`);
  const { meta, progress: initial } = state;
  const paths = outputPaths(meta.out_dir);
  const config = options.config ?? (await storedConfig(session, batchId));
  const baselineModel = config?.report.baseline_model;
  const baselinePrice = baselineModel ? config?.models[baselineModel]?.price : undefined;
  const baseline = baselineModel && baselinePrice ? { model: baselineModel, price: baselinePrice } : undefined;
  const models = reportModels(config);
  const tally = new CollectionTally(baseline, options.startedAt, models, meta.compare);
  const shown = options.progressStream !== null;
  const unpriced = config != null && noModelPriced(config);
  const display = shown ? createProgressDisplay(options.progressStream ?? process.stderr, { unpriced, clock: true, json: process.env.LOG_FORMAT?.toLowerCase() === 'json' }) : NO_DISPLAY;
  // The display's first update is its baseline for rows/s and the ETA: give it now, not at the first poll.
  display.update(initial);
  options.onProgress?.(initial);
  options.stopping?.addEventListener('abort', () => display.stopping(), { once: true });
  // One read at a time: while Redis is away, reads wait in the client rather than pile up there.
  let polling = false;
  const poll = shown
    ? setInterval(() => {
        if (polling) return;
        polling = true;
        session.store.progress(batchId).then(
          (progress) => {
            polling = false;
            if (!progress) return;
            display.update(progress);
            options.onProgress?.(progress);
          },
          () => (polling = false),
        );
      }, 250)
    : undefined;
  let collected: boolean;
  try {
    collected = await collectBatch({
      redis: session.redis,
      store: session.store,
      batchId,
      paths,
      tally,
      csvDelimiter: meta.csv_delimiter,
      onConnectionError: session.outages.failed,
      warn: (message) => session.logger.warn(message),
      refusals: session.refusals,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.drain ? { drain: options.drain } : {}),
    });
  } finally {
    clearInterval(poll);
    const last = shown ? await session.store.progress(batchId).catch(() => null) : null;
    if (last) display.update(last);
    display.stop();
  }
  // Drained early: the batch's valid rows, of which those not in the outputs are not run yet (null while the file is still being read).
  let stoppedWith: { validRows: number | null } | null = null;
  if (!collected) {
    if (!options.drain?.aborted || options.signal?.aborted) return null;
    const progress = await session.store.progress(batchId);
    if (!progress) return null;
    // Stopped before any row finished, the outputs say so too (no row yet, the rest not run), rather than not being there.
    stoppedWith = { validRows: progress.total === null || progress.status === 'enqueuing' ? null : progress.total };
  }
  // Read again once: the producer has since recorded the row counts (invalid rows among them).
  const finalMeta = (await session.store.load(batchId)) ?? meta;
  const finalizing = { store: session.store, meta: finalMeta, paths, outDir: meta.out_dir, startedAt: options.startedAt, baseline, reportModels: models, collectedTally: tally.complete, resumeHint: options.resumeHint, endsAtLastRow: options.endsAtLastRow, refusals: session.refusals, cancelled: options.drainIsCancel === true };
  // Stopped early, the rows so far; a stop that came as the last row finished, with every row written, still ends the batch as usual.
  const report = stoppedWith === null ? await finalizeBatch(finalizing) : await writeOutputsSoFar(finalizing, stoppedWith.validRows);
  say('');
  for (const line of renderSummaryLines(report)) say(line);
  say('');
  say(`Results  ${paths.results}`);
  say(`         ${paths.resultsCsv}`);
  if (finalMeta.compare) say(`         ${paths.compareCsv} (the compared models' answers side by side)`);
  say(`Costs    ${paths.costs}`);
  const invalid = report.totals.invalid_rows;
  if (invalid > 0) say(`Errors   ${paths.errors} (${counted(invalid, 'invalid row')}, not run)`);
  say(`Report   ${paths.reportMd}`);
  for (const pace of config ? rateLimitPaceLines(report, config) : []) {
    say('');
    say(pace);
  }
  const pastLimit = pastRateLimitText(report, config);
  if (pastLimit) {
    say('');
    say(pastLimit);
  }
  const overBudget = report.errors.budget_exceeded ?? 0;
  if (overBudget > 0) {
    say('');
    // "Not run" would be wrong for an ensemble row whose members answered before its synthesis was refused.
    say(`Budget reached: ${counted(overBudget, 'row')} not finished (calls already made for them are kept, not paid for again). Finish them with: ${budgetResume(batchId, budgetStop(finalMeta))}`);
  }
  const keyless = report.errors.missing_api_key ?? 0;
  if (keyless > 0) {
    say('');
    say(`No API key: ${counted(keyless, 'row')} failed for a key not set where they ran (results.jsonl names the variable). Set it there, then: switchyard run --resume ${batchId}`);
  }
  const passedOver = report.errors.no_model_available ?? 0;
  const modelsDown = passedOver > 0 && /circuit open/.test(report.error_examples.no_model_available ?? '');
  // Circuits that 404s shut: a model name or base_url the provider does not know, which no wait mends.
  const notFound = modelsDown && /\(404\b/.test(report.error_examples.no_model_available ?? '');
  // "1 row found its model and every fallback shut ... and was not sent"; "5 rows ... their model ... were".
  const [their, were, these] = passedOver === 1 ? ['its', 'was', 'this row'] : ['their', 'were', 'these rows'];
  if (notFound) {
    say('');
    say(
      `Models not found: ${counted(passedOver, 'row')} found ${their} model and every fallback shut after 404 answers (a model name the provider does not know, or a base_url without its path), and ${were} not sent: waiting would not help. ` +
        `Fix the name (models.<model>.upstream) or base_url as results.jsonl's error says, then: switchyard run --resume ${batchId} --config <the fixed config> (a resume runs on the config saved with the batch unless given one).`,
    );
  } else if (modelsDown) {
    say('');
    // Breakers are shared through Redis: a batch that made no call met circuits that earlier runs' failures opened.
    const earlier = report.totals.calls === 0 ? ' This batch made no call: earlier failures (another run on this Redis, or the one before this) shut them, and each lets one call test its provider when breaker.cooldown_ms has passed (the rows\' errors say when).' : '';
    const maxWaitMs = config?.breaker.max_wait_ms ?? 0;
    // Said of the setting as the batch has it: a user who set it needs the figure to raise, not to be told to set it.
    // A resume runs on the config saved with the batch: the setting changed in the file alone would not be read (as for 429s and 404s).
    const withConfig = 'and add --config <file> to the resume, which runs on the config saved with the batch unless given one';
    const waiting = maxWaitMs > 0
      ? `each row waited for the circuits as long as their next test call fell within breaker.max_wait_ms (${formatDuration(maxWaitMs)}) of its first wait, so it gave up earlier when the next one fell past it: to ride out a longer outage, raise it in the config ${withConfig}`
      : `to have rows wait for the circuits instead of failing, set breaker.max_wait_ms in the config ${withConfig}`;
    const cooldown = formatDuration(config?.breaker.cooldown_ms ?? 30_000);
    const shut = config ? await shutCircuits(session.redis, session.space.prefix, config, reachableModels(reportedNames(report), config)) : [];
    // When, by the clock: a resume sooner fails the rows again at once (QA: a resume 10 s after a stop made no call, every row no_model_available).
    const until = shut.length > 0
      ? ` ${shutCircuitsText(shut)}, breaker.cooldown_ms (${cooldown}) after it shut; then one call tests the provider, and a resume sooner fails ${these} again with no call. Wait until then; once the provider is back: switchyard run --resume ${batchId} (${waiting}).`
      : ` Once the provider is back: switchyard run --resume ${batchId} (${waiting}; a circuit lets its next test call through ${cooldown} after it shut, breaker.cooldown_ms, so a resume sooner finds it shut still).`;
    say(`Models down: ${counted(passedOver, 'row')} found ${their} model and every fallback shut after repeated failures (the circuit breaker), and ${were} not sent.${earlier}${until}`);
  } else if ((report.totals.unfinished_rows !== 0 || failuresACircuitMayExplain(report)) && config && config.breaker.max_wait_ms === 0) {
    // A stop whose calls in flight failed may have shut a circuit: the resume it names would pass it over at once.
    // So may a finished batch's failures that no Models down line tells of: an ensemble's members, a judge (QA: every
    // row ensemble_failed on members' shut circuits, and the resume the summary named, 10 s later, failed them all again with no call).
    // Not "fails the rows": a row whose chain has another model open goes on to it (review: a resume 4 s after such a stop answered every row on the fallback).
    const shut = await shutCircuits(session.redis, session.space.prefix, config, reachableModels(reportedNames(report), config));
    if (shut.length > 0) {
      const it = shut.length === 1 ? 'it' : 'them';
      say('');
      say(`Circuits open after repeated failures (the circuit breaker): ${shutCircuitsText(shut)}. A resume sooner passes ${it} over with no call (breaker.max_wait_ms is 0): a row goes on to the next of its fallbacks that is open, or fails when none is. To run the rows on ${it}, resume after that.`);
    }
  }
  sayOtherFailures(report, batchId, new Set(['budget_exceeded', 'missing_api_key', ...(modelsDown ? ['no_model_available'] : [])]), modelsDown, config, say);
  if (invalid > 0 && report.totals.unfinished_rows === 0 && options.resumeHint !== 'api') {
    // Each code's example is its first row: the one with the lowest line is the file's first (codes come in no set order).
    const lineOf = (example: string) => Number(/^line (\d+)/.exec(example)?.[1] ?? Number.POSITIVE_INFINITY);
    const [first] = Object.values(report.invalid_input_examples).sort((a, b) => lineOf(a) - lineOf(b));
    say('');
    say(`Invalid: ${counted(invalid, 'row')} not run${first ? ` (the first: ${first})` : ''}. Fix them in place in the file (errors.jsonl lists them with their lines), then: switchyard run --resume ${batchId} (only they run).`);
  }
  // Rows that went on to another provider's model succeed, and a refused key would go unnoticed in the exit code.
  // (Rows that failed with such an error are in the Errors lines already.)
  const missing = NOT_FOUND.flatMap((code) => (report.call_errors[code] && !report.errors[code] ? [`${code} ${counted(report.call_errors[code], 'call')}`] : []));
  if (missing.length > 0 && report.extra_calls.rows_on_fallback > 0) {
    // Rows answered by a fallback hide a misspelt first choice in a batch that exits 0.
    say('');
    say(`Not found at a provider: ${missing.join(', ')} (a model name it does not know, or a base_url without its path). Their rows went on to other models; results.jsonl's fallback_reason names the model: fix its name (models.<model>.upstream) or base_url.`);
  }
  const tooLong = report.call_errors.bad_request ?? 0;
  if (tooLong > 0 && !report.errors.bad_request && report.extra_calls.rows_on_fallback > 0 && CONTEXT_TOO_LONG.test(report.call_error_examples?.bad_request ?? '')) {
    // Answered by a later (often pricier) model, each after a refused call, in a batch that exits 0 (QA: a 20-token prompt and a max_tokens of 600 at a window of 600).
    say('');
    say(`Too long for a model: bad_request ${counted(tooLong, 'call')} refused by a model's context window (the prompt and max_tokens over it; the Calls line above quotes the first). Their rows went on to later models of their chains, at those models' prices; results.jsonl's fallback_reason names the model. ${contextWindowAdvice(report.call_error_examples?.bad_request ?? '', config)}`);
  }
  const refused = ACCOUNT_REFUSALS.flatMap((code) => (report.call_errors[code] && !report.errors[code] ? [`${code} ${counted(report.call_errors[code], 'call')}`] : []));
  if (refused.length > 0) {
    say('');
    // The report counts every run's calls: refusals of a run before the key was fixed failed rows that have succeeded since.
    // The judge's refused calls went on to its fallbacks, which no row's fallback_reason tells of (QA: a judge whose key was wrong all along was said to have been refused "in an earlier run").
    const judge = report.judge;
    const judgeRefused = judge !== null && ACCOUNT_REFUSALS.some((code) => report.call_error_examples?.[code]?.startsWith(`model "${judge.model}" `));
    const byFallback = Object.entries(judge?.scored_by_fallback ?? {});
    const after = report.extra_calls.rows_on_fallback > 0
      ? "Their rows went on to other models; results.jsonl's fallback_reason names the model and what to check."
      : judgeRefused && byFallback.length > 0
        ? `${ACCOUNT_REFUSALS.reduce((sum, code) => sum + (report.call_errors[code] ?? 0), 0) === 1 ? 'It was' : 'They were'} the judge's (${judge!.model}): its fallbacks scored those answers instead (${byFallback.map(([model, rows]) => `${counted(rows, 'answer')} by ${model}`).join(', ')}); the Calls line above says what to check.`
        : 'No row failed for it: they were refused in an earlier run of this batch, or before the key was taken again, and their rows have succeeded since.';
    say(`Refused by a provider: ${refused.join(', ')} (a key or account it would not take). ${after}`);
  }
  // A finished batch's unscored answers are kept for a resume (jobs/prompt.ts); say so where the user looks.
  const unscored = report.totals.unfinished_rows === 0 ? (report.judge?.rows_unscored ?? 0) : 0;
  if (unscored > 0) {
    say('');
    const codes = Object.keys(report.judge?.unscored ?? {});
    const resume = report.judge?.unscored.budget_exceeded ? budgetResume(batchId, budgetStop(finalMeta)) : `switchyard run --resume ${batchId}`;
    // The same judge would meet the same refusal (a model its provider does not have, a key it refuses): what to fix first.
    const lasting = codes.filter((code) => !PASSING_ERRORS.has(code) && code !== 'budget_exceeded' && code !== 'no_score');
    const fix = lasting.length > 0 ? ` once what judge.error says is fixed (${lasting.join(', ')}), or with another judge (--judge <model>)` : '';
    say(`Not scored: ${counted(unscored, 'answer')} the judge could not score (judge.error in results.jsonl). Score them without paying for the answers again${fix}: ${resume}`);
  }
  const noneSucceeded = noneSucceededText(report);
  if (noneSucceeded) {
    say('');
    say(noneSucceeded);
  }
  return report;
}

/**
 * The summary's last line when a whole batch came to nothing: exit 1 is the same for a few failed
 * rows and for none answered, and a nightly log read at a glance took one for the other (QA). Null
 * when a row succeeded, or the run stopped early (its stop line says where it stands).
 */
/**
 * What to do about calls a model's context window refused. The model the example names may have a
 * context_window already, which Switchyard checked the prompts against: its provider's tokenizer then
 * counts more than Switchyard's count (o200k_base) for these prompts, and setting it, as the advice for
 * a model without one says, is no help (QA: German and Japanese contracts at a 32,000 window, 146 calls).
 */
function contextWindowAdvice(example: string, config: SwitchyardConfig | null): string {
  const model = /^model "([^"]+)"/.exec(example)?.[1];
  const window = model === undefined ? undefined : config?.models[model]?.context_window;
  if (window === undefined) return 'Set its models.<model>.context_window, so that rows it cannot hold skip it without a call, or lower max_tokens if the prompts are short.';
  return `models.${model}.context_window is set (${formatCount(window)}), and these prompts fitted it as Switchyard counts tokens (OpenAI's o200k_base tokenizer), but its provider counted more: its own tokenizer counts the same text differently. Lower its context_window to leave that margin (the provider's figures in the Calls line above show how far over it counted), so that rows it cannot hold skip it without a call, or lower max_tokens if the prompts are short.`;
}

function noneSucceededText(report: Report): string | null {
  const { rows, succeeded, failed, invalid_rows: invalid, unfinished_rows: unfinished } = report.totals;
  if (succeeded > 0 || unfinished !== 0 || rows + invalid === 0) return null;
  const why = [...(failed > 0 ? [`${formatCount(failed)} failed`] : []), ...(invalid > 0 ? [`${formatCount(invalid)} invalid`] : [])].join(', ');
  const none = rows + invalid === 1 ? 'its one row has no answer' : `none of the ${counted(rows + invalid, 'row')} has an answer`;
  return `No row succeeded: ${none} (${why}). The lines above say why, and what to do before running ${rows + invalid === 1 ? 'it' : 'them'} again. (Exit code 1, as when only some rows fail: report.json's totals.succeeded, 0, tells the two apart.)`;
}

/**
 * A finished batch's failures a shut circuit may be behind, which no Models down line speaks of: an
 * ensemble's members', the judge's. (Each code's example is its first row's, from before the circuit
 * shut as often as not, so the codes are asked, not the words.) The budget's and a missing key's
 * have lines of their own, and a circuit has nothing to do with them.
 */
function failuresACircuitMayExplain(report: Report): boolean {
  const owned = new Set(['budget_exceeded', 'missing_api_key', 'no_score']);
  return [...Object.keys(report.errors), ...Object.keys(report.judge?.unscored ?? {})].some((code) => !owned.has(code));
}

/** Errors that a later try may not meet: the provider was busy, slow or down. */
const PASSING_ERRORS = new Set(['rate_limited', 'server_error', 'timeout', 'connection_error', 'empty_response', 'bad_response']);

/**
 * The failed rows no line above spoke of, by error code, and the resume that runs them again (after
 * a fix, unless their errors pass by themselves). `circuitsShut`: a Models down (or not found) line
 * came before; failures of the kinds that shut circuits are then that same outage's, said so rather
 * than read as a second cause (QA).
 */
function sayOtherFailures(report: Report, batchId: string, spokenOf: ReadonlySet<string>, circuitsShut: boolean, config: SwitchyardConfig | null, say: (line: string) => void): void {
  if (report.totals.unfinished_rows !== 0) return; // a stopped run says how to go on already
  const others = Object.entries(report.errors).filter(([code]) => !spokenOf.has(code));
  const rows = others.reduce((sum, [, n]) => sum + n, 0);
  if (rows === 0) return;
  const codes = others.map(([code, n]) => `${code} ${formatCount(n)}`).join(', ');
  if (circuitsShut && others.every(([code]) => CIRCUIT_FAILURES.has(code))) {
    say('');
    say(`Failed: ${counted(rows, 'row')} (${codes}), the failures that shut the circuits above: the same resume runs ${rows === 1 ? 'it' : 'them'} again${report.totals.succeeded > 0 ? ' (the rows that succeeded are kept, not paid for again)' : ''}.`);
    return;
  }
  // A resume would meet the same 429s unless the calls are paced: the fix is in the config, and the Errors line cuts it off.
  const paced = others.some(([code]) => code === 'rate_limited') ? " Set models.<model>.rpm (and tpm) to the provider's limits first, so the calls are paced instead of refused." : '';
  const when = others.every(([code]) => PASSING_ERRORS.has(code)) ? `${paced.trimStart()}${paced ? ' Then run' : 'Run'} them again` : "Once what their errors say is fixed (results.jsonl's error, report.md's Errors), run them again";
  say('');
  const fixInConfig = (code: string) => CONFIG_FIXES.has(code) || (code === 'unauthorized' && (report.error_models?.unauthorized ?? []).some((model) => keyNamedByNoProvider(config, model)));
  const configNote = others.some(([code]) => fixInConfig(code)) ? '; a resume runs on the config saved with the batch: add --config <file> when the fix is in it' : '';
  // "The rows that succeeded are kept" of a batch where none did read as if some had (QA).
  const kept = report.totals.succeeded > 0 ? `the rows that succeeded are kept, not paid for again${configNote}` : configNote.replace(/^; /, '');
  say(`Failed: ${counted(rows, 'row')} (${codes}). ${when}: switchyard run --resume ${batchId}${kept ? ` (${kept})` : ''}.`);
}

/** Call errors that say the provider refused the key or the account, not the request. */
const ACCOUNT_REFUSALS = ['unauthorized', 'forbidden', 'quota_exceeded'] as const;
/** Calls that found no model or no API at the URL: the config's name or base_url is wrong. */
const NOT_FOUND = ['model_not_found', 'endpoint_not_found'] as const;
/** Failures whose fix is often in the config file, which a resume does not read again unless given it (429s: the line says to set rpm). */
const CONFIG_FIXES = new Set(['model_not_found', 'endpoint_not_found', 'bad_request', 'forbidden', 'rate_limited']);
/** The model's provider names no key variable: a 401 from it is fixed by setting providers.<name>.api_key_env, in the config (its message says so: model-error.ts). */
function keyNamedByNoProvider(config: SwitchyardConfig | null, model: string): boolean {
  const provider = config?.models[model]?.provider;
  return provider !== undefined && !config?.providers[provider]?.api_key_env;
}

/** The resume that gets past the cap that refused the rows: the batch's (--budget) or the month's (the config's). */
function budgetResume(batchId: string, cap: 'batch' | 'month'): string {
  if (cap === 'month') return `switchyard run --resume ${batchId} --config <a config with a higher budget.monthly_usd> (or the same command next month)`;
  return `switchyard run --resume ${batchId} --budget <higher USD>`;
}

const NO_DISPLAY: ProgressDisplay = { update: () => undefined, stopping: () => undefined, stop: () => undefined };

async function storedConfig(session: Session, batchId: string): Promise<SwitchyardConfig | null> {
  return (await session.store.loadConfig(batchId))?.config ?? null;
}
