/**
 * A rolling-window counter: the window (60 s by default) is split into fixed buckets (100 ms by
 * default); an amount added at time t counts until the bucket holding t leaves the window, i.e. for
 * between `windowMs - bucketMs` and `windowMs`. Each operation is O(1) amortised, whatever the rate.
 */
export class SlidingWindow {
  readonly #buckets: Float64Array;
  readonly #bucketMs: number;
  /** Absolute index (time / bucketMs) of the newest bucket. */
  #head = Number.NEGATIVE_INFINITY;
  #total = 0;

  constructor(windowMs = 60_000, bucketMs = 100) {
    this.#bucketMs = bucketMs;
    this.#buckets = new Float64Array(Math.max(1, Math.ceil(windowMs / bucketMs)));
  }

  #advance(now: number): void {
    const index = Math.floor(now / this.#bucketMs);
    if (index <= this.#head) return;
    const size = this.#buckets.length;
    if (index - this.#head >= size) {
      this.#buckets.fill(0);
      this.#total = 0;
    } else {
      for (let b = this.#head + 1; b <= index; b++) {
        const slot = b % size;
        this.#total -= this.#buckets[slot] ?? 0;
        this.#buckets[slot] = 0;
      }
    }
    this.#head = index;
  }

  add(now: number, amount: number): void {
    this.#advance(now);
    const slot = this.#head % this.#buckets.length;
    this.#buckets[slot] = (this.#buckets[slot] ?? 0) + amount;
    this.#total += amount;
  }

  total(now: number): number {
    this.#advance(now);
    return this.#total;
  }

  /**
   * Milliseconds from `now` until adding `amount` keeps the total within `limit`: 0 when it fits
   * already, Infinity when `amount` alone is over `limit`.
   */
  waitMs(now: number, amount: number, limit: number): number {
    this.#advance(now);
    let excess = this.#total + amount - limit;
    if (excess <= 0) return 0;
    if (amount > limit) return Number.POSITIVE_INFINITY;
    const size = this.#buckets.length;
    for (let b = this.#head - size + 1; b <= this.#head; b++) {
      excess -= this.#buckets[((b % size) + size) % size] ?? 0;
      if (excess <= 0) return Math.max(1, (b + size) * this.#bucketMs - now);
    }
    return Number.POSITIVE_INFINITY;
  }

  clear(): void {
    this.#buckets.fill(0);
    this.#total = 0;
    this.#head = Number.NEGATIVE_INFINITY;
  }
}
