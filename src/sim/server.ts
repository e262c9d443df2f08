import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { urlHost } from '../listen-address.ts';
import { planChat, type ChatPlan } from './chat.ts';
import { errorAnswer, invalidRequest, type ErrorAnswer } from './openai-error.ts';
import { parseSimOptions, type SimOptions, type SimOptionsInput } from './options.ts';
import { mulberry32 } from './prng.ts';
import { RateLimiter } from './rate-limit.ts';
import { streamParts, streamPayload } from './sse.ts';
import { StatsCollector, type SimStats } from './stats.ts';

/**
 * The built-in OpenAI-compatible simulator: POST /v1/chat/completions (JSON or SSE),
 * GET /v1/models, and JSON errors shaped like OpenAI's for everything else.
 */

export type SimulatorOptions = SimOptionsInput & {
  /** 0 (the default) picks a free port. */
  port?: number;
  host?: string;
};

export interface Simulator {
  /** Base URL for the openai SDK, ending in /v1. */
  url: string;
  port: number;
  stats(): SimStats;
  /** Clears stats and rate-limit windows and re-seeds the PRNG. */
  reset(): void;
  /** Shallow merge over the current options (a `models` in the patch replaces the whole map). */
  setOptions(patch: SimOptionsInput): void;
  options(): SimOptions;
  /** Stops listening and drops every connection, keep-alive ones included. */
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 16 * 1024 * 1024;

function readBody(req: IncomingMessage, done: (body: string | null) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size <= MAX_BODY_BYTES) chunks.push(chunk);
  });
  req.on('end', () => done(size > MAX_BODY_BYTES ? null : Buffer.concat(chunks).toString('utf8')));
  req.on('error', () => done(null));
}

