/**
 * Rows finished per second over the recent past, and how long since the last one finished.
 * A rate averaged since the start hides a batch that has stopped moving (its workers stopped, its
 * rows wait on a rate limit): the average decays slowly and the ETA grows without saying why.
 */
export class FinishRate {
  /** (time, rows counted) samples, oldest first, at least `sampleEveryMs` apart, reaching back past the window. */
  private readonly samples: Array<{ at: number; counted: number }> = [];
  private readonly windowMs: number;
  private readonly sampleEveryMs: number;
  /** Rows that start finishing again after this long a stall restart the window: the stall says nothing of the pace now. */
  private readonly restartAfterIdleMs: number;
  /**
   * The pace since a stall ended counts once it spans this long; until then the rate is the window's.
   * The first row after a 20 s wait, counted over the 55 ms since the last poll, read "18 rows/s".
   */
  private readonly minRestartSpanMs: number;
  /** Where the last stall ended: (time, rows counted) then. */
  private restart: { at: number; counted: number } | null = null;
  private lastFinished: number;
  private lastChangeAt: number;
  private lastObservedAt: number;
  /**
   * Every rise of the finished count, added up. A resume clears the finished bits of the failed rows
   * it runs again and they come back as those rows finish: the count ends where it began, though
   * every one of them was finished in this run ("0 rows/s, done" when it counted the net change).
   */
  private counted = 0;

  constructor(windowMs: number, startedAt: number, finished: number, sampleEveryMs = 1000, restartAfterIdleMs = Number.POSITIVE_INFINITY, minRestartSpanMs = 0) {
    this.windowMs = windowMs;
    this.sampleEveryMs = sampleEveryMs;
    this.restartAfterIdleMs = restartAfterIdleMs;
    this.minRestartSpanMs = minRestartSpanMs;
    this.samples.push({ at: startedAt, counted: 0 });
    this.lastFinished = finished;
    this.lastChangeAt = startedAt;
    this.lastObservedAt = startedAt;
  }

  observe(finished: number, at: number): void {
    // After a stall (an outage, a rate-limit wait), the pace is measured from its end: averaged over
    // a window that holds the stall, the first rows after it read as an ETA of hours.
    if (finished !== this.lastFinished && at - this.lastChangeAt >= this.restartAfterIdleMs) {
      this.restart = { at: this.lastObservedAt, counted: this.counted };
    }
    this.lastObservedAt = at;
    if (finished !== this.lastFinished) {
      this.counted += Math.max(0, finished - this.lastFinished);
      this.lastFinished = finished;
      this.lastChangeAt = at;
    }
    if (at - this.samples[this.samples.length - 1]!.at >= this.sampleEveryMs) this.samples.push({ at, counted: this.counted });
    // Keep one sample at or before the window's start, so the rate always spans a whole window.
    while (this.samples.length > 2 && at - this.samples[1]!.at >= this.windowMs) this.samples.shift();
  }

  /** The end of the last stall, while it lies inside the window (after that the window holds no stall). */
  private restartInWindow(): { at: number; counted: number } | null {
    return this.restart && this.restart.at > this.samples[0]!.at ? this.restart : null;
  }

  /**
   * Rows per second from the oldest sample kept (the start, until a window has passed) to now; or,
   * from `minRestartSpanMs` after a stall ended, from its end.
   */
  perSecond(at: number): number {
    const restart = this.restartInWindow();
    const base = restart && at - restart.at >= this.minRestartSpanMs ? restart : this.samples[0]!;
    const elapsed = at - base.at;
    return elapsed > 0 ? ((this.counted - base.counted) * 1000) / elapsed : 0;
  }

  /** How long the pace has been measured: over the window, or since the last stall ended (shorter than `minRestartSpanMs`: `perSecond` is still the window's). */
  spanMs(at: number): number {
    return at - (this.restartInWindow() ?? this.samples[0]!).at;
  }

  /** Milliseconds since the finished count last changed (or since the start). */
  idleMs(at: number): number {
    return at - this.lastChangeAt;
  }
}
