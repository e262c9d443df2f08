/**
 * A request the HTTP API refuses: the status, a stable `code` a program can branch on, and a
 * message that tells a person what was wrong and what to do.
 */
export class ApiError extends Error {
  override name = 'ApiError';
  readonly status: number;
  readonly code: string;
  /** Headers the status calls for (Allow on a 405, WWW-Authenticate on a 401). */
  readonly headers: Record<string, string>;

  constructor(status: number, code: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

/** The JSON body of every error answer, shaped like OpenAI's so existing clients show the message. */
export function errorBody(error: ApiError): { error: { code: string; message: string } } {
  return { error: { code: error.code, message: error.message } };
}
