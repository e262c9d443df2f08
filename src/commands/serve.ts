import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { exitWhenRedisStaysAway } from '../queue/redis-stays-away.ts';
import { startApiServer } from '../api/api-server.ts';
import { API_TOKEN_ENV, apiToken } from '../api/api-token.ts';
import { createBackgroundCollection } from '../api/background-collection.ts';
import { createBatchService } from '../api/batch-service.ts';
import { loadConfigFile } from '../config/load.ts';
import { exitCodeForSignal, UsageError } from '../errors.ts';
import { createCallSlots } from '../execution/call-slots.ts';
import { limitHeapGrowth } from '../heap-growth.ts';
import { isLoopback } from '../listen-address.ts';
import { endEarlyStop } from '../early-stop.ts';
import { createBatchContexts } from '../../workers/batch-context.ts';
import { deadProcessRowsText } from '../queue/worker-registry.ts';
import type { Simulator } from '../sim/server.ts';
import { startSessionWorker } from '../../workers/session-worker.ts';
import { startBuiltInModels } from '../batch/built-in-models.ts';
import type { RunHost } from '../batch/run-batch.ts';
import { openSession } from '../queue/session.ts';
import { createOutputDir } from '../output/output-dir.ts';
import { configFingerprint } from '../config/config-fingerprint.ts';

export interface ServeOptions {
  host: string;
  port: number;
  config?: string;
  /** Each submitted batch's input and outputs go to `<out>/<batch id>/`. */
  out: string;
  /** Model calls in flight in this process (default: the config's concurrency). */
  concurrency?: number;
  /** false: only take batches and write their outputs; `switchyard worker` processes run the rows. */
  worker: boolean;
  maxUploadMb: number;
  /** false (--no-auth): serve beyond this machine without SWITCHYARD_API_TOKEN, on a network the operator trusts. */
  auth: boolean;
}

/**
 * `switchyard serve`: the HTTP API (src/api/) in front of the same producer, queue and collector as
 * `run`. Submitted batches run on this process's workers (and any `switchyard worker` on the same
 * Redis); their outputs are written here. Ctrl-C or SIGTERM stops it; a server started again goes on
 * with the batches it had not finished.
 */
export async function runServeCommand(options: ServeOptions, logger: Logger, say: (line: string) => void): Promise<number> {
  limitHeapGrowth();
  if (!options.worker && !options.config) {
    throw new UsageError('--no-worker needs --config: the built-in models are a simulator inside the server, which only its own workers can call. Give a config (examples/switchyard.yaml runs on "switchyard sim"), or drop --no-worker.');
  }
  // Before anything starts: an open server without a token is refused, not warned about.
  const token = apiToken(process.env, options.host, options.auth);
  // Checked now, not at the first POST (QA: a file given as --out started a server that failed every batch with a 500).
  await createOutputDir(resolve(options.out));
  const session = await openSession(logger, say, { waitForRedis: 'for ever' });
  let simulator: Simulator | null = null;
  try {
    let config: RunHost['config'];
    if (options.config) config = { config: await loadConfigFile(options.config), builtIn: false };
    else {
      const builtIn = await startBuiltInModels();
      simulator = builtIn.simulator;
      config = { config: builtIn.config, builtIn: true };
      say(`No --config given: batches run on the built-in models on the simulator at ${simulator.url} (no API key needed).`);
    }
    const stop = new AbortController();
    const concurrency = options.concurrency ?? config.config.concurrency;
    const batches = createBatchContexts(session.store, { callSlots: createCallSlots(concurrency), monthSpend: session.monthSpend, refusals: session.refusals });
    // What its batches record, so that a server started with another config leaves them (open-batches.ts).
    const serverConfig = { fingerprint: configFingerprint(config.config, config.builtIn), from: `${options.config ? `--config ${resolve(options.config)}` : 'the built-in models'} on host ${hostname()}` };
    const host: RunHost = { session, config, serverConfig, stop: stop.signal, ...(options.worker ? { prime: batches.prime } : {}) };
    const collection = createBackgroundCollection(session, say);
    const service = createBatchService({ host, outRoot: resolve(options.out), collection, logger, say });
    const server = await startApiServer({ host: options.host, port: options.port, token, maxUploadBytes: options.maxUploadMb * 1024 * 1024, service, logger });
    // Started once the server listens, in the tick its stop handling is installed: an early stop (early-stop.ts) quits with no row in hand.
    const worker = options.worker
      ? startSessionWorker(session, {
          batches,
          logger,
          concurrency,
          lockMs: config.config.queue.lock_ms,
          onRowsOfDeadProcess: (released) => say(deadProcessRowsText(released)),
        })
      : null;
    const where = options.host === '0.0.0.0' || options.host === '::' ? `every interface (${options.host}), on this machine ${server.url}` : server.url;
    say(`Switchyard API listening on ${where} (POST ${server.url}/v1/batches with a CSV or JSONL file; outputs under ${resolve(options.out)}).`);
    say(worker ? `Workers here make up to ${concurrency} model calls at a time; Redis ${session.redisLabel}, prefix "${session.space.prefix}".` : `No workers here (--no-worker): start "switchyard worker" processes on Redis ${session.redisLabel}, prefix "${session.space.prefix}".`);
    if (token !== null) say(`Every request but GET /healthz needs ${API_TOKEN_ENV} as a bearer token (Authorization: Bearer ...).`);
    else if (!isLoopback(options.host)) say('No API token (--no-auth): anyone who reaches the server can run batches, spending money, and read their files.');
    say(`Ctrl-C stops it${worker ? ' once the calls in flight finish' : ''}; started again, it goes on with the batches not finished.`);
    // Listening before the resume below, which may read a long file: a stop then ends that too.
    const stopped = new Promise<void>((resolve) => {
      const onSignal = (signal: NodeJS.Signals) => {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        say(`Stopping (${signal}): no new batches or calls; the calls in flight finish, then the server exits (a second Ctrl-C or SIGTERM quits at once). Batches not finished go on when it starts again.`);
        process.once('SIGINT', quitNow);
        session.outages.stopping(signal);
        process.once('SIGTERM', quitNow);
        exitWhenRedisStaysAway(session, signal, 'The calls in flight are not recorded (their rows run again); the batches not finished go on when the server starts again with Redis back.');
        stop.abort();
        resolve();
      };
      const quitNow = (signal: NodeJS.Signals) => {
        say(`Quit at once (${signal}): the calls in flight are not recorded, and their rows run again when the server starts again.`);
        process.exit(exitCodeForSignal(signal));
      };
      endEarlyStop();
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
    });
    await service.resumeOpenBatches();
    await stopped;
    // The workers stop starting calls at once, beside the server's close: an upload still coming in
    // (a stalled client) kept them taking rows and calling models after the stop (QA).
    const workersClosed = worker?.close();
    await server.close();
    await service.whenReadingsEnd();
    await workersClosed;
    await collection.stop();
    return 0;
  } finally {
    await session.close();
    await simulator?.close();
  }
}
