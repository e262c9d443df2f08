import { APIConnectionError, APIConnectionTimeoutError, APIError } from 'openai';
import { describe, expect, it } from 'vitest';
import { exhaustedLimitResetMs } from '../../src/models/call-model.ts';
import { asSentence, classifyModelError, retryAfterFromHeaders } from '../../src/models/model-error.ts';
import { retryDelayMs } from '../../src/models/retry-policy.ts';

const ctx = { model: 'm', provider: 'p', baseUrl: 'http://x/v1', apiKeyEnv: 'P_KEY' };
const apiError = (status: number, headers: Record<string, string> = {}, body: Record<string, unknown> = { message: 'nope' }) => APIError.generate(status, { error: body }, undefined, new Headers(headers));
/** A provider's 404 for a model it does not serve (OpenAI's shape). */
const noSuchModel = (model: string) => apiError(404, {}, { message: `The model \`${model}\` does not exist or you do not have access to it.`, code: 'model_not_found' });

describe('classifyModelError', () => {
  it('types each failure with retryable, status and retry-after', () => {
    expect(classifyModelError(apiError(429, { 'retry-after-ms': '1500' }), ctx)).toMatchObject({ code: 'rate_limited', retryable: true, status: 429, retryAfterMs: 1500 });
    expect(classifyModelError(apiError(503), ctx)).toMatchObject({ code: 'server_error', retryable: true, status: 503 });
    expect(classifyModelError(apiError(400), ctx)).toMatchObject({ code: 'bad_request', retryable: false });
    expect(classifyModelError(noSuchModel('m'), ctx)).toMatchObject({ code: 'model_not_found', retryable: false });
    expect(classifyModelError(new APIConnectionTimeoutError(), ctx)).toMatchObject({ code: 'timeout', retryable: true, status: null });
    expect(classifyModelError(new APIConnectionTimeoutError(), { ...ctx, timeoutMs: 1000 }).message).toMatch(/did not answer within 1000 ms \(providers\.\S+\.timeout_ms; raise it for long answers, or stream them \(models\.\S+\.stream: true\): it then bounds the silences between chunks, not the whole answer\)$/);
    expect(classifyModelError(new APIConnectionError({ message: 'refused' }), ctx)).toMatchObject({ code: 'connection_error', retryable: true });
  });

  it('names on a 404 the model name that was sent, and where to look it up', () => {
    const renamed = classifyModelError(noSuchModel('deepseek-v9-typo'), { ...ctx, model: 'flash', upstream: 'deepseek-v9-typo' });
    expect(renamed.message).toBe('model "deepseek-v9-typo" (models.flash.upstream) does not exist at http://x/v1 (404: The model `deepseek-v9-typo` does not exist or you do not have access to it): check the name against the provider\'s model list (GET http://x/v1/models)');
    const sameName = classifyModelError(noSuchModel('gpt-9'), { ...ctx, model: 'gpt-9', upstream: 'gpt-9' });
    expect(sameName.message).toBe('model "gpt-9" does not exist at http://x/v1 (404: The model `gpt-9` does not exist or you do not have access to it): check the name against the provider\'s model list (GET http://x/v1/models), or set models.gpt-9.upstream to the name it uses');
  });

  it('waits out the x-ratelimit-reset headers of a 429 without retry-after (QA: retried after 0.4 s when asked for 5 s)', () => {
    const limited = new APIError(429, { message: 'Rate limit reached. Please try again in 5s.' }, 'Rate limit reached', new Headers({ 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '5s' }));
    expect(classifyModelError(limited, ctx)).toMatchObject({ code: 'rate_limited', retryAfterMs: 5000 });
  });

  it("points a reasoning model's refusal of max_tokens at models.<name>.reasoning", () => {
    const refused = new APIError(400, { message: "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead." }, "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.", new Headers());
    expect(classifyModelError(refused, { ...ctx, model: 'o3-mini' }).message).toMatch(/rejected the request \(400\): .*Use 'max_completion_tokens' instead; if it is a reasoning model, set models\.o3-mini\.reasoning: true$/);
  });

  it('names a redirect and where it leads', () => {
    const moved = new APIError(301, undefined, 'Moved Permanently', new Headers({ location: 'https://api.example.com/v1/chat/completions' }));
    expect(classifyModelError(moved, ctx)).toMatchObject({ code: 'endpoint_not_found', retryable: false, message: expect.stringMatching(/redirects \(301\) to https:\/\/api\.example\.com\/v1\/chat\/completions, and a call is not sent on through a redirect: set providers\.p\.base_url to where it leads/) });
  });

  it('does not retry a scheme or certificate mistake, and says which it is', () => {
    const plain = new APIConnectionError({ cause: Object.assign(new Error('write EPROTO 0000:error:0A00010B:SSL routines:ssl3_get_record:wrong version number'), { code: 'EPROTO' }) });
    expect(classifyModelError(plain, ctx)).toMatchObject({ code: 'connection_error', retryable: false, message: expect.stringMatching(/the server speaks plain HTTP, not HTTPS: use http:\/\/ in providers\.\S+\.base_url$/) });
    const selfSigned = new APIConnectionError({ cause: Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }) });
    expect(classifyModelError(selfSigned, ctx)).toMatchObject({ retryable: false, message: expect.stringContaining('its TLS certificate is not trusted (DEPTH_ZERO_SELF_SIGNED_CERT)') });
  });

  it('tells a 404 about the URL (a base_url without /v1) from one about the model', () => {
    // vLLM and Ollama name the model in their message, with no OpenAI code.
    expect(classifyModelError(apiError(404, {}, { message: 'The model `m` does not exist.' }), ctx).code).toBe('model_not_found');
    expect(classifyModelError(apiError(404, {}, { message: 'model "llama9" not found, try pulling it first' }), { ...ctx, upstream: 'llama9' }).code).toBe('model_not_found');
    // OpenAI's answer to a wrong path, and a plain server's.
    const wrongPath = classifyModelError(apiError(404, {}, { message: 'Invalid URL (POST /chat/completions)', code: null }), { ...ctx, baseUrl: 'https://api.openai.com/' });
    expect(wrongPath).toMatchObject({ code: 'endpoint_not_found', status: 404, retryable: false });
    expect(wrongPath.message).toBe(
      'POST https://api.openai.com/chat/completions answered 404 (Invalid URL (POST /chat/completions)): the provider has no chat completions there; check providers.p.base_url (OpenAI-compatible APIs usually end in /v1)',
    );
    expect(classifyModelError(APIError.generate(404, undefined, 'Not Found', new Headers()), ctx).code).toBe('endpoint_not_found');
  });

  it("says the status once, before the provider's own words", () => {
    const serverError = APIError.generate(500, { error: { message: 'The server had an error while processing your request. Sorry about that!' } }, undefined, new Headers());
    expect(classifyModelError(serverError, ctx).message).toBe('model "m" at http://x/v1 failed with 500: The server had an error while processing your request. Sorry about that!');
    expect(classifyModelError(APIError.generate(502, undefined, undefined, new Headers()), ctx).message).toBe('model "m" at http://x/v1 failed with 502: no message');
    expect(classifyModelError(apiError(400, {}, { message: 'max_tokens is too large' }), ctx).message).toBe('model "m" at http://x/v1 rejected the request (400): max_tokens is too large');
  });

  it("ends a provider's sentence once, for the chain's message that goes on after it", () => {
    expect(asSentence('Sorry about that!')).toBe('Sorry about that!');
    expect(asSentence('connect ECONNREFUSED 127.0.0.1:9')).toBe('connect ECONNREFUSED 127.0.0.1:9.');
    expect(asSentence('try again in 2s. ')).toBe('try again in 2s.');
  });

  it('names the key variable on a 401', () => {
    const error = classifyModelError(apiError(401), ctx);
    expect(error).toMatchObject({ code: 'unauthorized', retryable: false });
    expect(error.message).toContain('$P_KEY');
  });
});

