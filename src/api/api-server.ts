import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { z } from 'zod';
import { describeRedisTrouble } from '../errors.ts';
import { listenTrouble, urlHost } from '../listen-address.ts';
import { issueText } from '../config/issue-text.ts';
import { ApiError } from './api-error.ts';
import type { BatchService } from './batch-service.ts';
import type { InputFormat } from './batch-submission.ts';
import { batchPath, isOutputFileName, OUTPUT_FILES, type OutputFileName } from './batch-view.ts';
import { bearerToken, bodyCharset, drainBody, hasBearerToken, mediaType, sendError, sendFile, sendJson } from './http-io.ts';
import { saveJsonRows, saveUpload, storageTrouble, uploadCoding } from './upload.ts';
import { parseDecimal } from '../decimal-text.ts';
import { EXPOSITION_CONTENT_TYPE } from '../metrics/exposition.ts';
import { BUDGET_TOO_LARGE, MAX_BUDGET_USD } from '../models/pricing.ts';

/**
 * Switchyard's HTTP API: submit a CSV or JSONL batch, follow it, fetch its outputs.
 *
 *   POST /v1/batches?batch_id=&model=&route=&ab=&compare=&budget=&judge=&cache=&prompt_column=&format=   body: the file, or JSON rows
 *   GET  /v1/batches?limit=N&after=<id>          the most recent batches, or the page after <id>
 *   GET  /v1/batches/<id>                         one batch: status, rows, cost, file links
 *   GET  /v1/batches/<id>/results?format=jsonl|csv
 *   GET  /v1/batches/<id>/report?format=json|md
 *   GET  /v1/batches/<id>/files/<name>            any output file (costs.jsonl, errors.jsonl, ...)
 *   POST /v1/batches/<id>/cancel                  stop it; its outputs hold the rows finished
 *   GET  /metrics                                 Prometheus metrics (behind the token like the rest)
 *   GET  /healthz
 */
export interface ApiServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** When set, every request but /healthz must carry it as a bearer token. */
  token: string | null;
  maxUploadBytes: number;
  service: BatchService;
  logger: Logger;
  /** A connection that sends nothing for this long is closed (default 2 minutes): a stalled upload frees its batch id. */
  idleTimeoutMs?: number;
}

/** How long a stopping server lets the requests under way finish before it cuts them off: a scheduler's SIGKILL follows its SIGTERM (30 s in Kubernetes). */
const CLOSE_GRACE_MS = 10_000;

/** How long a connection may send nothing before it is closed: a stalled upload holds its batch id (a re-post gets 409) until then. */
const IDLE_TIMEOUT_MS = 120_000;

export interface ApiServer {
  url: string;
  /** Stops taking requests; answers under way finish. */
  close(): Promise<void>;
}

/** How a body arrives: a file in one of the readers' formats, or JSON rows (saved as JSONL). */
type BodyFormat = InputFormat | 'json';

const FORMAT_BY_MEDIA_TYPE: Record<string, BodyFormat> = {
  'application/json': 'json',
  'text/csv': 'csv',
  'application/csv': 'csv',
  'text/tab-separated-values': 'tsv',
  'application/jsonl': 'jsonl',
  'application/x-ndjson': 'jsonl',
  'application/x-jsonlines': 'jsonl',
  'application/jsonlines': 'jsonl',
};

const optionalText = z.string().trim().min(1).optional();
/** A query value read as a decimal number (parseDecimal: not "0x10" or "1e3"), or the rule it breaks. */
const decimalText = (rule: string) =>
  z.string().transform((text, ctx) => {
    const n = parseDecimal(text);
    if (n === null) ctx.addIssue({ code: 'custom', message: rule });
    return n ?? Number.NaN;
  });
