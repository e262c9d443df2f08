#!/usr/bin/env -S MALLOC_ARENA_MAX=2 GLIBC_TUNABLES=glibc.malloc.hugetlb=1 node --max-semi-space-size=8
import './node-version-check.ts';
import './starting-stop.ts';
import * as nodeModule from 'node:module';
import { Command, InvalidArgumentError, Option } from 'commander';
import { optionsFor } from './cli-flags.ts';
import { createLogger, logFormatProblem, logLevelProblem } from './log.ts';
import { withControlsShown } from './control-characters.ts';
import { writeLines } from './progress/terminal-lines.ts';
import { describeFileTrouble, describeRedisTrouble, SetupError, UsageError } from './errors.ts';
import { LOCK_TOO_SHORT, MIN_LOCK_MS } from './queue/claim-lock.ts';
import { parseDecimal } from './decimal-text.ts';
import { BUDGET_TOO_LARGE, MAX_BUDGET_USD } from './models/pricing.ts';
import { endEarlyStop, stopEarly } from './early-stop.ts';
import type { RunOptions } from './batch/run-batch.ts';
import type { DryRunOptions } from './commands/dry-run.ts';
import packageJson from '../package.json' with { type: 'json' };

/**
 * Entry point: parses the command line, runs one command, maps failures to exit codes. The
 * semi-space cap above keeps V8's young generation small (a batch allocates fast); the rest of the
 * heap tuning is set when a long command starts (heap-growth.ts says why not here).
 * MALLOC_ARENA_MAX=2 keeps glibc from giving each of Node's threads (V8's compiler and GC helpers,
 * libuv) a malloc arena of its own whose freed memory stays resident: 10-20 MB less peak RSS in a
 * 20,000-row run, no CPU cost measured. glibc.malloc.hugetlb=1 lets malloc'd memory (buffers, the
 * compilers' zones) use transparent huge pages where the kernel offers them on request: first
 * touching a 4 KiB page cost ~12 us on the VMs measured, and a 1-row run takes ~13,000 such faults.
 * A 1-row run: 0.45 s against 0.49 (medians of 8); 2,000 rows at 100 ms: 4.99 s against 5.07, with
 * 4,500 fewer faults. Other C libraries, and glibc before 2.35, ignore both.
 */

// Commands are imported on demand; V8's code cache (in the OS temp folder) makes the next start faster.
nodeModule.enableCompileCache?.();

// A reader that goes away (`switchyard status | head`) must not end the command with a stack
// trace: the rest of that stream's output is dropped, and a run still finishes its batch and files.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE' && error.code !== 'ERR_STREAM_DESTROYED') throw error;
  });
}

const say = (line: string) => writeLines(process.stdout, `${line}\n`);
const logLevelTrouble = logLevelProblem(process.env.LOG_LEVEL) ?? logFormatProblem(process.env.LOG_FORMAT);
if (logLevelTrouble) {
  process.stderr.write(`switchyard: ${logLevelTrouble}\n`);
  process.exit(2);
}
const logger = createLogger();

/** A value given empty (`--ab ""`, often a script's unset variable) is refused, not taken as the option left out. */
function text(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError('expected a value, not an empty one');
  return value;
}

/** A column name, trimmed as the CSV header's names are (and the API's prompt_column): " question " would match no column. */
function columnName(value: string): string {
  return text(value).trim();
}

/** The text as given, beside a number default: whoever takes it checks it and quotes it in a refusal (`got "abc"`, not `got "NaN"`). */
function asGiven(value: string): string | number {
  return value;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a whole number above 0');
  return n;
}

function lockMs(value: string): number {
  const n = positiveInt(value);
  if (n < MIN_LOCK_MS) throw new InvalidArgumentError(`it ${LOCK_TOO_SHORT}`);
  return n;
}

function portNumber(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('expected a port number from 0 to 65535');
  return n;
}

function positiveNumber(value: string): number {
  const n = parseDecimal(value);
  if (n === null || n <= 0) throw new InvalidArgumentError('expected a number above 0 written out in digits, e.g. 5 or 2.50 (not 1e2)');
  return n;
}

function budgetUsd(value: string): number {
  const usd = positiveNumber(value);
  if (usd > MAX_BUDGET_USD) throw new InvalidArgumentError(BUDGET_TOO_LARGE);
  return usd;
}

