import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis, ReplyError } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { loadConfigFile, parseConfig } from '../../src/config/load.ts';
import { describeFileTrouble, describeRedisTrouble, RedisStoppedRunError, UsageError } from '../../src/errors.ts';
import { callModel, whyNotSendable } from '../../src/models/call-model.ts';
import { createProviderClients } from '../../src/models/provider-clients.ts';
import type { ModelCallError } from '../../src/models/model-error.ts';
import { runSimulatorFromCli } from '../../src/sim/cli-options.ts';

describe('describeRedisTrouble', () => {
  it("tells a Redis refusal from a bug, with Redis' own first line and what to check", () => {
    const refusal = new ReplyError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.\nmore");
    expect(describeRedisTrouble(refusal)).toBe(
      "Redis refused a command: MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.\n" +
        'Check the Redis server (its log, free disk, maxmemory, that it is not a read-only replica), then run the same command again: it goes on from where it stopped.',
    );
    expect(describeRedisTrouble(new TypeError('x is undefined'))).toBeNull();
    expect(describeRedisTrouble('not an error')).toBeNull();
  });

  it('says Redis stayed away when a command ran out of retries, without ioredis\' words for it', async () => {
    // Nothing listens on port 1; one retry, so the command gives up at once.
    const redis = new Redis({ port: 1, maxRetriesPerRequest: 1, retryStrategy: () => 10, lazyConnect: false });
    redis.on('error', () => undefined);
    const error = await redis.get('k').catch((e: unknown) => e);
    redis.disconnect();
    expect(describeRedisTrouble(error)).toBe('Redis did not answer for too long.\nOnce it is back, run the same command again: it goes on from where it stopped.');
  });

  it("names a run's resume, not the same command (which would make another batch without --batch-id)", () => {
    const refusal = new ReplyError('READONLY You can\'t write against a read only replica.');
    expect(describeRedisTrouble(new RedisStoppedRunError('b1', refusal))).toBe(
      "Redis refused a command: READONLY You can't write against a read only replica.\n" +
        'Check the Redis server (its log, free disk, maxmemory, that it is not a read-only replica), then run `switchyard run --resume b1`: it goes on from where it stopped.',
    );
    expect(describeRedisTrouble(new RedisStoppedRunError('b1', new TypeError('x is undefined')))).toBeNull();
  });
});

describe('describeFileTrouble', () => {
  it('names the file and the reason for disk and permission errors, and leaves the rest alone', () => {
    const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', path: '/data/out/costs.jsonl' });
    expect(describeFileTrouble(full)).toBe('cannot use /data/out/costs.jsonl: the disk is full [ENOSPC]. Fix that, then run the same command again: it goes on from where it stopped.');
    expect(describeFileTrouble(Object.assign(new Error('x'), { code: 'ENOSPC', syscall: 'write' }))).toBe(
      'a file write failed (in the outputs folder, most likely): the disk is full [ENOSPC]. Fix that, then run the same command again: it goes on from where it stopped.',
    );
    expect(describeFileTrouble(Object.assign(new Error('x'), { code: 'EBADF', path: '/x' }))).toBeNull();
  });
});

describe('a config file that cannot be read', () => {
  it('says it is missing or a folder, and what to give instead', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'switchyard-cfg-'));
    try {
      const missing = join(dir, 'nope.yaml');
      await expect(loadConfigFile(missing)).rejects.toThrow(new UsageError(`Config file not found: ${missing} (give the path of a switchyard.yaml or .json; without --config the built-in models run on the simulator)`));
      await expect(loadConfigFile(dir)).rejects.toThrow(new UsageError(`Config path is a directory, not a file: ${dir}`));
      const empty = join(dir, 'empty.yaml');
      await writeFile(empty, '# to do\n');
      await expect(loadConfigFile(empty)).rejects.toThrow(new UsageError(`Config file ${empty} is empty (or only comments): examples/switchyard.yaml is one to start from`));
      const two = join(dir, 'two.yaml');
      await writeFile(two, 'default_model: a\n---\ndefault_model: b\n');
      await expect(loadConfigFile(two)).rejects.toThrow(/^Config file .*two\.yaml is not valid YAML: it holds several YAML documents \(a --- line between them\): keep one/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('switchyard sim on a port it cannot have', () => {
  it('names the taken port and the flag to choose another, instead of a stack trace', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      await expect(runSimulatorFromCli({ port }, { log: () => undefined })).rejects.toThrow(
        new UsageError(`port ${port} on 127.0.0.1 is already in use (another simulator, or another server); choose a free one with --port <n>`),
      );
    } finally {
      taken.close();
    }
  });
});

describe('a provider key missing from a worker', () => {
  it('names the provider, the variable and the worker, since workers on several machines share a queue', () => {
    const config = parseConfig(
      { providers: { paid: { base_url: 'http://127.0.0.1:9/v1', api_key_env: 'SWITCHYARD_TEST_KEY_NOBODY_SETS' } }, models: { m: { provider: 'paid' } }, default_model: 'm' },
      'test',
    );
    const provider = createProviderClients(config).get('paid');
    if (!provider) throw new Error('no provider');
    const error = whyNotSendable(provider, 'm');
    expect(error?.code).toBe('missing_api_key');
    expect(error?.message).toBe(
      `provider "paid" needs an API key in $SWITCHYARD_TEST_KEY_NOBODY_SETS, which is not set (or is empty) for the worker on ${hostname()} (pid ${process.pid}), and no worker connected to this Redis had it: set $SWITCHYARD_TEST_KEY_NOBODY_SETS for that worker, or start a worker with it set (a worker without it leaves such rows to one that has it for as long as one is connected, and a --detach batch's rows wait about 2 minutes for one to start)`,
    );
  });
});

/** What callModel throws when a provider answers `status` with `body`. */
async function failureFrom(status: number, body: string, type = 'application/json') {
  const server = createHttpServer((_request, response) => response.writeHead(status, { 'content-type': type }).end(body));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const config = parseConfig({ providers: { p: { base_url: `http://127.0.0.1:${port}/v1` } }, models: { m: { provider: 'p' } }, default_model: 'm' }, 'test');
    return (await callModel(createProviderClients(config).get('p')!, { model: 'm', upstream: 'm', messages: [{ role: 'user', content: 'hi' }], temperature: 0, maxTokens: 10 }).catch((e: unknown) => e)) as ModelCallError;
  } finally {
    server.close();
  }
}

