/**
 * Whether something read after its deadline came late, or only waited while this process's own
 * event loop was busy. A provider's chunk is read when the loop gets to its socket: after a stall of
 * ours (the tokenizer's first load blocked it 0.3-1.2 s as a timed-out call was charged its prompt),
 * a chunk that came in time is read past the deadline, and one that came late can be read before
 * the overdue timer runs (timers run after the I/O of the turn the stall happened in). When the
 * chunk came is not knowable here, only that it came after the loop was last seen free: it is
 * taken to have come half-way between then and its reading. So a chunk read after a stall that
 * began well before the deadline is in time, and one read after a stall that began just before it
 * (or with no stall) is late. A tick every LOOP_TICK_MS, while something is judged, says when the
 * loop was last free.
 */

const LOOP_TICK_MS = 10;
/** A tick this much later than due means the loop was busy since the tick before. */
const LATE_TICK_MS = 2 * LOOP_TICK_MS;

let watchers = 0;
let ticker: NodeJS.Timeout | undefined;
let lastTickAt = 0;
let freeAt = 0;

function tick(): void {
  const now = performance.now();
  if (now - lastTickAt <= LOOP_TICK_MS + LATE_TICK_MS) freeAt = now;
  lastTickAt = now;
}

/** Starts watching for stalls of this process's event loop (for cameLate); returns how to stop. */
export function watchLoop(): () => void {
  if (watchers++ === 0) {
    lastTickAt = freeAt = performance.now();
    ticker = setInterval(tick, LOOP_TICK_MS).unref();
  }
  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    if (--watchers === 0) clearInterval(ticker);
  };
}

/**
 * Whether what was read at `readAt` came after `deadline` (performance.now() times), as the
 * module's comment says. Read by the deadline it is in time; with no stall of the loop it is late
 * once read more than about half a tick after it. Only meaningful while watchLoop() watches.
 */
export function cameLate(deadline: number, readAt = performance.now()): boolean {
  if (readAt <= deadline) return false;
  // The chunk came after the loop was last seen free (the last on-time tick): it would have been read then.
  const seenFree = Math.min(freeAt, readAt);
  return (seenFree + readAt) / 2 > deadline;
}
