/**
 * A claim a worker must renew every half of it: shorter than this, a worker busy for a moment (a
 * garbage collection, a burst of answers on two cores) loses its rows, and BullMQ gives up a row
 * whose claim is lost too often.
 */
export const MIN_LOCK_MS = 5000;

export const LOCK_TOO_SHORT = `must be at least ${MIN_LOCK_MS} ms: a shorter claim is lost whenever its worker is busy for a moment, and a row whose claim is lost 4 times is given up`;
