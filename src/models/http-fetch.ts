import http from 'node:http';
import { Readable } from 'node:stream';
import { BufferedResponse } from './buffered-response.ts';
import { contentCodings, decodeBytes, decoderStream } from './content-coding.ts';

/**
 * The `fetch` the openai SDK uses for model calls: Node's own `http` client on a keep-alive agent,
 * answering with a `Response` that holds the body as bytes (buffered-response.ts). Through
 * the SDK a call costs about 0.35 ms of CPU this way against 0.75-0.8 ms with Node's global fetch
 * (its WHATWG request, controller and stream machinery), which was the largest cost of a busy
 * worker (docs/benchmarks.md). Server-sent events are streamed as they come; like fetch, it asks
 * for compressed answers and decodes them (content-coding.ts). Requests this adapter does not cover (a `Request` object, a streamed or multipart body, a redirect to follow) go to the
 * global fetch unchanged.
 */
export type FetchFunction = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

const NULL_BODY_STATUSES = new Set([204, 205, 304]);
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

type HttpModule = Pick<typeof http, 'request'>;
interface Transport {
  module: HttpModule;
  agent: http.Agent;
}

/**
 * Whether Node was told to send requests through the proxy in HTTP(S)_PROXY (NODE_USE_ENV_PROXY=1
 * or --use-env-proxy). Node's global fetch honours that; this adapter's agents would not, so the
 * SDK then keeps the global fetch.
 */
export function nodeUsesEnvProxy(env: NodeJS.ProcessEnv = process.env, execArgv: readonly string[] = process.execArgv): boolean {
  return env.NODE_USE_ENV_PROXY === '1' || execArgv.includes('--use-env-proxy') || /(^|\s)--use-env-proxy(\s|$)/.test(env.NODE_OPTIONS ?? '');
}

/**
 * The process's keep-alive agents, shared by every SDK client: each batch (and each reload of its
 * config) builds its own clients, and an agent apiece kept every batch's idle sockets open until
 * the provider closed them (QA soak: a server given 240 small batches held 4,000 sockets to its
 * provider). LIFO reuses the most recently used sockets, so idle ones age out instead of all
 * staying warm.
 */
let plainTransport: Transport | undefined;
// node:https loads TLS; only pay for it when a provider is actually https.
let secureTransport: Promise<Transport> | undefined;

function transportFor(protocol: string): Transport | Promise<Transport> | null {
  if (protocol === 'http:') return (plainTransport ??= { module: http, agent: new http.Agent({ keepAlive: true, scheduling: 'lifo' }) });
  if (protocol !== 'https:') return null;
  secureTransport ??= import('node:https').then((https) => ({ module: https, agent: new https.Agent({ keepAlive: true, scheduling: 'lifo' }) }));
  return secureTransport;
}

export function createHttpFetch(fallback: FetchFunction = globalThis.fetch): FetchFunction {

  // The SDK calls a handful of URLs over and over: parse each once (bounded, in case query strings vary).
  const targets = new Map<string, Target>();
  const targetOf = (input: string | URL): Target => {
    if (input instanceof URL) return toTarget(input);
    let target = targets.get(input);
    if (!target) {
      if (targets.size >= 256) targets.clear();
      target = toTarget(new URL(input));
      targets.set(input, target);
    }
    return target;
  };

  return async function httpFetch(input, init = {}) {
    const body = init.body ?? undefined;
    if (input instanceof Request || (body !== undefined && typeof body !== 'string' && !(body instanceof Uint8Array))) return fallback(input, init);
    const target = targetOf(input);
    const transport = transportFor(target.protocol);
    if (!transport) return fallback(input, init);
    const response = await send(await transport, target, init, body);
    if (!REDIRECT_STATUSES.has(response.status) || !response.headers.has('location')) return response;
    // fetch would follow a 301, 302 or 303 as a GET without the body: a model call must not become
    // that (a GET the target answers looks like an answer). The error names the redirect instead.
    if (response.status <= 303 && (init.method ?? 'GET') !== 'GET') return response;
    // A 307 or 308 keeps the method and body: fetch follows it (a provider behind one is rare).
    return fallback(input, init);
  };
}

