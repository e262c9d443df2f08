/** What a provider said of this process's key or account: every call with it would hear the same. */
export type AccountRefusal = { code: 'unauthorized' | 'quota_exceeded'; message: string };

/**
 * Remembers that a provider has just rejected this process's API key (401) or said its account is
 * out of quota or credit (429 insufficient_quota, 402), so the rows behind it fail at once with that
 * answer instead of each sending a request to hear it again: a batch with a wrong key or an empty
 * account ends in seconds, and the provider sees the requests already in flight, not one per row.
 * Per process and provider (another worker may hold another key), and for `holdMs` only: then one
 * call tries again, so a key fixed (or credit added) at the provider works without restarting a
 * long-lived worker.
 */
export class KeyRejection {
  readonly #holdMs: number;
  readonly #now: () => number;
  #until = 0;
  #refusal: AccountRefusal | null = null;

  constructor(holdMs = 30_000, now: () => number = Date.now) {
    this.#holdMs = holdMs;
    this.#now = now;
  }

  record(message: string, code: AccountRefusal['code'] = 'unauthorized'): void {
    this.#until = this.#now() + this.#holdMs;
    this.#refusal = { code, message };
  }

  /** The refusal while it holds; null when calls may go. */
  current(): AccountRefusal | null {
    return this.#now() < this.#until ? this.#refusal : null;
  }
}