const submitQuery = z.strictObject({
  batch_id: optionalText,
  model: optionalText,
  route: optionalText,
  ab: optionalText,
  compare: optionalText,
  budget: decimalText('expected a number of USD above 0, e.g. 5 or 2.50').pipe(z.number().positive({ error: 'expected a number of USD above 0' }).max(MAX_BUDGET_USD, { error: BUDGET_TOO_LARGE })).optional(),
  judge: optionalText,
  cache: z.enum(['true', 'false'], { error: 'expected true or false (false: the batch neither takes nor keeps cached answers)' }).optional(),
  prompt_column: optionalText,
  format: z.enum(['csv', 'tsv', 'jsonl', 'json']).optional(),
});
/** The batch settings a POST takes in its query string (named when a JSON body holds one beside its rows). */
const SUBMIT_SETTINGS = Object.keys(submitQuery.shape);
const LIMIT_RULE = 'expected a whole number from 1 to 100';
const listQuery = z.strictObject({ limit: decimalText(LIMIT_RULE).pipe(z.number().int({ error: LIMIT_RULE }).min(1, { error: LIMIT_RULE }).max(100, { error: LIMIT_RULE })).default(20), after: optionalText });
const resultsQuery = z.strictObject({ format: z.enum(['jsonl', 'csv']).default('jsonl') });
const reportQuery = z.strictObject({ format: z.enum(['json', 'md']).default('json') });
const noQuery = z.strictObject({});

/** The query string checked against a schema; a bad or unknown parameter is a 400 that names it. */
function parseQuery<T extends z.ZodType>(url: URL, schema: T): z.infer<T> {
  // Given twice, which one was meant is the client's to say: not silently the last.
  const twice = [...new Set(url.searchParams.keys())].find((key) => url.searchParams.getAll(key).length > 1);
  if (twice !== undefined) throw new ApiError(400, 'invalid_parameter', `query parameter "${twice}" is given ${url.searchParams.getAll(twice).length} times: give it once`);
  const parsed = schema.safeParse(Object.fromEntries(url.searchParams));
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  if (issue?.code === 'unrecognized_keys') {
    const allowed = schema instanceof z.ZodObject ? Object.keys(schema.shape) : [];
    const choices = allowed.length > 0 ? `; this request takes ${allowed.join(', ')}` : '; this request takes none';
    throw new ApiError(400, 'unknown_parameter', `unknown query parameter${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((key) => `"${key}"`).join(', ')}${choices}`);
  }
  throw new ApiError(400, 'invalid_parameter', `query parameter "${issue?.path.join('.') ?? '?'}": ${issue ? issueText(issue) : 'invalid'}`);
}

/** The body's format from ?format= or the Content-Type; neither is a 415 saying what to send. */
function bodyFormat(req: IncomingMessage, given: BodyFormat | undefined): BodyFormat {
  if (given) return given;
  const type = mediaType(req);
  const format = type ? FORMAT_BY_MEDIA_TYPE[type] : undefined;
  if (format) return format;
  throw new ApiError(
    415,
    'unsupported_media_type',
    `${type ? `Content-Type ${type} is not an input format` : 'no Content-Type'}: send the file as text/csv, text/tab-separated-values or application/jsonl, rows as application/json, or say ?format=csv|tsv|jsonl|json`,
  );
}

/** How long /healthz waits for Redis' PING: a health check's own timeout is often a few seconds. */
const HEALTH_PING_MS = 2000;

const BATCH_ROUTE = /^\/v1\/batches\/([^/]+)(?:\/(results|report|cancel|files\/([^/]+)))?$/;

