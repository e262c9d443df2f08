import { APIConnectionError, APIConnectionTimeoutError, APIError } from 'openai';
import type { Usage } from '../output/records.ts';
import { rateLimitResetMs } from '../limits/pacing.ts';

export type ModelErrorCode =
  | 'rate_limited'
  | 'server_error'
  | 'timeout'
  | 'connection_error'
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'model_not_found'
  | 'endpoint_not_found'
  | 'missing_api_key'
  | 'empty_response'
  | 'bad_response'
  | 'quota_exceeded'
  | 'budget_exceeded'
  | 'no_model_available'
  | 'unexpected_error';

/**
 * A failed model call, typed so the caller's policy can decide: retry (`retryable`), wait
 * (`retryAfterMs`), or give up. The SDK's own retries are off; this is the one owner.
 */
export class ModelCallError extends Error {
  override name = 'ModelCallError';
  readonly code: ModelErrorCode;
  readonly status: number | null;
  readonly retryable: boolean;
  readonly retryAfterMs: number | null;
  readonly model: string;
  /** False when the request never went out (no key, or a key just rejected): no call to record. */
  readonly sent: boolean;
  /**
   * What the failed call is charged (set by callModel: see chargedUsage there): counted here, with
   * the time the count took, or `reported` by the provider in a body or stream that failed all the
   * same; null when it costs nothing.
   */
  estimatedUsage: { usage: Usage; countingMs: number; reported?: boolean } | null = null;
  /** A streamed answer that failed part-way: the text it had sent, and the usage chunk if one came. */
  streamedPart: { output: string; usage: unknown } | null = null;
  /** The provider's id for the request it answered with this error (its `x-request-id`), for its support; null when none came. */
  requestId: string | null = null;

  constructor(init: { code: ModelErrorCode; message: string; model: string; status?: number | null; retryable?: boolean; retryAfterMs?: number | null; sent?: boolean }) {
    super(init.message);
    this.code = init.code;
    this.model = init.model;
    this.status = init.status ?? null;
    this.retryable = init.retryable ?? false;
    this.retryAfterMs = init.retryAfterMs ?? null;
    this.sent = init.sent ?? true;
  }
}

/** Reads `retry-after-ms`, else `retry-after` (seconds or an HTTP date), as milliseconds. */
export function retryAfterFromHeaders(headers: Headers | undefined, now = Date.now()): number | null {
  if (!headers) return null;
  const ms = Number.parseFloat(headers.get('retry-after-ms') ?? '');
  if (Number.isFinite(ms) && ms >= 0) return Math.ceil(ms);
  const value = headers.get('retry-after');
  if (!value) return null;
  const seconds = Number.parseFloat(value);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.ceil(seconds * 1000);
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, date - now) : null;
}

interface ErrorContext {
  model: string;
  /** The name sent to the endpoint (models.<model>.upstream), when it differs from `model`. */
  upstream?: string;
  provider: string;
  baseUrl: string;
  apiKeyEnv: string | undefined;
  /** The provider's timeout_ms, for the timeout message. */
  timeoutMs?: number | undefined;
  /** A streamed request: timeout_ms bounds its silences, not the answer's length. */
  stream?: boolean | undefined;
}

/**
 * Whether a 404 is about the model (OpenAI's code `model_not_found`; vLLM, Ollama and others name the
 * model in the message) rather than the URL (OpenAI's "Invalid URL", a server's plain "Not Found").
 */
function isModelNotFound(error: APIError, sentModel: string): boolean {
  if (error.code === 'model_not_found') return true;
  const asToken = new RegExp(`(^|[^\\w.-])${sentModel.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}([^\\w.-]|$)`);
  return /\bmodels?\b/i.test(error.message) || asToken.test(error.message);
}