/**
 * The global fetch (used when Node sends requests through the environment's proxy), but not
 * following a 301, 302 or 303 that would turn a model call into a GET without its body, as
 * createHttpFetch does not; a 307 or 308, which keeps the body, it follows.
 */
export function createProxyFetch(base: FetchFunction = globalThis.fetch): FetchFunction {
  return async function proxyFetch(input, init = {}) {
    if ((init.method ?? 'GET') === 'GET' || init.redirect !== undefined) return base(input, init);
    const response = await base(input, { ...init, redirect: 'manual' });
    const resendable = init.body === undefined || init.body === null || typeof init.body === 'string' || init.body instanceof Uint8Array;
    return response.status === 307 || response.status === 308 ? (resendable ? base(input, init) : response) : response;
  };
}

/** What http.request needs of a URL. */
interface Target {
  protocol: string;
  hostname: string;
  port: string;
  path: string;
  host: string;
}

function toTarget(url: URL): Target {
  // http.request wants an IPv6 address without the URL's brackets.
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { protocol: url.protocol, hostname, port: url.port, path: `${url.pathname}${url.search}`, host: url.host };
}

function send(transport: Transport, target: Target, init: RequestInit, body: string | Uint8Array | undefined): Promise<Response> {
  // Given headers as an array, http.request adds no Host header of its own.
  const headers = rawHeaders(init.headers, target.host);
  if (body !== undefined) headers.push('content-length', String(typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength));
  const options = { protocol: target.protocol, hostname: target.hostname, port: target.port, path: target.path, method: init.method ?? 'GET', headers, agent: transport.agent, signal: init.signal ?? undefined };
  return new Promise<Response>((resolve, reject) => {
    const request = transport.module.request(options, (incoming) => {
      const status = incoming.statusCode ?? 0;
      const statusText = incoming.statusMessage ?? '';
      const responseHeaders = new Headers();
      const raw = incoming.rawHeaders;
      for (let i = 0; i + 1 < raw.length; i += 2) responseHeaders.append(raw[i] as string, raw[i + 1] as string);
      const codings = contentCodings(responseHeaders.get('content-encoding'));
      if (responseHeaders.get('content-type')?.startsWith('text/event-stream')) {
        // Server-sent events are read as they arrive, not buffered.
        const decoded = codings.reduce<Readable>((stream, coding) => stream.pipe(decoderStream(coding)), incoming);
        resolve(new Response(Readable.toWeb(decoded) as ReadableStream<Uint8Array>, { status, statusText, headers: responseHeaders }));
        return;
      }
      const chunks: Buffer[] = [];
      incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
      incoming.on('error', reject);
      incoming.on('end', () => {
        if (!incoming.complete) {
          reject(new Error(`the connection to ${target.host} closed before the whole answer arrived`));
          return;
        }
        const init = { status, statusText, headers: responseHeaders };
        if (NULL_BODY_STATUSES.has(status)) return resolve(new Response(null, init));
        let bytes: Buffer = Buffer.concat(chunks);
        try {
          for (const coding of codings) if (bytes.length > 0) bytes = decodeBytes(bytes, coding);
        } catch (error) {
          return reject(new Error(`the answer from ${target.host} is not valid ${codings.join(', ')} data: ${(error as Error).message}`));
        }
        resolve(new BufferedResponse(bytes, init));
      });
    });
    request.on('error', reject);
    request.end(body);
  });
}

/** Request headers as http.request takes them fastest: [name, value, name, value, ...]. */
function rawHeaders(headers: RequestInit['headers'], host: string): string[] {
  const raw: string[] = [];
  let hasHost = false;
  let hasAcceptEncoding = false;
  if (headers) {
    const pairs = headers instanceof Headers || Array.isArray(headers) ? headers : Object.entries(headers as Record<string, string>);
    for (const [name, value] of pairs) {
      raw.push(name, value);
      const lower = name.toLowerCase();
      hasHost ||= lower === 'host';
      hasAcceptEncoding ||= lower === 'accept-encoding';
    }
  }
  if (!hasHost) raw.push('host', host);
  if (!hasAcceptEncoding) raw.push('accept-encoding', 'gzip, deflate, br');
  return raw;
}