export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const { service, logger } = options;

  async function route(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    // HEAD is a GET whose body Node leaves out (a client checking that outputs are there).
    const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
    const notAllowed = (allowed: 'GET' | 'POST' | 'GET, POST') => methodNotAllowed(req.method ?? 'GET', allowed);
    const unavailable = service.unavailable();
    // HEAD too: load balancers' health checks use it.
    if (url.pathname === '/healthz') {
      if (method !== 'GET') throw notAllowed('GET');
      const unhealthy = await service.unhealthy(HEALTH_PING_MS);
      // Asked without the token a server has, the reason leaves out where its Redis is: a load balancer needs only the status.
      const reason = unhealthy && options.token !== null && !hasBearerToken(req, options.token) ? 'Redis is not answering' : unhealthy;
      return sendJson(res, unhealthy ? 503 : 200, reason ? { ok: false, reason } : { ok: true }, unhealthy ? RETRY_LATER : {});
    }
    // The token first: a caller without it learns nothing of the server, not even where its Redis is.
    if (options.token !== null && !hasBearerToken(req, options.token)) {
      const message = bearerToken(req) === null ? 'this server needs its API token: send it as "Authorization: Bearer <token>"' : 'the bearer token is not this server\'s (it is set by SWITCHYARD_API_TOKEN where the server runs)';
      throw new ApiError(401, 'unauthorized', message, { 'www-authenticate': 'Bearer realm="switchyard"' });
    }
    // Before the Redis check: with Redis away the page still comes, saying so (switchyard_redis_up 0) beside this process's figures.
    if (url.pathname === '/metrics') {
      if (method !== 'GET') throw notAllowed('GET');
      parseQuery(url, noQuery);
      const page = await service.metrics();
      res.writeHead(200, { 'content-type': EXPOSITION_CONTENT_TYPE, 'content-length': String(Buffer.byteLength(page)) });
      return void res.end(page);
    }
    if (unavailable) throw new ApiError(503, 'redis_unavailable', unavailable, RETRY_LATER);
    /**
     * A request that changes a batch first hears Redis answer: one that holds its connection open and
     * answers nothing (paused, stuck) would leave the request hanging, then carry it out later, after
     * the client had given up on it. Refused at once, nothing is done.
     */
    const requireAnsweringRedis = async () => {
      const silent = await service.unhealthy(HEALTH_PING_MS);
      if (silent) throw new ApiError(503, 'redis_unavailable', `${silent}: nothing was done; send the request again once it answers`, RETRY_LATER);
    };
    if (url.pathname === '/v1/batches') {
      if (method === 'POST') {
        await requireAnsweringRedis();
        const query = parseQuery(url, submitQuery);
        const format = bodyFormat(req, query.format);
        const coding = uploadCoding(req.headers['content-encoding'], bodyCharset(req));
        const outcome = await service.submit({
          format: format === 'json' ? 'jsonl' : format,
          saveInput: async (path) => void (await (format === 'json' ? saveJsonRows(req, path, options.maxUploadBytes, coding, SUBMIT_SETTINGS) : saveUpload(req, path, options.maxUploadBytes, coding))),
          ...(query.batch_id !== undefined ? { batchId: query.batch_id } : {}),
          ...(query.model !== undefined ? { model: query.model } : {}),
          ...(query.route !== undefined ? { route: query.route } : {}),
          ...(query.ab !== undefined ? { ab: query.ab } : {}),
          ...(query.compare !== undefined ? { compare: query.compare } : {}),
          ...(query.budget !== undefined ? { budget: query.budget } : {}),
          ...(query.judge !== undefined ? { judge: query.judge } : {}),
          ...(query.cache !== undefined ? { cache: query.cache === 'true' } : {}),
          ...(query.prompt_column !== undefined ? { promptColumn: query.prompt_column } : {}),
        });
        return sendJson(res, 202, { ...outcome.view, resumed: outcome.resumed, notes: outcome.notes }, { location: outcome.view.links.self });
      }
      if (method === 'GET') {
        const { limit, after } = parseQuery(url, listQuery);
        return sendJson(res, 200, { object: 'list', ...(await withinDeadline(service.list(limit, after))) });
      }
      throw notAllowed('GET, POST');
    }
    const match = BATCH_ROUTE.exec(url.pathname);
    if (!match) throw new ApiError(404, 'not_found', `no such endpoint: ${method} ${url.pathname} (the API is under /v1/batches; /metrics and /healthz beside it)`);
    const batchId = decodedPathPart(match[1]!);
    const [, , part, fileName] = match;
    if (part === 'cancel') {
      if (method !== 'POST') throw notAllowed('POST');
      parseQuery(url, noQuery);
      await requireAnsweringRedis();
      return sendJson(res, 202, await service.cancel(batchId));
    }
    if (method !== 'GET') throw notAllowed('GET');
    if (part === undefined) {
      parseQuery(url, noQuery);
      return sendJson(res, 200, await withinDeadline(service.get(batchId)));
    }
    let name: OutputFileName;
    if (part === 'results') name = parseQuery(url, resultsQuery).format === 'csv' ? 'results.csv' : 'results.jsonl';
    else if (part === 'report') name = parseQuery(url, reportQuery).format === 'md' ? 'report.md' : 'report.json';
    else {
      parseQuery(url, noQuery);
      const asked = decodedPathPart(fileName ?? '');
      if (!isOutputFileName(asked)) throw new ApiError(404, 'file_not_found', `a batch has no output file "${asked}"; the files are ${Object.keys(OUTPUT_FILES).join(', ')}`);
      name = asked;
    }
    const file = await withinDeadline(service.outputFile(batchId, name));
    const why = name.startsWith('batch_') ? ' (only a batch of OpenAI Batch API lines has one)' : name === 'compare.csv' ? ' (only a batch posted with compare= has one)' : '';
    await sendFile(res, file.path, file.contentType, `batch ${batchId} has no ${name}${why}; GET ${batchPath(batchId)} lists its files`);
  }

  function errorAnswer(error: unknown, req: IncomingMessage, url: URL): ApiError {
    if (error instanceof ApiError) return error;
    const redis = describeRedisTrouble(error);
    if (redis) return new ApiError(503, 'redis_unavailable', redis.replace(/run the same command again: it goes on from where it stopped\.$/, 'send the request again.'), RETRY_LATER);
    const storage = storageTrouble(error);
    if (storage) return storage;
    logger.error({ err: error, method: req.method, path: url.pathname }, 'request failed');
    return new ApiError(500, 'internal_error', `the server failed on this request (its log has the details): ${error instanceof Error ? error.message : String(error)}`);
  }

  const server = createServer((req, res) => {
    // A path starting "//" would parse as a host ("//v1/batches": host v1, path /batches).
    const url = new URL((req.url ?? '/').replace(/^\/{2,}/, '/'), 'http://localhost');
    // "/v1/batches/b1/" is "/v1/batches/b1", and "//v1/batches" (a base URL ending in "/") "/v1/batches".
    if (url.pathname.length > 1) url.pathname = url.pathname.replace(/\/{2,}/g, '/').replace(/\/+$/, '');
    route(req, res, url).catch(async (error: unknown) => {
      const answer = errorAnswer(error, req, url);
      // The body a refused upload still has on its way is read first (within bounds), so that the client hears why.
      const whole = await drainBody(req);
      sendError(res, whole ? answer : new ApiError(answer.status, answer.code, answer.message, { ...answer.headers, connection: 'close' }));
    });
  });
  // Uploads of large files and long enqueues: no whole-request time limit, only an idle one.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  server.timeout = options.idleTimeoutMs ?? IDLE_TIMEOUT_MS;

  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => reject(listenTrouble(error, options.host, options.port) ?? error));
    server.listen(options.port, options.host, () => {
      server.removeAllListeners('error');
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${urlHost(options.host)}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        // An upload still coming in gets its answer (503 server_stopping) if it ends within the grace; a stalled one does not hold the stop for ever.
        setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS).unref();
      }),
  };
}

