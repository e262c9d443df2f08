import type { RowProgress } from './row-progress.ts';

/**
 * A row's place in its batch's line of rows whose rate-limit turn was too far ahead to book
 * (model-limiter.ts: the batches' lines take turns), as an answer call (row-runner.ts) and the LLM
 * classifier's call (row-planner.ts) both ask for a slot with it.
 */
export interface DeferredTurn {
  /** The ticket to ask with, when the row holds one for this model. */
  ticket: number | undefined;
  /** When the row was first deferred (epoch ms): now for a first ask. */
  since: number;
}

/** How much later than max_wait_ms allowed a row may come back and still count as waiting meanwhile. */
const LATE_RETURN_MS = 1000;

/**
 * Takes the row's ticket for `model` (a reservation asks with it once). A deferred row has waited
 * since its first ask, so max_wait_ms bounds the whole wait; one back far later than that allowed
 * (its run killed and resumed, its workers stopped) was not waiting for a slot meanwhile: it asks afresh.
 */
export function takeTurn(progress: RowProgress, model: string, maxWaitMs: number, now: number): DeferredTurn {
  const turn = progress.turnTicket?.model === model ? progress.turnTicket : undefined;
  progress.turnTicket = undefined;
  const since = turn?.since !== undefined && now - turn.since <= maxWaitMs + LATE_RETURN_MS ? turn.since : now;
  return { ticket: turn?.ticket, since };
}

/** What is left of max_wait_ms for a row deferred since `turn.since`. */
export function waitLeftMs(turn: DeferredTurn, maxWaitMs: number, now: number): number {
  return Math.max(0, maxWaitMs - (now - turn.since));
}

/** A reservation deferred again: the row keeps its place (the ticket it was given) for its next ask. */
export function keepTurn(progress: RowProgress, model: string, ticket: number | undefined, turn: DeferredTurn): void {
  if (ticket !== undefined) progress.turnTicket = { model, ticket, since: turn.since };
}