/** Turns whatever the SDK threw into a ModelCallError with a message that says what to do. */
export function classifyModelError(error: unknown, ctx: ErrorContext): ModelCallError {
  if (error instanceof ModelCallError) return error;
  const where = `model "${ctx.model}" at ${ctx.baseUrl}`;
  if (error instanceof APIConnectionTimeoutError) {
    const limit = ctx.timeoutMs === undefined ? "the provider's timeout_ms" : `${ctx.timeoutMs} ms (providers.${ctx.provider}.timeout_ms; ${ctx.stream ? 'for a streamed answer the longest wait for its first chunk' : `raise it for long answers, or stream them (models.${ctx.model}.stream: true): it then bounds the silences between chunks, not the whole answer`})`;
    return new ModelCallError({ code: 'timeout', model: ctx.model, retryable: true, message: `${where} did not ${ctx.stream ? 'start its streamed answer' : 'answer'} within ${limit}` });
  }
  if (error instanceof APIConnectionError) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
    // A connection that broke mid-answer reached the provider: "cannot reach" would send the user to check the URL.
    const broke = !/: connect /.test(cause) && /aborted|socket hang up|ECONNRESET|terminated|other side closed/i.test(cause);
    const what = broke ? `lost the connection to provider "${ctx.provider}" at ${ctx.baseUrl} before its answer was complete` : `cannot reach provider "${ctx.provider}" at ${ctx.baseUrl}`;
    const tls = tlsProblem(error.cause, ctx);
    // A scheme or certificate mistake does not go away on a retry.
    if (tls) return new ModelCallError({ code: 'connection_error', model: ctx.model, message: `cannot reach provider "${ctx.provider}" at ${ctx.baseUrl}${cause}; ${tls}` });
    const schemeHint = broke && ctx.baseUrl.startsWith('http://') ? ` (when every call ends so at once, the server may speak HTTPS: check the scheme of providers.${ctx.provider}.base_url)` : '';
    return new ModelCallError({ code: 'connection_error', model: ctx.model, retryable: true, message: `${what}${cause}${connectionHint(error.cause, ctx)}${schemeHint}` });
  }
  if (error instanceof APIError && typeof error.status === 'number') {
    const status = error.status;
    const detail = providerDetail(error, status);
    const base = { model: ctx.model, status };
    if (status === 429 && /insufficient_quota|exceeded your current quota|quota exceeded|billing/i.test(detail)) {
      // No wait ends it: the account is out of credit (OpenAI answers it with a 429).
      return new ModelCallError({ ...base, code: 'quota_exceeded', message: `${where} says the account is out of quota (429): ${withoutFinalStop(detail)}; add credit or raise the plan's limit at the provider` });
    }
    if (status === 402) {
      return new ModelCallError({ ...base, code: 'quota_exceeded', message: `${where} asks for payment (402): ${withoutFinalStop(detail)}; add credit at the provider` });
    }
    if (status === 429) {
      // No retry-after: the x-ratelimit-reset-* headers OpenAI sends say when the limit resets.
      const retryAfterMs = retryAfterFromHeaders(error.headers) ?? rateLimitResetMs(error.headers, false);
      return new ModelCallError({ ...base, code: 'rate_limited', retryable: true, retryAfterMs, message: `${where} is rate limited (429): ${withoutFinalStop(detail)}; models.${ctx.model}.rpm and tpm, set to the provider's limits, pace every worker's calls below them` });
    }
    if (status === 401) {
      const keyHint = ctx.apiKeyEnv ? `check the key in $${ctx.apiKeyEnv}` : `set providers.${ctx.provider}.api_key_env to the variable holding its key`;
      return new ModelCallError({ ...base, code: 'unauthorized', message: `${where} rejected the API key (401: ${withoutFinalStop(withoutKey(detail, ctx.apiKeyEnv))}): ${keyHint}` });
    }
    if (status === 403) {
      const key = ctx.apiKeyEnv ? `the key in $${ctx.apiKeyEnv}` : 'the key';
      return new ModelCallError({ ...base, code: 'forbidden', message: `${where} refused access (403): ${withoutFinalStop(detail)}; check that ${key} may use this model (providers gate some models by account, plan or region)` });
    }
    if (status === 404 && !isModelNotFound(error, ctx.upstream ?? ctx.model)) {
      // The URL, not the model: a base_url without its version path (…/v1) answers every call so.
      const url = `${ctx.baseUrl.replace(/\/$/, '')}/chat/completions`;
      return new ModelCallError({ ...base, code: 'endpoint_not_found', message: `POST ${url} answered 404 (${detail}): the provider has no chat completions there; check providers.${ctx.provider}.base_url (OpenAI-compatible APIs usually end in /v1)` });
    }
    if (status === 404) {
      const sent = ctx.upstream ?? ctx.model;
      const named = sent === ctx.model ? `model "${sent}"` : `model "${sent}" (models.${ctx.model}.upstream)`;
      return new ModelCallError({ ...base, code: 'model_not_found', message: `${named} does not exist at ${ctx.baseUrl} (404: ${withoutFinalStop(detail)}): check the name against the provider's model list (GET ${ctx.baseUrl.replace(/\/$/, '')}/models)${sent === ctx.model ? `, or set models.${ctx.model}.upstream to the name it uses` : ''}` });
    }
    if (status >= 300 && status < 400) {
      const location = error.headers?.get('location');
      return new ModelCallError({ ...base, code: 'endpoint_not_found', message: `${where} redirects (${status})${location ? ` to ${location}` : ''}, and a call is not sent on through a redirect: set providers.${ctx.provider}.base_url to where it leads (http:// to https://, say)` });
    }
    if (status === 408) {
      return new ModelCallError({ ...base, code: 'timeout', retryable: true, retryAfterMs: retryAfterFromHeaders(error.headers), message: `${where} timed out on its side (408): ${detail}` });
    }
    if (status === 409 || status >= 500) {
      return new ModelCallError({ ...base, code: 'server_error', retryable: true, retryAfterMs: retryAfterFromHeaders(error.headers), message: `${where} failed with ${status}: ${detail}` });
    }
    // OpenAI's reasoning models refuse max_tokens and temperature: the config has a switch for them.
    const reasoning = /max_completion_tokens|'temperature' does not support|unsupported value: 'temperature'/i.test(detail) ? `; if it is a reasoning model, set models.${ctx.model}.reasoning: true` : '';
    return new ModelCallError({ ...base, code: 'bad_request', message: `${where} rejected the request (${status}): ${withoutFinalStop(detail)}${reasoning}` });
  }
  if (error instanceof SyntaxError) {
    // The SDK could not parse a 2xx body sent as JSON: cut off on the way, or an endpoint that is not OpenAI-compatible. Like any answer that is no completion, it goes to the next model.
    return new ModelCallError({ code: 'bad_response', model: ctx.model, message: `${where} answered with JSON that does not parse (${error.message}): an answer cut off on the way, or not an OpenAI-compatible endpoint; check providers.${ctx.provider}.base_url, or what sits between (a proxy)` });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new ModelCallError({ code: 'unexpected_error', model: ctx.model, message: `${where}: ${message}` });
}

