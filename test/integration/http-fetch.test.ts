import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { brotliCompressSync, createGzip, deflateRawSync, gzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, AuthenticationError, RateLimitError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpFetch, createProxyFetch, nodeUsesEnvProxy, type FetchFunction } from '../../src/models/http-fetch.ts';
import { createProviderClients } from '../../src/models/provider-clients.ts';
import { parseConfig } from '../../src/config/load.ts';
import { classifyModelError } from '../../src/models/model-error.ts';
import { startSimulator, type Simulator } from '../../src/sim/server.ts';

/** The SDK's fetch adapter: what the SDK sees must not differ from what Node's global fetch gives it. */
describe('createHttpFetch', () => {
  let sim: Simulator;
  let raw: Server;
  let rawUrl: string;
  const seen: Array<{ method: string | undefined; url: string | undefined; headers: IncomingMessage['headers']; body: string }> = [];

  const routes: Record<string, (res: ServerResponse) => void> = {
    '/multi': (res) => {
      res.setHeader('set-cookie', ['a=1', 'b=2']);
      res.setHeader('x-twice', ['one', 'two']);
      res.setHeader('content-type', 'application/json');
      res.end('{"ok":true}');
    },
    '/empty': (res) => {
      res.statusCode = 204;
      res.end();
    },
    '/moved-301': (res) => {
      res.statusCode = 301;
      res.setHeader('location', '/multi');
      res.end();
    },
    '/moved': (res) => {
      res.statusCode = 307;
      res.setHeader('location', '/multi');
      res.end();
    },
    '/cut': (res) => {
      res.setHeader('content-length', '100');
      res.write('{"partial":');
      setTimeout(() => res.socket?.destroy(), 20);
    },
    '/never': () => undefined,
    '/gz': (res) => {
      res.setHeader('content-type', 'application/json');
      res.setHeader('content-encoding', 'gzip');
      res.end(gzipSync('{"packed":"gzip"}'));
    },
    '/br': (res) => {
      res.setHeader('content-type', 'application/json');
      res.setHeader('content-encoding', 'br');
      res.end(brotliCompressSync('{"packed":"br"}'));
    },
    '/raw-deflate': (res) => {
      res.setHeader('content-type', 'application/json');
      res.setHeader('content-encoding', 'deflate');
      res.end(deflateRawSync('{"packed":"deflate"}'));
    },
    '/not-gzip': (res) => {
      res.setHeader('content-encoding', 'gzip');
      res.end('plain text, not gzip');
    },
    '/sse-gz': (res) => {
      res.setHeader('content-type', 'text/event-stream');
      res.setHeader('content-encoding', 'gzip');
      const gzip = createGzip();
      gzip.pipe(res);
      gzip.write('data: one\n\n');
      gzip.flush(() => setTimeout(() => gzip.end('data: two\n\n'), 20));
    },
    '/bom': (res) => {
      res.setHeader('content-type', 'application/json; charset=utf-8');
      res.end('\uFEFF{"bom":true}');
    },
  };

  beforeAll(async () => {
    sim = await startSimulator({ api_key: 'sk-test', models: { limited: { rpm: 1 } } });
    raw = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, headers: req.headers, body });
        const route = Object.entries(routes).find(([prefix]) => req.url?.startsWith(prefix))?.[1];
        (route ?? ((r: ServerResponse) => r.writeHead(404).end()))(res);
      });
    });
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    rawUrl = `http://127.0.0.1:${(raw.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    raw.closeAllConnections();
    await new Promise((resolve) => raw.close(resolve));
    await sim.close();
  });

  const sdk = (fetch: FetchFunction, options: { apiKey?: string; timeout?: number } = {}) =>
    new OpenAI({ baseURL: sim.url, apiKey: options.apiKey ?? 'sk-test', maxRetries: 0, timeout: options.timeout ?? 10_000, fetch });
  const question = [{ role: 'user' as const, content: 'Name three rivers.' }];

  it('gives the SDK the same answer, usage and headers as the global fetch', async () => {
    const ours = await sdk(createHttpFetch()).chat.completions.create({ model: 'm', messages: question }).withResponse();
    const global = await sdk(globalThis.fetch).chat.completions.create({ model: 'm', messages: question }).withResponse();
    expect(ours.data.choices).toEqual(global.data.choices);
    expect(ours.data.usage).toEqual(global.data.usage);
    expect(ours.response.status).toBe(200);
    expect(ours.request_id).toMatch(/^req_/);
    expect(ours.response.headers.get('content-type')).toBe(global.response.headers.get('content-type'));
  });

  it('streams server-sent events as they come', async () => {
    const stream = await sdk(createHttpFetch()).chat.completions.create({ model: 'm', messages: question, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    const whole = await sdk(createHttpFetch()).chat.completions.create({ model: 'm', messages: question });
    expect(text).toBe(whole.choices[0]?.message.content);
  });

  it('lets the SDK type 401 and 429 answers, with their headers', async () => {
    await expect(sdk(createHttpFetch(), { apiKey: 'wrong' }).chat.completions.create({ model: 'm', messages: question })).rejects.toBeInstanceOf(AuthenticationError);
    const client = sdk(createHttpFetch());
    await client.chat.completions.create({ model: 'limited', messages: question });
    const limited = await client.chat.completions.create({ model: 'limited', messages: question }).catch((error: unknown) => error);
    expect(limited).toBeInstanceOf(RateLimitError);
    expect(Number((limited as RateLimitError).headers?.get('retry-after-ms'))).toBeGreaterThan(0);
  });

  it('sends method, headers and body; keeps repeated response headers; gives 204 no body', async () => {
    const fetch = createHttpFetch();
    seen.length = 0;
    const response = await fetch(`${rawUrl}/multi`, { method: 'POST', headers: new Headers({ 'X-Custom': 'yes', 'content-type': 'application/json' }), body: '{"é":1}' });
    expect(seen[0]).toMatchObject({ method: 'POST', url: '/multi', body: '{"é":1}' });
    expect(seen[0]?.headers).toMatchObject({ 'x-custom': 'yes', 'content-length': String(Buffer.byteLength('{"é":1}')), host: new URL(rawUrl).host });
    expect(await response.json()).toEqual({ ok: true });
    expect(response.headers.get('x-twice')).toBe('one, two');
    expect(response.headers.getSetCookie()).toEqual(['a=1', 'b=2']);
    const empty = await fetch(`${rawUrl}/empty`, { headers: [['accept', 'text/plain']] });
    expect(empty.status).toBe(204);
    expect(empty.body).toBeNull();
  });

  it('answers with a Response that reads like fetch: once, as text, JSON, bytes, a stream or a clone', async () => {
    const fetch = createHttpFetch();
    const response = await fetch(`${rawUrl}/multi`);
    expect(response).toBeInstanceOf(Response);
    expect(response.ok).toBe(true);
    expect(response.statusText).toBe('OK');
    const copy = response.clone();
    expect(response.bodyUsed).toBe(false);
    expect(await response.json()).toEqual({ ok: true });
    expect(response.bodyUsed).toBe(true);
    await expect(response.text()).rejects.toThrow(TypeError);
    expect(new TextDecoder().decode(await copy.arrayBuffer())).toBe('{"ok":true}');
    expect(await new Response((await fetch(`${rawUrl}/multi`)).body).text()).toBe('{"ok":true}');
    expect(await (await fetch(`${rawUrl}/bom`)).text()).toBe('{"bom":true}');
    expect((await (await fetch(`${rawUrl}/bom`)).bytes()).length).toBe(Buffer.byteLength('\uFEFF{"bom":true}'));
  });

  it('asks for compressed answers and decodes gzip, brotli and deflate, streamed or not, as fetch does', async () => {
    const fetch = createHttpFetch();
    seen.length = 0;
    expect(await (await fetch(`${rawUrl}/gz`)).json()).toEqual({ packed: 'gzip' });
    expect(seen[0]?.headers['accept-encoding']).toBe('gzip, deflate, br');
    expect(await (await fetch(`${rawUrl}/br`)).json()).toEqual({ packed: 'br' });
    expect(await (await fetch(`${rawUrl}/raw-deflate`)).json()).toEqual({ packed: 'deflate' });
    expect(await (await fetch(`${rawUrl}/sse-gz`)).text()).toBe('data: one\n\ndata: two\n\n');
    await expect(fetch(`${rawUrl}/not-gzip`)).rejects.toThrow(/is not valid gzip data/);
  });

  it('hands redirects, Request objects and streamed bodies to the fallback fetch', async () => {
    const handed: string[] = [];
    const fallback: FetchFunction = async (input, init) => {
      handed.push(input instanceof Request ? `request ${input.url}` : `${String(input)} ${typeof init?.body}`);
      return new Response('{}', { status: 200 });
    };
    const fetch = createHttpFetch(fallback);
    await fetch(`${rawUrl}/moved`);
    await fetch(new Request(`${rawUrl}/multi`));
    await fetch(`${rawUrl}/multi`, { method: 'POST', body: new ReadableStream(), duplex: 'half' } as RequestInit);
    expect(handed).toEqual([`${rawUrl}/moved undefined`, `request ${rawUrl}/multi`, `${rawUrl}/multi object`]);
    // A POST that a 301 would turn into a GET without its body is not followed (QA: a model call became a GET).
    handed.length = 0;
    const moved = await fetch(`${rawUrl}/moved-301`, { method: 'POST', body: '{}' });
    expect(moved.status).toBe(301);
    expect(handed).toEqual([]);
  });

  it("through the environment's proxy, Node's fetch does not turn a POST into a GET on a 301, and follows a 307 with the body", async () => {
    const fetch = createProxyFetch();
    seen.length = 0;
    const moved = await fetch(`${rawUrl}/moved-301`, { method: 'POST', body: '{"model":"m"}' });
    expect(moved.status).toBe(301);
    expect(moved.headers.get('location')).toBe('/multi');
    expect(seen.map((request) => `${request.method} ${request.url}`)).toEqual(['POST /moved-301']);
    seen.length = 0;
    const kept = await fetch(`${rawUrl}/moved`, { method: 'POST', body: '{"model":"m"}' });
    expect(await kept.json()).toEqual({ ok: true });
    expect(seen.map((request) => `${request.method} ${request.url} ${request.body}`)).toEqual(['POST /moved {"model":"m"}', 'POST /moved {"model":"m"}', 'POST /multi {"model":"m"}']);
    seen.length = 0;
    expect((await fetch(`${rawUrl}/moved-301`)).status).toBe(200); // a GET follows, as fetch does
  });

  it('shares its keep-alive sockets across SDK clients, one batch after another (QA soak: an agent per batch kept 4,000 idle sockets open)', async () => {
    let connections = 0;
    const server = createServer((_req, res) => res.end('{}'));
    server.on('connection', () => connections++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/x`;
      for (let batch = 0; batch < 3; batch++) await (await createHttpFetch()(url, { method: 'POST', body: '{}' })).text();
      expect(connections).toBe(1);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("leaves requests to Node's fetch when Node is told to use the environment's proxy", () => {
    expect(nodeUsesEnvProxy({}, [])).toBe(false);
    expect(nodeUsesEnvProxy({ NODE_USE_ENV_PROXY: '1' }, [])).toBe(true);
    expect(nodeUsesEnvProxy({}, ['--use-env-proxy'])).toBe(true);
    expect(nodeUsesEnvProxy({ NODE_OPTIONS: '--max-old-space-size=512 --use-env-proxy' }, [])).toBe(true);
  });

  it('gives the SDK clients the adapter, or the global fetch when the environment proxy is on', async () => {
    const config = parseConfig({ providers: { p: { base_url: sim.url, api_key_env: 'SIM_KEY' } }, models: { m: { provider: 'p' } }, default_model: 'm' }, 'test');
    const global = globalThis.fetch;
    let globalCalls = 0;
    globalThis.fetch = (input, init) => {
      globalCalls += 1;
      return global(input, init);
    };
    try {
      const viaProxyEnv = createProviderClients(config, { NODE_USE_ENV_PROXY: '1', SIM_KEY: 'sk-test' }).get('p')!.client;
      await viaProxyEnv.chat.completions.create({ model: 'm', messages: question });
      expect(globalCalls).toBe(1);
      const direct = createProviderClients(config, { SIM_KEY: 'sk-test' }).get('p')!.client;
      await direct.chat.completions.create({ model: 'm', messages: question });
      expect(globalCalls).toBe(1);
    } finally {
      globalThis.fetch = global;
    }
  });

  it('speaks TLS to https providers itself, checking their certificates', async () => {
    // A throwaway self-signed certificate for 127.0.0.1 (test/fixtures/tls): the client must refuse it.
    const tls = createTlsServer({ cert: readFileSync(new URL('../fixtures/tls/self-signed-cert.pem', import.meta.url)), key: readFileSync(new URL('../fixtures/tls/self-signed-key.pem', import.meta.url)) }, (_req, res) => res.end('{}'));
    await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
    try {
      const baseUrl = `https://127.0.0.1:${(tls.address() as AddressInfo).port}/v1`;
      const refused = await new OpenAI({ baseURL: baseUrl, apiKey: 'x', maxRetries: 0, fetch: createHttpFetch() }).models.list().catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(APIConnectionError);
      expect(classifyModelError(refused, { model: 'm', provider: 'p', baseUrl, apiKeyEnv: undefined }).message).toMatch(/cannot reach provider "p" at https:.*self-signed certificate/);
    } finally {
      tls.closeAllConnections();
      await new Promise((resolve) => tls.close(resolve));
    }
  });

  it('turns a refused connection, a timeout and a cut answer into errors the SDK and the row runner understand', async () => {
    const ctx = { model: 'm', provider: 'p', baseUrl: 'http://127.0.0.1:9/v1', apiKeyEnv: undefined };
    const refused = await new OpenAI({ baseURL: 'http://127.0.0.1:9/v1', apiKey: 'x', maxRetries: 0, fetch: createHttpFetch() }).models.list().catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(APIConnectionError);
    expect(classifyModelError(refused, ctx)).toMatchObject({
      code: 'connection_error',
      retryable: true,
      message: 'cannot reach provider "p" at http://127.0.0.1:9/v1: connect ECONNREFUSED 127.0.0.1:9; nothing listens there: start the server (the simulator: switchyard sim --port 9) or fix providers.p.base_url',
    });
    // ".invalid" never resolves (RFC 2606).
    const unknownHost = await new OpenAI({ baseURL: 'http://no-such-host.invalid/v1', apiKey: 'x', maxRetries: 0, fetch: createHttpFetch() }).models.list().catch((error: unknown) => error);
    expect(classifyModelError(unknownHost, { ...ctx, baseUrl: 'http://no-such-host.invalid/v1' }).message).toMatch(/ENOTFOUND no-such-host\.invalid; the host name does not resolve: check providers\.p\.base_url$/);

    const slow = new OpenAI({ baseURL: `${rawUrl}/never`, apiKey: 'x', maxRetries: 0, timeout: 100, fetch: createHttpFetch() });
    const timedOut = await slow.models.list().catch((error: unknown) => error);
    expect(timedOut).toBeInstanceOf(APIConnectionTimeoutError);
    expect(classifyModelError(timedOut, ctx).code).toBe('timeout');

    await expect(createHttpFetch()(`${rawUrl}/cut`)).rejects.toThrow();
    // The provider was reached, its answer broke off: not "cannot reach", which sends one to check the URL.
    const cut = await new OpenAI({ baseURL: `${rawUrl}/cut`, apiKey: 'x', maxRetries: 0, fetch: createHttpFetch() }).models.list().catch((error: unknown) => error);
    expect(classifyModelError(cut, { ...ctx, baseUrl: `${rawUrl}/cut` })).toMatchObject({ code: 'connection_error', retryable: true, message: expect.stringMatching(/^lost the connection to provider "p" at \S+ before its answer was complete: /) });
  });
});