/**
 * A read that Redis does not answer in time (it went away just as the request came, and the
 * client is still retrying) is answered 503 rather than left hanging for the client's retries.
 */
const READ_DEADLINE_MS = 10_000;

function withinDeadline<T>(reading: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ApiError(503, 'redis_unavailable', `Redis did not answer within ${READ_DEADLINE_MS / 1000} s: if it is away, the server goes on by itself once it is back; send the request again then`, RETRY_LATER)), READ_DEADLINE_MS);
  });
  reading.catch(() => undefined); // answered late, or failed after the deadline: nobody waits for it any more
  return Promise.race([reading, late]).finally(() => clearTimeout(timer));
}

/** `allowed` as the endpoint says it; the Allow header adds HEAD wherever GET is (it answers HEAD). */
function methodNotAllowed(method: string, allowed: string): ApiError {
  const allow = allowed.includes('GET') ? allowed.replace('GET', 'GET, HEAD') : allowed;
  return new ApiError(405, 'method_not_allowed', `${method} is not allowed here; this endpoint takes ${allowed}`, { allow });
}

/** On a 503 for Redis: when a client might try again (the server goes on by itself once Redis is back). */
const RETRY_LATER = { 'retry-after': '5' };

/** A %-encoded part of the path; one that does not decode (%E0%A4%A) is the client's mistake, a 400. */
function decodedPathPart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new ApiError(400, 'invalid_path', `"${part}" in the path is not valid %-encoding (UTF-8 bytes as %XX)`);
  }
}
