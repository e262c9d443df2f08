import { z } from 'zod';
import { describeIssues } from '../config/load.ts';
import { UsageError } from '../errors.ts';
import { listenTrouble } from '../listen-address.ts';
import { parseSimOptions, simModelSchema, type TpmCounts } from './options.ts';
import { startSimulator, type SimulatorOptions } from './server.ts';
import { simStatsSummary } from './stats-summary.ts';

/**
 * `switchyard sim` options as commander hands them over (camelCase, values as strings unless the
 * command parses them), turned into simulator options.
 */
export interface SimCliOptions {
  port?: string | number;
  host?: string;
  latencyMs?: string | number;
  latencyJitterMs?: string | number;
  tokensPerSecond?: string | number;
  failureRate?: string | number;
  /** Answer length range in tokens, "min-max" or one number (default 20-120). */
  outputTokens?: string;
  /** Default limits for every model without its own. */
  rpm?: string | number;
  tpm?: string | number;
  seed?: string | number;
  /** What tpm counts: `requested` (prompt + max_tokens, the default) or `usage` (prompt + actual answer). */
  tpmCounts?: string;
  /** JSON: model name -> { rpm, tpm, tpm_counts, latency_ms, failure_rate, fail_status, context_window }. */
  modelLimits?: string;
  /** Comma-separated: the only model names served; any other gets a 404, as from a real provider. */
  models?: string;
  /** When set (commander may read it from SIM_API_KEY), calls need `Authorization: Bearer <key>`. */
  apiKey?: string;
}

const DEFAULT_SIM_PORT = 8787;

function numberOption(flag: string, value: string | number | undefined): number | undefined {
  if (value === undefined) return undefined;
  const number = typeof value === 'number' ? value : Number(value.trim());
  if (!Number.isFinite(number) || (typeof value === 'string' && value.trim() === '')) {
    throw new UsageError(`${flag} expects a number, got "${value}"`);
  }
  return number;
}

function tpmCountsOption(value: string | undefined): TpmCounts | undefined {
  if (value === undefined) return undefined;
  if (value === 'requested' || value === 'usage') return value;
  throw new UsageError(`--tpm-counts expects "requested" or "usage", got "${value}"`);
}

function modelLimits(json: string | undefined): SimulatorOptions['models'] {
  if (json === undefined) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (error) {
    throw new UsageError(`--model-limits expects JSON such as '{"deepseek-v4-flash":{"rpm":60}}': ${(error as Error).message}`);
  }
  const result = z.record(z.string().min(1), simModelSchema).safeParse(raw);
  if (!result.success) throw new UsageError(`--model-limits is not valid:\n${describeIssues(result.error)}`);
  return result.data;
}

/** "2000-4000" (or "3000", both ends the same) as the simulator's output_tokens range. */
function outputTokensOption(value: string | undefined): { min: number; max: number } | undefined {
  if (value === undefined) return undefined;
  const match = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(value);
  if (!match) throw new UsageError(`--output-tokens expects a range of tokens such as 2000-4000 (or one number), got "${value}"`);
  const min = Number(match[1]);
  return { min, max: match[2] === undefined ? min : Number(match[2]) };
}

function servedModels(names: string | undefined): NonNullable<SimulatorOptions['models']> {
  if (names === undefined) return {};
  const list = names.split(',').map((name) => name.trim()).filter(Boolean);
  if (list.length === 0) throw new UsageError('--models expects model names separated by commas, e.g. "deepseek-v4-flash,glm-4"');
  return Object.fromEntries(list.map((name) => [name, {}]));
}

export function simOptionsFromCli(cli: SimCliOptions): SimulatorOptions & { port: number; host: string } {
  const port = numberOption('--port', cli.port) ?? DEFAULT_SIM_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new UsageError(`--port expects 0..65535, got "${cli.port}"`);
  const input: SimulatorOptions = {
    latency_ms: numberOption('--latency-ms', cli.latencyMs),
    latency_jitter_ms: numberOption('--latency-jitter-ms', cli.latencyJitterMs),
    tokens_per_second: numberOption('--tokens-per-second', cli.tokensPerSecond),
    failure_rate: numberOption('--failure-rate', cli.failureRate),
    output_tokens: outputTokensOption(cli.outputTokens),
    rpm: numberOption('--rpm', cli.rpm),
    tpm: numberOption('--tpm', cli.tpm),
    tpm_counts: tpmCountsOption(cli.tpmCounts),
    seed: numberOption('--seed', cli.seed),
    models: { ...servedModels(cli.models), ...modelLimits(cli.modelLimits) },
    strict_models: cli.models !== undefined,
    api_key: cli.apiKey === '' ? undefined : cli.apiKey,
  };
  // Validate here so a bad flag is a usage error before anything listens (unset flags are undefined: defaults).
  parseSimOptions(input, 'simulator options from the command line');
  return { ...input, port, host: cli.host ?? '127.0.0.1' };
}

export interface RunSimulatorIo {
  log?: (line: string) => void;
  /** Stops the simulator like SIGINT does (for tests and embedding). */
  signal?: AbortSignal;
}

/** Starts the simulator, prints where it listens, and serves until SIGINT/SIGTERM (or `signal`). */
export async function runSimulatorFromCli(cli: SimCliOptions, io: RunSimulatorIo = {}): Promise<void> {
  const log = io.log ?? ((line: string) => console.log(line));
  const options = simOptionsFromCli(cli);
  const sim = await startSimulator(options).catch((error: unknown) => {
    throw listenTrouble(error, options.host, options.port) ?? error;
  });
  log(`Simulator listening on ${sim.url}`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      io.signal?.removeEventListener('abort', stop);
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    if (io.signal?.aborted) stop();
    else io.signal?.addEventListener('abort', stop, { once: true });
  });
  const stats = sim.stats();
  await sim.close();
  for (const line of simStatsSummary(stats)) log(line);
}