function nonNegativeNumber(value: string): number {
  const n = parseDecimal(value);
  if (n === null) throw new InvalidArgumentError('expected a number of 0 or more');
  return n;
}

/** Whether both flags are on the command line (commander keeps only the last of a --x / --no-x pair). */
function givenBoth(flag: string, other: string): boolean {
  const given = process.argv.slice(2);
  const end = given.indexOf('--');
  const args = end === -1 ? given : given.slice(0, end);
  return args.includes(flag) && args.includes(other);
}

/**
 * What commander parses for `run`: one field per option declared on it (through runOption, which
 * checks each flag names a field and is parsed to its type), named as commander names it
 * (`--batch-id` -> batchId). The conversions below copy it field by field, so a field renamed on
 * either side fails to compile instead of dropping the flag.
 */
interface RunFlags {
  config?: string;
  out?: string;
  concurrency?: number;
  model?: string;
  route?: string;
  ab?: string;
  compare?: string;
  budget?: number;
  judge?: string;
  cache?: boolean;
  dryRun?: boolean;
  batchId?: string;
  resume?: string;
  promptColumn?: string;
  detach?: boolean;
}

const runOption = optionsFor<RunFlags>();

function runOptions(file: string | undefined, flags: RunFlags): RunOptions {
  return {
    file,
    config: flags.config,
    out: flags.out,
    concurrency: flags.concurrency,
    model: flags.model,
    route: flags.route,
    ab: flags.ab,
    compare: flags.compare,
    budget: flags.budget,
    judge: flags.judge,
    cache: flags.cache,
    batchId: flags.batchId,
    resume: flags.resume,
    promptColumn: flags.promptColumn,
    detach: flags.detach,
  };
}

/** A dry run queues nothing, so --out, --concurrency and --detach have nothing to act on. */
function dryRunOptions(file: string | undefined, flags: RunFlags): DryRunOptions {
  return {
    file,
    config: flags.config,
    model: flags.model,
    route: flags.route,
    ab: flags.ab,
    compare: flags.compare,
    judge: flags.judge,
    promptColumn: flags.promptColumn,
    budget: flags.budget,
    cache: flags.cache,
    resume: flags.resume,
    batchId: flags.batchId,
  };
}

async function exitWith(run: () => Promise<number>): Promise<void> {
  try {
    process.exitCode = await run();
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`switchyard: ${withControlsShown(error.message)}\n`);
      process.exitCode = 2;
    } else if (error instanceof SetupError) {
      process.stderr.write(`switchyard: ${withControlsShown(error.message)}\n`);
      process.exitCode = 3;
    } else {
      // Redis trouble is the environment's (3); a full disk names itself, anything else is a bug (4).
      const redis = describeRedisTrouble(error);
      const told = redis ?? describeFileTrouble(error) ?? `unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`;
      process.stderr.write(`switchyard: ${withControlsShown(told)}\n`);
      process.exitCode = redis ? 3 : 4;
    }
  }
  // A signal now comes after what the command said as it ended.
  endEarlyStop();
  // Lingering sockets (SDK keep-alive, Redis) must not keep a finished command alive.
  setTimeout(() => process.exit(), 200).unref();
}

const program = new Command('switchyard')
  .description('Run batches of LLM prompts across OpenAI-compatible models, through BullMQ workers on Redis.')
  .version(packageJson.version, '-V, --version')
  .showHelpAfterError('(add --help for the options)')
  .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : 2))
  // The start-up's early stop (starting-stop.ts) ends as a command's action starts, in the same tick: the
  // commands with one of their own (stopEarly) say what they left, the others end by the signal.
  .hook('preAction', () => endEarlyStop());

