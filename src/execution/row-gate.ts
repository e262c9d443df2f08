import type { BudgetHold } from '../limits/budget.ts';

/**
 * What a row must pass before and report after each model call: the model's circuit breaker, its
 * shared rate limits, and the budgets. Implemented over Redis in redis-row-gate.ts; the row runner
 * only sees this interface.
 */
export type CapacityDecision =
  /**
   * slotAt: the reserved start on Redis' clock, needed to settle the call's tokens later; limitedBy:
   * what made it wait, when it waits (for the note a long wait gets); tokens: what was booked, when
   * not the tokens asked for (a provider that meters usage: the prompt and the answer expected), to
   * settle and give back from.
   */
  | { reserved: true; waitMs: number; slotAt: number; limitedBy?: 'requests' | 'tokens' | 'cooldown' | null; tokens?: number }
  /**
   * deferred: nothing booked, the slot being further ahead than a call to a provider that meters
   * usage books (model-limiter.ts): ask again in waitMs, which is before the slot, with turnTicket.
   */
  | { reserved: false; waitMs: number; limitedBy: 'requests' | 'tokens' | 'cooldown'; deferred?: true; turnTicket?: number; tokens?: number };

/**
 * hold: what the call's settlement hands back (null when no budget is tracked).
 * waitNote: what a row waiting for held budget is waiting for, in words.
 * heldByCallsInFlight: the row's estimate fits what is left once the calls in flight settle (their
 * holds are estimates from max_tokens, usually far above what they cost): worth waiting for.
 */
export type BudgetDecision = { ok: true; hold: BudgetHold | null } | { ok: false; message: string; heldByCallsInFlight: boolean; waitNote?: string };

/** Several estimates held together: one hold each, in their order (none when no budget is tracked, or they cost nothing). */
export type BudgetTogetherDecision = { ok: true; holds: BudgetHold[] } | Extract<BudgetDecision, { ok: false }>;

export interface CallSettlement {
  model: string;
  slotAt: number;
  estimatedTokens: number;
  actualTokens: number;
  /** The prompt's estimate within estimatedTokens, for an answered call: what the call used beyond it teaches the limiter the answers' length. */
  promptTokens?: number;
  /** The call's budget reservation, released as the call settles. */
  budgetHold: BudgetHold | null;
  actualNanos: number;
  /** 'success' closes the breaker; 'failure' counts toward opening it; 'neutral' (400, 401, 429) does neither. */
  health: 'success' | 'failure' | 'neutral';
  /** With a 'failure': what the call's error said, kept with the breaker to say why it opened. */
  failureMessage?: string;
  /** A 429 asked everyone to wait this long. */
  coolDownMs: number | null;
  /** The call was the model's probe (`breaker` gave this token): settled 'neutral', it lets the next caller probe. */
  probe?: string | undefined;
  /**
   * No request went out (the process stopping, the claim lost, the key just rejected, the answer
   * cached meanwhile): the rate-limit slot comes back whole, its request as well as its tokens, so
   * the next call need not wait behind it.
   */
  unsent?: true;
}

export interface RowGate {
  /**
   * lastError: when not allowed, what the failure that opened the circuit said (if known).
   * probing: not allowed because another call is testing the model (the circuit is half-open):
   * its outcome is due within one call, not one cooldown.
   * probe: allowed as the one call that tests a half-open circuit; the caller settles that call with
   * it, or gives it up with releaseProbe when no call goes out, so that the next caller may probe now.
   */
  breaker(model: string): Promise<{ allowed: boolean; retryInMs: number; lastError?: string; probing?: boolean; probe?: string }>;
  /**
   * Whether the model's circuit would let a call through now, asked without taking a half-open
   * circuit's probe (`breaker` would take it: a caller that only asks would turn away the row that calls).
   */
  opensToCalls(model: string): Promise<boolean>;
  /** Gives up the probe `breaker` granted, without a call: another caller may probe at once. */
  releaseProbe(model: string, probe: string): Promise<void>;
  /**
   * Books the model's next free slot for this call (`tokens`: prompt + max_tokens, of which
   * `call.promptTokens` is the prompt; `call.turnTicket`: what an earlier deferred ask gave), unless
   * that is more than maxWaitMs away.
   */
  reserveCapacity(model: string, tokens: number, maxWaitMs: number, call?: { promptTokens: number; turnTicket?: number | undefined }): Promise<CapacityDecision>;
  /** Time left on a cooldown set (by any worker) after a 429; 0 when none. */
  coolingDownMs(model: string): Promise<number>;
  reserveBudget(estimateNanos: number): Promise<BudgetDecision>;
  /**
   * Holds every estimate or none, in one reservation: an ensemble row's members' and synthesis'
   * calls before its first (ensemble-row.ts). Each hold is handed to its call, which settles it.
   */
  reserveBudgetTogether(estimatesNanos: readonly number[]): Promise<BudgetTogetherDecision>;
  /**
   * Moves on the deadline of a hold kept for a call still to come, grown to the call's estimate if
   * that is more and the budgets leave room: the hold as it now is. Null (the hold released) when it
   * lapsed meanwhile or could not grow: the call then reserves as any call does.
   */
  renewBudget(hold: BudgetHold, estimateNanos: number): Promise<BudgetHold | null>;
  /** Releases a hold kept for a call that will not be made. */
  releaseBudget(hold: BudgetHold): Promise<void>;
  /**
   * Why a budget refuses a call of this estimate now whatever the calls in flight turn out to cost
   * (what is spent alone leaves no room), or null. A read: nothing is reserved. Asked before a row
   * books (or waits out) a rate-limit slot, so that once the budget is spent the rows left end at
   * once instead of each waiting its turn to be refused.
   */
  budgetRefusal(estimateNanos: number): Promise<string | null>;
  /**
   * Gives back a rate-limit slot this row booked and will not call in (it was refused, found its
   * answer in the cache, or must wait for the budget), so later calls need not wait behind it: its
   * request interval and tokens, even when its start has come.
   */
  releaseSlot(model: string, slotAt: number, tokens: number): Promise<void>;
  /** Returns 'open' when the call's failure left the model's circuit open (it opened it, or it was). */
  settle(settlement: CallSettlement): Promise<'open' | void>;
}
