/**
 * Remembers that a provider has just rejected this process's API key (401), so the rows behind it
 * fail at once with that answer instead of each sending a request to hear it again: a batch with a
 * wrong key ends in seconds, and the provider sees the requests already in flight, not one per row.
 * Per process and provider (another worker may hold another key), and for `holdMs` only: then one
 * call tries again, so a key fixed at the provider works without restarting a long-lived worker.
 */
export class KeyRejection {
  readonly #holdMs: number;
  readonly #now: () => number;
  #until = 0;
  #message = '';

  constructor(holdMs = 30_000, now: () => number = Date.now) {
    this.#holdMs = holdMs;
    this.#now = now;
  }

  record(message: string): void {
    this.#until = this.#now() + this.#holdMs;
    this.#message = message;
  }

  /** The rejection's message while it holds; null when calls may go. */
  current(): string | null {
    return this.#now() < this.#until ? this.#message : null;
  }
}
