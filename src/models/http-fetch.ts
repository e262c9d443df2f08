import http from 'node:http';
import { Readable, type Transform } from 'node:stream';
import zlib from 'node:zlib';

/**
 * The `fetch` the openai SDK uses for model calls: Node's own `http` client on a keep-alive agent,
 * answering with a `Response` that holds the body as bytes (see BufferedResponse below). Through
 * the SDK a call costs about 0.35 ms of CPU this way against 0.75-0.8 ms with Node's global fetch
 * (its WHATWG request, controller and stream machinery), which was the largest cost of a busy
 * worker (docs/benchmarks.md). Server-sent events are streamed as they come; like fetch, it asks
 * for compressed answers and decodes them. Requests this adapter does not cover (a `Request` object, a streamed or multipart body, a redirect to follow) go to the
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

export function createHttpFetch(fallback: FetchFunction = globalThis.fetch): FetchFunction {
  // LIFO reuses the most recently used sockets, so idle ones age out instead of all staying warm.
  const plain: Transport = { module: http, agent: new http.Agent({ keepAlive: true, scheduling: 'lifo' }) };
  // node:https loads TLS; only pay for it when a provider is actually https.
  let secure: Promise<Transport> | undefined;
  const transportFor = (protocol: string): Transport | Promise<Transport> | null => {
    if (protocol === 'http:') return plain;
    if (protocol !== 'https:') return null;
    secure ??= import('node:https').then((https) => ({ module: https, agent: new https.Agent({ keepAlive: true, scheduling: 'lifo' }) }));
    return secure;
  };

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
    // fetch follows redirects; a provider behind one is rare enough to hand back to it.
    if (REDIRECT_STATUSES.has(response.status) && response.headers.has('location')) return fallback(input, init);
    return response;
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

type ContentCoding = 'gzip' | 'deflate' | 'br' | 'zstd';

/** The codings to undo, last applied first; `identity` and unknown ones are left as they are (as fetch does). */
function contentCodings(header: string | null): ContentCoding[] {
  if (!header) return [];
  const known = new Set<string>(['gzip', 'deflate', 'br', 'zstd']);
  return header
    .split(',')
    .map((coding) => coding.trim().toLowerCase().replace(/^x-gzip$/, 'gzip'))
    .filter((coding): coding is ContentCoding => known.has(coding))
    .reverse();
}

function decodeBytes(bytes: Buffer, coding: ContentCoding): Buffer {
  switch (coding) {
    case 'gzip':
      return zlib.gunzipSync(bytes, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
    case 'deflate':
      // Servers send "deflate" both with the zlib wrapper (the standard) and without it.
      return (bytes[0]! & 0x0f) === 0x08 ? zlib.inflateSync(bytes, { finishFlush: zlib.constants.Z_SYNC_FLUSH }) : zlib.inflateRawSync(bytes, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
    case 'br':
      return zlib.brotliDecompressSync(bytes);
    case 'zstd':
      return zlib.zstdDecompressSync(bytes);
  }
}

function decoderStream(coding: ContentCoding): Transform {
  const flush = { finishFlush: zlib.constants.Z_SYNC_FLUSH };
  switch (coding) {
    case 'gzip':
      return zlib.createGunzip(flush);
    case 'deflate':
      return zlib.createInflate(flush);
    case 'br':
      return zlib.createBrotliDecompress();
    case 'zstd':
      return zlib.createZstdDecompress();
  }
}

/**
 * A Response whose whole body is already in memory. A standard Response wraps its body in a web
 * stream and reads it back through it: about 10 µs and a dozen objects per call, 5% of a busy
 * worker's CPU. This one hands the bytes over directly. `body` (a stream over the same bytes) is
 * made only if asked for; reading it does not mark the body used.
 */
// TypeScript's Response type declares its methods as properties, which a subclass may not redefine
// as methods or accessors; at run time they are ordinary prototype members. So the class extends
// Response through a narrower constructor type, and the interface below gives it Response's type.
const ResponseBase: new (body: null, init: ResponseInit) => Pick<Response, 'status' | 'statusText' | 'headers'> = Response;
interface BufferedResponse extends Response {}
class BufferedResponse extends ResponseBase {
  readonly #bytes: Buffer;
  #stream: ReadableStream<Uint8Array> | null = null;
  #used = false;

  constructor(bytes: Buffer, init: ResponseInit) {
    super(null, init);
    this.#bytes = bytes;
  }

  get body(): ReadableStream<Uint8Array> {
    this.#stream ??= new Blob([this.#bytes]).stream();
    return this.#stream;
  }

  get bodyUsed(): boolean {
    return this.#used;
  }

  #take(): Buffer {
    if (this.#used) throw new TypeError('Body is unusable: Body has already been read');
    this.#used = true;
    return this.#bytes;
  }

  async text(): Promise<string> {
    const text = this.#take().toString('utf8');
    return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text; // as fetch: a UTF-8 BOM is not text
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    return new Uint8Array(this.#take()).buffer;
  }

  async bytes(): Promise<Uint8Array<ArrayBuffer>> {
    return new Uint8Array(this.#take());
  }

  async blob(): Promise<Blob> {
    return new Blob([this.#take()], { type: this.headers.get('content-type') ?? '' });
  }

  clone(): Response {
    if (this.#used) throw new TypeError('Response.clone: Body has already been consumed.');
    return new BufferedResponse(this.#bytes, { status: this.status, statusText: this.statusText, headers: this.headers });
  }
}