program
  .command('run')
  .description('run a CSV or JSONL batch: validate, enqueue, process with workers in this process, write results and a report')
  .argument('[file]', 'input .csv, .tsv or .txt (read as CSV), .jsonl, .ndjson or .json (read as JSONL) (optional with --resume)')
  .addOption(runOption('-c, --config <file>', 'switchyard.yaml or .json (default: built-in models on the simulator)', text))
  .addOption(runOption('-o, --out <dir>', 'output folder (default: out/<batch id>)', text))
  .addOption(runOption('--concurrency <n>', 'model calls in flight in this process', positiveInt))
  .addOption(runOption('-m, --model <name>', 'model for rows that do not name one (skips routing)', text))
  .addOption(runOption('--route <auto|model>', 'auto: route each row by task type (the default with routing in config); or a model name, as --model', text))
  .addOption(runOption('--ab <models>', 'A/B test: each row that names no model goes to one of these by a hash of its id, e.g. a,b or a=0.8,b=0.2; the arm auto routes by task type', text))
  .addOption(runOption('--compare <models>', 'put every row that names no model to each of these models (or ensembles), one answer each, e.g. a,b; with --judge, the report compares them answer against answer', text))
  .addOption(runOption('--budget <usd>', 'stop spending at this many USD for the batch; --resume with a higher one finishes it', budgetUsd))
  .addOption(runOption('--judge <model>', 'score every answer from 1 to 10 with this model (config judge.model); the report gives each model\'s mean score', text))
  .addOption(runOption('--cache', 'use the answer cache again on a resume of a batch run with --no-cache'))
  .addOption(runOption('--no-cache', 'neither take answers from the answer cache (cache in the config) nor keep this batch\'s in it; a resume keeps it so'))
  .addOption(runOption('--dry-run', 'read and route the whole file, call no model, print estimated tokens and cost'))
  .addOption(runOption('--batch-id <id>', 'name the batch; running the same id again resumes it', text))
  .addOption(runOption('--resume <id>', 'resume a batch: rows that succeeded are kept, the rest run', text))
  .addOption(runOption('--prompt-column <name>', "CSV column (or JSONL field) holding the prompt (default: prompt; a resume keeps the batch's)", columnName))
  .addOption(runOption('--detach', 'only enqueue; workers elsewhere process the rows ("switchyard collect" writes outputs)'))
  .action((file: string | undefined, flags: RunFlags) =>
    exitWith(async () => {
      if (givenBoth('--cache', '--no-cache')) throw new UsageError('--cache and --no-cache were both given: give --no-cache to leave the answer cache out of this batch, or --cache to use it again');
      if (flags.resume !== undefined && flags.batchId !== undefined && flags.resume !== flags.batchId) {
        throw new UsageError(`--resume ${flags.resume} and --batch-id ${flags.batchId} name two batches: give --resume <id> to go on with a batch, or --batch-id <id> to name a new one (running it again resumes it)`);
      }
      if (flags.dryRun) {
        stopEarly(say, 'during the dry run: nothing was queued or called.');
        const { runDryRun } = await import('./commands/dry-run.ts');
        return runDryRun(dryRunOptions(file, flags), say);
      }
      // Until the run's own stop handling is installed (run-stops.ts), it says what it has changed so far.
      stopEarly(say, 'before anything was queued: nothing to resume.');
      const { runBatch } = await import('./batch/run-batch.ts');
      const outcome = await runBatch(runOptions(file, flags), logger, say);
      return outcome.exitCode;
    }),
  );

program
  .command('worker')
  .description('process rows from the queue (any batch) until stopped; run as many as you like, anywhere that reaches Redis')
  .option('--concurrency <n>', 'model calls in flight in this process', positiveInt, 64)
  .option('--lock-ms <ms>', `how long a claimed row stays claimed without renewal (${MIN_LOCK_MS} or more)`, lockMs, 30_000)
  .action((opts: { concurrency: number; lockMs: number }) =>
    exitWith(async () => {
      stopEarly(say, 'before the worker started: it took no rows.');
      return (await import('./commands/worker.ts')).runWorkerCommand(opts, logger, say);
    }),
  );

program
  .command('status')
  .description("show a batch's state, or the most recent batches")
  .argument('[batch-id]')
  .option('--json', 'one JSON object (or an array of them, newest first) for scripts, instead of the lines for a person')
  .action((batchId: string | undefined, opts: { json?: boolean }) => exitWith(async () => (await import('./commands/status.ts')).runStatusCommand(batchId, logger, say, { json: opts.json === true })));

program
  .command('collect')
  .description('write the outputs of a batch run with --detach, waiting for its rows to finish')
  .argument('<batch-id>')
  .action((batchId: string) =>
    exitWith(async () => {
      stopEarly(say, `before collecting batch ${batchId}: nothing was written, and the same command can simply be run again.`);
      return (await import('./commands/collect.ts')).runCollectCommand(batchId, logger, say);
    }),
  );

