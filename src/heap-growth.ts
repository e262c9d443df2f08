import { setFlagsFromString } from 'node:v8';

/**
 * Keeps V8's heap close to what is live, so a long batch stays flat and small in memory: after
 * each full GC the heap may grow to 1.5x the live set (V8's default lets garbage grow it several
 * times over; a 20,000-row run then peaked at 207-239 MB instead of 163).
 *
 * Set here, when a long command starts, not in the bin's shebang: heap_growing_percent is one of
 * the V8 flags that Node's built-in code cache is checked against, so on the command line it made
 * Node compile its own modules (http, net, crypto, ...) from source at every start, 35-45 ms
 * before the first call. Changed now, it only concerns the few Node modules loaded later.
 */
export function limitHeapGrowth(): void {
  setFlagsFromString('--heap-growing-percent=50');
}
