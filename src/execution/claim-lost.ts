/**
 * This worker's claim on a row's job lapsed and another worker has the job now: the worker paused
 * past queue.lock_ms (a laptop asleep, a stopped process) while the stalled check handed the job
 * over. Thrown where the row would save its progress or start a call, so that no further call of
 * the row is this worker's to pay for; its host records the calls made so far and leaves the row.
 */
export class ClaimLostError extends Error {
  constructor() {
    super("this worker's claim on the row lapsed and another worker has it now");
  }
}