/**
 * What the provider said, without the status the SDK puts in front of it ("500 The server had an
 * error"), since each message names the status itself.
 */
function providerDetail(error: APIError, status: number): string {
  const said = error.message.startsWith(`${status} `) ? error.message.slice(String(status).length + 1) : error.message;
  if (said === 'status code (no body)') return 'no message';
  return looksLikeHtml(said) ? htmlPageText(said) : said;
}

const looksLikeHtml = (text: string): boolean => /^\s*<(!doctype|html|head|body|center|h1|title)\b/i.test(text);

/** A proxy's HTML error page as its title or first text, not kilobytes of markup in every row's error. */
export function htmlPageText(html: string): string {
  const title = /<title[^>]*>([^<]*)<\/title>/i.exec(html)?.[1]?.trim();
  const text = title || html.replace(/<(script|style)[^>]*>[\s\S]*?<\/\1>/gi, ' ').replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();
  return `${text.length > 120 ? `${text.slice(0, 119)}…` : text || 'no text'} (an HTML page: a proxy or gateway answered, not the model's API)`;
}

/** A provider's sentence without its full stop, for a message that goes on after it. */
function withoutFinalStop(text: string): string {
  return text.replace(/\.+\s*$/, '');
}

/** A provider's sentence ended once, whether it ended itself ("Sorry about that!") or not. */
export function asSentence(text: string): string {
  const trimmed = text.trimEnd();
  return /[.!?]$/.test(trimmed) ? trimmed : `${trimmed}.`;
}

/** The provider's words without the key itself, should it quote it whole (OpenAI masks it; not every provider may). */
function withoutKey(text: string, apiKeyEnv: string | undefined): string {
  const key = apiKeyEnv ? process.env[apiKeyEnv]?.trim() : undefined;
  return key && key.length >= 8 ? text.split(key).join('<the key>') : text;
}

/** A TLS mistake in base_url or the server's certificate, with its fix; null for other failures. */
function tlsProblem(cause: unknown, ctx: { provider: string; baseUrl: string }): string | null {
  const code = typeof cause === 'object' && cause !== null && 'code' in cause ? String(cause.code) : '';
  const message = cause instanceof Error ? cause.message : '';
  const fix = `providers.${ctx.provider}.base_url`;
  if (/wrong version number|packet length too long|http request/i.test(message) || code === 'EPROTO') return `the server speaks plain HTTP, not HTTPS: use http:// in ${fix}`;
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME/.test(code)) return `its TLS certificate is not trusted (${code}): use the host name the certificate names, or give Node the CA that signed it (NODE_EXTRA_CA_CERTS=<ca.pem>)`;
  return null;
}

/** What to do about the two connection failures that are nearly always the setup's, not the network's. */
function connectionHint(cause: unknown, ctx: { provider: string; baseUrl: string }): string {
  const code = typeof cause === 'object' && cause !== null && 'code' in cause ? String(cause.code) : '';
  const message = cause instanceof Error ? cause.message : '';
  const fix = `providers.${ctx.provider}.base_url`;
  if (code === 'ENOTFOUND' || message.includes('ENOTFOUND')) return `; the host name does not resolve: check ${fix}`;
  if (code !== 'ECONNREFUSED' && !message.includes('ECONNREFUSED')) return '';
  // URL.parse would do, but only from Node 22.1.
  const url = URL.canParse(ctx.baseUrl) ? new URL(ctx.baseUrl) : null;
  const local = url !== null && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  const port = url?.port || (url?.protocol === 'https:' ? '443' : '80');
  return `; nothing listens there: start the server${local ? ` (the simulator: switchyard sim --port ${port})` : ''} or fix ${fix}`;
}