program
  .command('forget')
  .description("delete what Redis keeps of finished batches (their output files stay); they can no longer be resumed")
  .argument('[batch-id...]')
  .option('--older-than <days>', 'every finished batch whose last run ended more than this many days ago (0: every finished batch)', nonNegativeNumber)
  .action((batchIds: string[], opts: { olderThan?: number }) =>
    exitWith(async () => (await import('./commands/forget.ts')).runForgetCommand(batchIds, opts.olderThan === undefined ? {} : { olderThanDays: opts.olderThan }, logger, say)),
  );

program
  .command('serve')
  .description('HTTP API: take CSV/JSONL batches by POST /v1/batches, run them on workers here, serve their status and outputs')
  .option('--port <n>', 'port (0 picks a free one)', portNumber, 8080)
  .option('--host <host>', 'address to listen on; beyond this machine (e.g. 0.0.0.0) it needs SWITCHYARD_API_TOKEN set, or --no-auth', '127.0.0.1')
  .option('-c, --config <file>', 'switchyard.yaml or .json for every batch (default: built-in models on the simulator)', text)
  .option('-o, --out <dir>', 'folder for each batch\'s input and outputs, as <dir>/<batch id>/', 'out')
  .option('--concurrency <n>', 'model calls in flight in this process (default: the config\'s concurrency)', positiveInt)
  .option('--no-worker', 'run no workers here: "switchyard worker" processes on the same Redis run the rows')
  .option('--max-upload-mb <n>', 'largest input file taken', positiveNumber, 1024)
  .option('--no-auth', 'serve beyond this machine without SWITCHYARD_API_TOKEN: anyone who reaches it can run batches (a network you trust only)')
  .action((opts: { port: number; host: string; config?: string; out: string; concurrency?: number; worker: boolean; maxUploadMb: number; auth: boolean }) =>
    exitWith(async () => {
      stopEarly(say, 'before the server started: it took no batch and no row; the batches not finished go on when it starts again.');
      return (await import('./commands/serve.ts')).runServeCommand(opts, logger, say);
    }),
  );

program
  .command('sim')
  .description('start the built-in OpenAI-compatible simulator')
  .option('--port <n>', 'port (0 picks a free one)', portNumber, 8787)
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--latency-ms <ms>', 'mean answer latency', asGiven, 0)
  .option('--latency-jitter-ms <ms>', 'latency varies by up to this much either way', asGiven, 0)
  .option('--tokens-per-second <n>', 'answer writing speed after the latency: streamed answers come word by word (0: at once)', asGiven, 0)
  .option('--failure-rate <p>', 'share of calls answered 500', asGiven, 0)
  .option('--output-tokens <min-max>', 'answer length in tokens, picked per prompt in this range, e.g. 2000-4000 (default: 20-120)')
  .option('--rpm <n>', 'requests per minute per model (429 beyond)')
  .option('--tpm <n>', 'tokens per minute per model (429 beyond)')
  .option('--seed <n>', 'seed for failures and jitter')
  .option('--tpm-counts <requested|usage>', 'count tokens per minute as prompt + max_tokens (OpenAI-like) or as actual usage')
  .option('--model-limits <json>', 'per-model overrides, e.g. {"m":{"rpm":60,"fail_status":500}}')
  .option('--models <names>', 'serve only these models (comma-separated); others get 404 model_not_found, as a real provider answers a misspelt name (default: any name is served)')
  .addOption(new Option('--api-key <key>', 'require this bearer key').env('SIM_API_KEY'))
  .action((opts: Record<string, unknown>) =>
    exitWith(async () => {
      const { runSimulatorFromCli } = await import('./sim/cli-options.ts');
      // Through say: its summary quotes the model names clients sent (writeLines shows their control characters).
      await runSimulatorFromCli(opts, { log: say });
      return 0;
    }),
  );

program
  .command('demo')
  .description('run examples/prompts.csv end to end on the built-in models and simulator')
  .action(() =>
    exitWith(async () => {
      stopEarly(say, 'before anything was queued: nothing to resume.');
      return (await import('./commands/demo.ts')).runDemoCommand(logger, say);
    }),
  );

await program.parseAsync(process.argv);
