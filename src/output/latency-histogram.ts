/**
 * Bounded latency percentiles: a fixed histogram with log-spaced buckets, so memory does not grow
 * with the number of calls (about 1,000 counters, 8 KB, per histogram with the defaults).
 *
 * Bucket i holds values in (gamma^(i-1), gamma^i] (in units of `minMs`), with
 * gamma = (1 + a) / (1 - a). Reporting 2 * gamma^i / (gamma + 1) for a bucket puts every value of
 * that bucket within a relative error `a` of the estimate, so a quantile is off by at most `a`
 * (1% by default) of its true value. Values at or below `minMs` share the first bucket (reported
 * as `minMs`); values above `maxMs` share the last. Estimates are clamped to the exact minimum and
 * maximum seen.
 * Quantiles use the nearest-rank definition: the smallest value with at least q * n values at or
 * below it.
 */
export interface LatencyHistogramOptions {
  /** Relative accuracy of quantiles, 0 < a < 1 (default 0.01). */
  relativeAccuracy?: number;
  /** Smallest latency told apart (default 0.01 ms). */
  minMs?: number;
  /** Largest latency told apart (default 1 hour). */
  maxMs?: number;
}

export class LatencyHistogram {
  readonly #gamma: number;
  readonly #logGamma: number;
  readonly #minMs: number;
  readonly #counts: Float64Array;
  #count = 0;
  #min = Infinity;
  #max = -Infinity;

  constructor(options: LatencyHistogramOptions = {}) {
    const accuracy = options.relativeAccuracy ?? 0.01;
    const minMs = options.minMs ?? 0.01;
    const maxMs = options.maxMs ?? 3_600_000;
    if (!(accuracy > 0 && accuracy < 1)) throw new RangeError('relativeAccuracy must be between 0 and 1');
    if (!(minMs > 0 && maxMs > minMs)) throw new RangeError('need 0 < minMs < maxMs');
    this.#gamma = (1 + accuracy) / (1 - accuracy);
    this.#logGamma = Math.log(this.#gamma);
    this.#minMs = minMs;
    this.#counts = new Float64Array(Math.ceil(Math.log(maxMs / minMs) / this.#logGamma) + 1);
  }

  /** Number of values recorded. */
  get count(): number {
    return this.#count;
  }

  /** Records one latency; negative or non-finite values are ignored. */
  record(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    const index = this.#bucketOf(ms);
    this.#counts[index] = (this.#counts[index] ?? 0) + 1;
    this.#count += 1;
    if (ms < this.#min) this.#min = ms;
    if (ms > this.#max) this.#max = ms;
  }

  /** The q-quantile (0 <= q <= 1) in ms, or null when nothing was recorded. */
  quantile(q: number): number | null {
    if (this.#count === 0) return null;
    if (q <= 0) return this.#min;
    if (q >= 1) return this.#max;
    const rank = Math.max(1, Math.ceil(q * this.#count));
    let seen = 0;
    for (let i = 0; i < this.#counts.length; i += 1) {
      seen += this.#counts[i] ?? 0;
      if (seen >= rank) return Math.min(this.#max, Math.max(this.#min, this.#estimate(i)));
    }
    return this.#max;
  }

  #bucketOf(ms: number): number {
    if (ms <= this.#minMs) return 0;
    const index = Math.ceil(Math.log(ms / this.#minMs) / this.#logGamma);
    return Math.min(index, this.#counts.length - 1);
  }

  #estimate(index: number): number {
    if (index === 0) return this.#minMs;
    return (this.#minMs * 2 * this.#gamma ** index) / (this.#gamma + 1);
  }
}