export async function startSimulator(input: SimulatorOptions = {}): Promise<Simulator> {
  const { port: wantedPort = 0, host = '127.0.0.1', ...simInput } = input;
  let options = parseSimOptions(simInput);
  let random = mulberry32(options.seed);
  const limiter = new RateLimiter();
  const stats = new StatsCollector();
  const timers = new Set<NodeJS.Timeout>();
  let sequence = 0;

  function send(res: ServerResponse, status: number, headers: Record<string, string>, payload: string): void {
    if (res.destroyed) return;
    res.writeHead(status, { ...headers, 'content-length': String(Buffer.byteLength(payload)) });
    res.end(payload);
  }

  function sendError(res: ServerResponse, requestId: string, answer: ErrorAnswer, model?: string): void {
    stats.answered(answer.status, model);
    const headers = { 'content-type': 'application/json', 'x-request-id': requestId, ...answer.headers };
    send(res, answer.status, headers, JSON.stringify(answer.body));
  }

  /**
   * Runs what answers one request; an error it throws (a bug of the simulator's) is that request's
   * 500, as a provider answers its own failures. The simulator also runs inside `run` and `serve`
   * (the built-in models): thrown on, it would end the user's whole run.
   */
  function answering(res: ServerResponse, requestId: string, action: () => void): void {
    try {
      action();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (res.headersSent) return void res.destroy(); // part of an answer out: cut it off, as a failing provider does
      sendError(res, requestId, errorAnswer(500, { message: `The simulator failed on this request: ${message}`, type: 'server_error', code: 'internal_error' }));
    }
  }

  function later(res: ServerResponse, requestId: string, delayMs: number, action: () => void): void {
    if (delayMs <= 0) return action();
    const timer = setTimeout(() => {
      timers.delete(timer);
      answering(res, requestId, action);
    }, delayMs);
    timers.add(timer);
  }

  function answerChat(res: ServerResponse, requestId: string, plan: ChatPlan & { kind: 'answer' }): void {
    const { answer, model, promptTokens } = plan;
    const usage = { prompt_tokens: promptTokens, completion_tokens: answer.completionTokens, total_tokens: promptTokens + answer.completionTokens };
    stats.answered(200, model, { prompt: promptTokens, completion: answer.completionTokens });
    const id = requestId.replace('req_', 'chatcmpl-');
    const created = Math.floor(Date.now() / 1000);
    const common = { 'x-request-id': requestId, ...plan.headers };
    if (plan.stream) {
      const input = { id, created, model, content: answer.content, json: answer.json, finishReason: answer.finishReason, usage: plan.includeUsage ? usage : undefined };
      const headers = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', ...common };
      if (plan.wordIntervalMs > 0) return writePaced(res, requestId, headers, streamParts(input), plan.wordIntervalMs);
      send(res, 200, headers, streamPayload(input));
      return;
    }
    const body = {
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [{ index: 0, message: { role: 'assistant', content: answer.content, refusal: null }, logprobs: null, finish_reason: answer.finishReason }],
      ...(plan.omitUsage ? {} : { usage }),
    };
    send(res, 200, { 'content-type': 'application/json', ...common }, JSON.stringify(body));
  }

  /** A stream written word by word: the role chunk and first word now, then one event per interval. */
  function writePaced(res: ServerResponse, requestId: string, headers: Record<string, string>, parts: string[], intervalMs: number): void {
    if (res.destroyed) return;
    res.writeHead(200, headers);
    res.write(parts[0]! + (parts[1] ?? ''));
    let next = 2;
    const writeNext = () => {
      if (res.destroyed) return;
      if (next >= parts.length) return void res.end();
      res.write(parts[next++]!);
      later(res, requestId, intervalMs, writeNext);
    };
    later(res, requestId, intervalMs, writeNext);
  }

  function onChat(res: ServerResponse, requestId: string, text: string | null): void {
    if (text === null) return sendError(res, requestId, invalidRequest('Request body too large or unreadable.', 'invalid_request_body', null, 413));
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return sendError(res, requestId, invalidRequest('We could not parse the JSON body of your request.', 'invalid_json'));
    }
    const plan = planChat({ options, limiter, stats, random, now: Date.now() }, body);
    later(res, requestId, plan.delayMs, () => (plan.kind === 'answer' ? answerChat(res, requestId, plan) : sendError(res, requestId, plan.answer, plan.model)));
  }

  function authorized(req: IncomingMessage): boolean {
    return options.api_key === undefined || req.headers.authorization === `Bearer ${options.api_key}`;
  }

  const server = createServer({ keepAlive: true, noDelay: true }, (req, res) => {
    sequence++;
    const requestId = `req_sim_${sequence.toString(36)}`;
    const path = (req.url ?? '/').split('?', 1)[0];
    const route = `${req.method} ${path}`;
    readBody(req, (text) => answering(res, requestId, () => {
      if (!authorized(req)) {
        const message = req.headers.authorization ? 'Incorrect API key provided.' : "You didn't provide an API key. Provide it as a Bearer token in the Authorization header.";
        return sendError(res, requestId, invalidRequest(message, 'invalid_api_key', null, 401));
      }
      if (route === 'POST /v1/chat/completions') {
        stats.inFlight(1);
        res.once('close', () => stats.inFlight(-1));
        return onChat(res, requestId, text);
      }
      if (route === 'GET /v1/models') {
        stats.answered(200);
        const data = Object.keys(options.models).map((id) => ({ id, object: 'model', created: 0, owned_by: 'switchyard-sim' }));
        return send(res, 200, { 'content-type': 'application/json', 'x-request-id': requestId }, JSON.stringify({ object: 'list', data }));
      }
      sendError(res, requestId, invalidRequest(`Unknown request URL: ${route}.`, 'unknown_url', null, 404));
    }));
  });
  // Longer than clients' idle timeout (undici: 4 s, or the server's hint), so the client closes first.
  server.keepAliveTimeout = 30_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(wantedPort, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://${urlHost(host)}:${port}/v1`,
    port,
    stats: () => stats.snapshot(),
    reset() {
      stats.reset();
      limiter.reset();
      random = mulberry32(options.seed);
    },
    setOptions(patch) {
      const previousSeed = options.seed;
      options = parseSimOptions({ ...options, ...patch });
      if (options.seed !== previousSeed) random = mulberry32(options.seed);
    },
    options: () => options,
    close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      return new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}