describe('retry-after and backoff', () => {
  it('reads retry-after-ms, retry-after seconds and dates', () => {
    expect(retryAfterFromHeaders(new Headers({ 'retry-after-ms': '250.5' }))).toBe(251);
    expect(retryAfterFromHeaders(new Headers({ 'retry-after': '2' }))).toBe(2000);
    expect(retryAfterFromHeaders(new Headers({ 'retry-after': new Date(10_000).toUTCString() }), 4_000)).toBe(6000);
    expect(retryAfterFromHeaders(new Headers())).toBeNull();
  });

  it('backs off exponentially with full jitter, capped, and never sooner than retry-after', () => {
    const retry = { max_attempts: 5, base_delay_ms: 100, max_delay_ms: 1000 };
    expect(retryDelayMs(1, retry, null, () => 1)).toBe(100);
    expect(retryDelayMs(3, retry, null, () => 1)).toBe(400);
    expect(retryDelayMs(10, retry, null, () => 1)).toBe(1000);
    expect(retryDelayMs(3, retry, null, () => 0)).toBe(0);
    expect(retryDelayMs(1, retry, 5000, () => 0)).toBe(5000);
    expect(retryDelayMs(1, retry, 5000, () => 1)).toBeGreaterThan(5000);
  });

  it("sees a used-up limit in a successful answer's x-ratelimit headers", () => {
    expect(exhaustedLimitResetMs(new Headers({ 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '1.5s' }))).toBe(1500);
    expect(exhaustedLimitResetMs(new Headers({ 'x-ratelimit-remaining-requests': '3', 'x-ratelimit-reset-requests': '1s' }))).toBeNull();
  });
});