describe('a 200 answer that is no chat completion', () => {
  it("says what came back and where to look (a proxy's login page, say), not a TypeError", async () => {
    const server = createHttpServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/html' });
      response.end('<html><body>Please log in to the Wi-Fi</body></html>');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const config = parseConfig({ providers: { portal: { base_url: `http://127.0.0.1:${port}/v1` } }, models: { m: { provider: 'portal' } }, default_model: 'm' }, 'test');
      const provider = createProviderClients(config).get('portal')!;
      const error = await callModel(provider, { model: 'm', upstream: 'm', messages: [{ role: 'user', content: 'hi' }], temperature: 0, maxTokens: 10 }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'bad_response', status: 200 });
      expect((error as Error).message).toBe(
        `model "m" at http://127.0.0.1:${port}/v1 answered 200 with something that is not a chat completion (text/html: Please log in to the Wi-Fi (an HTML page: a proxy or gateway answered, not the model's API)): check providers.portal.base_url, or what sits between (a proxy, a login page)`,
      );
    } finally {
      server.close();
    }
  });

  it('says a JSON body that does not parse is a bad response (cut off, or no OpenAI-compatible endpoint), not an unexpected error', async () => {
    const error = await failureFrom(200, '{"choices": [garbage');
    expect(error).toMatchObject({ code: 'bad_response', retryable: false });
    expect(error.message).toMatch(/^model "m" at http:\/\/127\.0\.0\.1:\d+\/v1 answered with JSON that does not parse \(.+\): an answer cut off on the way, or not an OpenAI-compatible endpoint; check providers\.p\.base_url/);
  });

  it("takes a gateway's error object in a 200 body as the provider's failure: retried, then the next model, as a 5xx", async () => {
    const error = await failureFrom(200, JSON.stringify({ error: { message: 'Upstream provider error: model overloaded', code: 502 } }));
    expect(error).toMatchObject({ code: 'server_error', status: 200, retryable: true });
    expect(error.message).toMatch(/^model "m" at http:\/\/127\.0\.0\.1:\d+\/v1 answered 200 with an error in its body: Upstream provider error: model overloaded \(code 502\)$/);
  });
});

describe('provider failures worded for a person', () => {
  it("never quote a password in the provider's base_url (they go to results, costs.jsonl and the report)", async () => {
    const server = createHttpServer((_request, response) => response.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'The model `m` does not exist', code: 'model_not_found' } })));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const config = parseConfig({ providers: { p: { base_url: `http://proxyuser:s3cret@127.0.0.1:${port}/v1` } }, models: { m: { provider: 'p' } }, default_model: 'm' }, 'test');
      const error = (await callModel(createProviderClients(config).get('p')!, { model: 'm', upstream: 'm', messages: [{ role: 'user', content: 'hi' }], temperature: 0, maxTokens: 10 }).catch((e: unknown) => e)) as ModelCallError;
      expect(error.code).toBe('model_not_found');
      expect(error.message).toContain(`at http://proxyuser:***@127.0.0.1:${port}/v1 (404`);
      expect(error.message).not.toContain('s3cret');
    } finally {
      server.close();
    }
  });

  it("gives a proxy's HTML error page as its title, not kilobytes of markup", async () => {
    const page = `<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>${'<!-- padding -->'.repeat(400)}</body></html>`;
    const error = await failureFrom(502, page, 'text/html');
    expect(error).toMatchObject({ code: 'server_error', retryable: true });
    expect(error.message).toMatch(/failed with 502: 502 Bad Gateway \(an HTML page: a proxy or gateway answered, not the model's API\)$/);
  });

  it('tells an account out of quota (429 insufficient_quota, or 402) from a rate limit: no wait ends it', async () => {
    const quota = await failureFrom(429, JSON.stringify({ error: { message: 'You exceeded your current quota, please check your plan and billing details.', type: 'insufficient_quota', code: 'insufficient_quota' } }));
    expect(quota).toMatchObject({ code: 'quota_exceeded', retryable: false, status: 429 });
    expect(quota.message).toContain("says the account is out of quota (429): You exceeded your current quota, please check your plan and billing details; add credit or raise the plan's limit at the provider");
    expect(await failureFrom(402, JSON.stringify({ error: { message: 'Insufficient credits' } }))).toMatchObject({ code: 'quota_exceeded', retryable: false, status: 402 });
    expect(await failureFrom(429, JSON.stringify({ error: { message: 'Rate limit reached' } }))).toMatchObject({ code: 'rate_limited', retryable: true });
    expect(await failureFrom(408, '')).toMatchObject({ code: 'timeout', retryable: true });
  });
});
