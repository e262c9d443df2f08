/** Error answers shaped like OpenAI's: `{ error: { message, type, param, code } }`. */

export interface ErrorAnswer {
  status: number;
  body: { error: { message: string; type: string; param: string | null; code: string | null } };
  headers?: Record<string, string>;
}

export function errorAnswer(
  status: number,
  fields: { message: string; type: string; code?: string | null; param?: string | null },
  headers?: Record<string, string>,
): ErrorAnswer {
  const body = { error: { message: fields.message, type: fields.type, param: fields.param ?? null, code: fields.code ?? null } };
  return headers ? { status, body, headers } : { status, body };
}

export function invalidRequest(message: string, code: string | null = null, param: string | null = null, status = 400): ErrorAnswer {
  return errorAnswer(status, { message, type: 'invalid_request_error', code, param });
}

export function retryHeaders(retryAfterMs: number): Record<string, string> {
  const ms = Math.max(1, Math.ceil(retryAfterMs));
  return { 'retry-after-ms': String(ms), 'retry-after': String(Math.ceil(ms / 1000)) };
}

/** The answer for a forced `fail_status` or a random failure. */
export function statusError(status: number, model: string): ErrorAnswer {
  if (status === 429) {
    return errorAnswer(
      429,
      { message: `Rate limit reached for ${model} (simulated).`, type: 'requests', code: 'rate_limit_exceeded' },
      retryHeaders(1000),
    );
  }
  if (status === 503) {
    return errorAnswer(503, { message: 'The engine is currently overloaded, please try again later.', type: 'server_error', code: 'service_unavailable' });
  }
  if (status >= 500) {
    return errorAnswer(status, { message: 'The server had an error while processing your request. Sorry about that!', type: 'server_error' });
  }
  if (status === 401) return invalidRequest('Incorrect API key provided.', 'invalid_api_key', null, 401);
  if (status === 404) return invalidRequest(`The model \`${model}\` does not exist or you do not have access to it.`, 'model_not_found', null, 404);
  return invalidRequest(`The simulator was told to answer ${status} for ${model}.`, 'simulated_error', null, status);
}
