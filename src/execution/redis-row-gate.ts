import type { Redis } from 'ioredis';
import type { SwitchyardConfig } from '../config/schema.ts';
import { Budget, batchBudgetKey, monthKey } from '../limits/budget.ts';
import { postAgainWayOut } from '../limits/budget-way-out.ts';
import type { MonthSpend } from '../limits/month-spend.ts';
import { CircuitBreaker, type BreakerCheck } from '../limits/circuit-breaker.ts';
import { ModelLimiter } from '../limits/model-limiter.ts';
import { modelEndpoint } from '../limits/model-endpoint.ts';
import { formatUsd, nanosToUsd, usdToNanos } from '../models/pricing.ts';
import type { BatchStore } from '../queue/batch-state.ts';
import type { KeySpace } from '../queue/keys.ts';
import { whileRedisRefuses, type RefusalWait } from '../queue/redis-outage.ts';
import type { BudgetDecision, BudgetTogetherDecision, CallSettlement, CapacityDecision, RowGate } from './row-gate.ts';

export interface RedisRowGateOptions {
  redis: Redis;
  space: KeySpace;
  store: BatchStore;
  batchId: string;
  config: SwitchyardConfig;
  /** Where costs go that no monthly cap reserved for; omitted, they count toward no month. */
  monthSpend?: MonthSpend | undefined;
  /**
   * Told each time a budget refuses a call for good (what is spent leaves no room for it), not for
   * a wait on calls in flight, with the budget that refused: the batch's, or the month's, which
   * every batch under the same cap shares.
   */
  onBudgetSpent?: (scope: 'batch' | 'month') => void;
  /** A full Redis refusing the breaker's, limiter's or budget's scripts: waited out, so that a paid call is still booked (and the row not run again). */
  refusals?: RefusalWait | undefined;
  /**
   * The batch's run is `switchyard serve`'s (BatchMeta.served): a refused row says to post the file
   * again, not to resume it. Whoever runs it now, not where it was first posted: a CLI `run
   * --resume` of a posted batch is told about --budget.
   */
  served?: boolean;
}

/** How long a worker trusts its copy of the batch's budget before reading it again (resume may raise it). */
const BUDGET_REFRESH_MS = 2000;
/**
 * How long a "closed, no failures" breaker answer is trusted before asking Redis again. A circuit
 * opened by another worker is seen this much later, at the cost of a few calls; in exchange a
 * healthy model costs one breaker round trip per this interval instead of one per call.
 */
const HEALTHY_BREAKER_TRUST_MS = 250;

/**
 * How long a budget hold lasts unsettled: two of the slowest provider's timeouts (a row may wait out
 * one call for a free call slot before its own, call-slots.ts) and 30 s to settle. Past that it can
 * only be a killed worker's, and the next reservation frees it.
 */
function budgetHoldTtlMs(config: SwitchyardConfig): number {
  const longestCallMs = Math.max(0, ...Object.values(config.providers).map((provider) => provider.timeout_ms));
  return 2 * longestCallMs + 30_000;
}

/** "the batch budget of $5.00", "the monthly budget of $200". */
function budgetName(scope: 'batch' | 'month', limitNanos: number): string {
  return `the ${scope === 'batch' ? 'batch' : 'monthly'} budget of ${formatUsd(nanosToUsd(limitNanos))}`;
}

/**
 * The row gate over Redis, shared by every worker: breaker, rpm/tpm limiter and budgets. Pieces a
 * config does not use cost no round trip (no limits, no budget). Breaker and limiter state is
 * keyed by the endpoint a model name stands for (model-endpoint.ts), not by the name alone.
 */
export function createRedisRowGate(options: RedisRowGateOptions): RowGate {
  const { redis, space, config, batchId, refusals } = options;
  const limiter = new ModelLimiter(redis, { prefix: space.prefix, refusals });
  const breaker = new CircuitBreaker(redis, { prefix: space.prefix, breaker: config.breaker, refusals });
  const holdTtlMs = budgetHoldTtlMs(config);
  const budget = new Budget(redis, { holdTtlMs, refusals });
  const batchKey = batchBudgetKey(space.prefix, batchId);
  const monthLimitNanos = config.budget.monthly_usd === undefined ? undefined : usdToNanos(config.budget.monthly_usd);
  let batchLimit: { nanos: number | undefined; readAt: number } = { nanos: undefined, readAt: 0 };
  /** Models whose circuit was not closed when last seen here; only their successes need recording. */
  const failing = new Set<string>();
  /** When each model was last seen closed with no failures. */
  const healthySince = new Map<string, number>();

  // Rows that find a cached answer stale at the same moment share one read (no stampede of 64 reads).
  let budgetRead: Promise<void> | null = null;
  const breakerReads = new Map<string, Promise<BreakerCheck>>();

  /** The batch's limit, read again when older than BUDGET_REFRESH_MS, or at once with `fresh` (before refusing a row: a resume may have just raised it). */
  async function batchLimitNanos(fresh = false): Promise<number | undefined> {
    if (fresh || Date.now() - batchLimit.readAt > BUDGET_REFRESH_MS) {
      budgetRead ??= options.store
        .load(batchId)
        .then((meta) => {
          batchLimit = { nanos: meta?.budget_usd === undefined ? undefined : usdToNanos(meta.budget_usd), readAt: Date.now() };
        })
        .finally(() => (budgetRead = null));
      await budgetRead;
    }
    return batchLimit.nanos;
  }

  // Config model name -> endpoint, worked out once.
  const endpoints = new Map(Object.keys(config.models).map((model) => [model, modelEndpoint(config, model)]));
  const endpointOf = (model: string): string => endpoints.get(model) ?? model;

  async function checkBreaker(model: string): Promise<BreakerCheck> {
    const pending = breakerReads.get(model);
    if (pending) {
      const shared = await pending;
      // A half-open circuit admits one probe: an "allowed" there was the first caller's alone.
      return shared.state === 'half_open' && shared.allowed ? breaker.check(endpointOf(model)) : shared;
    }
    const own = breaker.check(endpointOf(model)).finally(() => breakerReads.delete(model));
    breakerReads.set(model, own);
    return own;
  }

  const tracksBudget = async () => monthLimitNanos !== undefined || (await batchLimitNanos()) !== undefined;

  /**
   * Whether the batch's limit in Redis differs from the one read up to 2 s ago (a resume may have
   * just raised it): asked before a row is refused on the batch's budget, which is then asked again.
   */
  async function batchLimitChanged(): Promise<boolean> {
    const before = batchLimit.nanos;
    return (await batchLimitNanos(true)) !== before;
  }

  /** Why the budget refuses a call of `estimateNanos`: what it could cost, what is spent and held, and what to do. */
  function refusalMessage(scope: 'batch' | 'month', limitNanos: number, spentNanos: number, heldNanos: number, estimateNanos: number): string {
    return (
      `not run: it could cost up to ${formatUsd(nanosToUsd(estimateNanos))} and ${formatUsd(nanosToUsd(spentNanos))} of ${budgetName(scope, limitNanos)} is spent ` +
      `(${formatUsd(nanosToUsd(heldNanos))} more held by calls in flight); ` +
      (options.served ? postAgainWayOut(scope, batchId) : scope === 'batch' ? 'resume with a higher --budget to finish' : 'raise budget.monthly_usd or wait for next month')
    );
  }

  /**
   * A budget refused a call for good. The month's refusal is noted on the batch before the row can
   * end on it, so that closing the batch names the cap to raise (BatchMeta.month_cap_refused); a
   * refusal by the batch's own cap is what a budget_exceeded batch without that note met.
   */
  async function refusedForGood(scope: 'batch' | 'month'): Promise<void> {
    if (scope === 'month') await whileRedisRefuses("recording the month's budget refusal", () => options.store.update(batchId, { month_cap_refused: true }), refusals);
    options.onBudgetSpent?.(scope);
  }

  /** A model this worker saw closed and unfailed within the last HEALTHY_BREAKER_TRUST_MS: its breaker is not asked again yet. */
  const trustedHealthy = (model: string): boolean => {
    const seenHealthy = healthySince.get(model);
    return seenHealthy !== undefined && Date.now() - seenHealthy < HEALTHY_BREAKER_TRUST_MS && !failing.has(model);
  };

  /** Holds for every estimate, admitted together or refused together (one estimate: a call's). */
  async function reserveTogether(estimatesNanos: readonly number[]): Promise<BudgetTogetherDecision> {
    const estimateNanos = estimatesNanos.reduce((sum, estimate) => sum + estimate, 0);
    // A call that costs nothing (an unpriced or free model) takes nothing from any budget, spent or not.
    if (estimateNanos === 0 || !(await tracksBudget())) return { ok: true, holds: [] };
    const reserve = async () =>
      budget.reserveTogether({
        batchKey,
        monthKey: monthLimitNanos === undefined ? undefined : monthKey(space.prefix, new Date()),
        batchLimitNanos: await batchLimitNanos(),
        monthLimitNanos,
        estimatesNanos,
      });
    let result = await reserve();
    if (!result.ok && result.scope === 'batch' && (await batchLimitChanged())) result = await reserve();
    if (result.ok) return result;
    const heldByCallsInFlight = result.reservedNanos > 0 && result.spentNanos + estimateNanos <= result.limitNanos;
    if (!heldByCallsInFlight) await refusedForGood(result.scope);
    return {
      ok: false,
      heldByCallsInFlight,
      waitNote:
        `rows wait for ${budgetName(result.scope, result.limitNanos)}: ${formatUsd(nanosToUsd(result.spentNanos))} is spent and ${formatUsd(nanosToUsd(result.reservedNanos))} held by calls in flight until they settle ` +
        `(a worker stopped mid-call leaves its holds until they lapse, within ${Math.round(holdTtlMs / 1000)} s)`,
      message: refusalMessage(result.scope, result.limitNanos, result.spentNanos, result.reservedNanos, estimateNanos),
    };
  }

  return {
    async breaker(model) {
      if (trustedHealthy(model)) return { allowed: true, retryInMs: 0 };
      const check = await checkBreaker(model);
      if (check.state !== 'closed' || check.failures > 0) failing.add(model);
      else healthySince.set(model, Date.now());
      return {
        allowed: check.allowed,
        retryInMs: check.retryInMs,
        ...(check.lastError !== undefined && { lastError: check.lastError }),
        ...(!check.allowed && check.state === 'half_open' && { probing: true }),
        ...(check.probe !== undefined && { probe: check.probe }),
      };
    },

    async opensToCalls(model) {
      if (trustedHealthy(model)) return true;
      return breaker.opensToCalls(endpointOf(model));
    },

    async releaseProbe(model, probe) {
      await breaker.releaseProbe(endpointOf(model), probe);
    },

    async coolingDownMs(model) {
      return limiter.cooldownRemainingMs(endpointOf(model));
    },

    async reserveCapacity(model, tokens, maxWaitMs, call): Promise<CapacityDecision> {
      const limits = config.models[model];
      const reservation = await limiter.reserve({
        model: endpointOf(model),
        rpm: limits?.rpm,
        tpm: limits?.tpm,
        tokens,
        // A provider that counts requested tokens counts max_tokens whatever the answer: booked whole, as before.
        meteredPromptTokens: limits?.tpm_counts === 'requested' ? undefined : call?.promptTokens,
        turnTicket: call?.turnTicket,
        // The batches on one model take turns for its slots, as for the queue's workers.
        line: batchId,
        maxWaitMs: Number.isFinite(maxWaitMs) ? maxWaitMs : Number.MAX_SAFE_INTEGER,
        headroom: config.limits.headroom,
      });
      if (reservation.reserved) return { reserved: true, waitMs: reservation.waitMs, slotAt: reservation.slotAt, limitedBy: reservation.limitedBy, tokens: reservation.tokens };
      return { reserved: false, waitMs: reservation.waitMs, limitedBy: reservation.limitedBy, ...(reservation.deferred && { deferred: true as const, turnTicket: reservation.ticket, tokens: reservation.tokens }) };
    },

    async reserveBudget(estimateNanos): Promise<BudgetDecision> {
      const decision = await reserveTogether([estimateNanos]);
      return decision.ok ? { ok: true, hold: decision.holds[0] ?? null } : decision;
    },

    reserveBudgetTogether: reserveTogether,

    async renewBudget(hold, estimateNanos) {
      return budget.renew(hold, { batchLimitNanos: await batchLimitNanos(), monthLimitNanos, estimateNanos });
    },

    async releaseBudget(hold): Promise<void> {
      await budget.settle(hold, 0);
    },

    async releaseSlot(model, slotAt, tokens): Promise<void> {
      const limits = config.models[model];
      await limiter.release({ model: endpointOf(model), rpm: limits?.rpm, tpm: limits?.tpm, headroom: config.limits.headroom, reservations: [{ slotAt, tokens, due: true }] });
    },

    async budgetRefusal(estimateNanos): Promise<string | null> {
      if (estimateNanos === 0) return null;
      const refusal = async (): Promise<{ scope: 'batch' | 'month'; message: string } | null> => {
        const batchLimit = await batchLimitNanos();
        const [batch, month] = await Promise.all([
          batchLimit === undefined ? null : budget.usage(batchKey),
          monthLimitNanos === undefined ? null : budget.usage(monthKey(space.prefix, new Date())),
        ]);
        if (batch && batchLimit !== undefined && batch.spentNanos + estimateNanos > batchLimit) return { scope: 'batch', message: refusalMessage('batch', batchLimit, batch.spentNanos, batch.reservedNanos, estimateNanos) };
        if (month && monthLimitNanos !== undefined && month.spentNanos + estimateNanos > monthLimitNanos) return { scope: 'month', message: refusalMessage('month', monthLimitNanos, month.spentNanos, month.reservedNanos, estimateNanos) };
        return null;
      };
      let refused = await refusal();
      if (refused?.scope === 'batch' && (await batchLimitChanged())) refused = await refusal();
      if (refused) await refusedForGood(refused.scope);
      return refused?.message ?? null;
    },

    async settle(settlement: CallSettlement): Promise<'open' | void> {
      const { model } = settlement;
      const limits = config.models[model];
      const work: Promise<unknown>[] = [];
      // A provider that counts requested tokens keeps counting them: only extra usage is booked.
      const settlesDown = limits?.tpm_counts !== 'requested';
      if (settlement.unsent) {
        // Settling its tokens to none would leave its request booked: a stop that found rows waiting for call slots kept one slot each.
        work.push(limiter.release({ model: endpointOf(model), rpm: limits?.rpm, tpm: limits?.tpm, headroom: config.limits.headroom, reservations: [{ slotAt: settlement.slotAt, tokens: settlement.estimatedTokens, due: true }] }));
      } else if (limits?.tpm !== undefined && (settlesDown || settlement.actualTokens > settlement.estimatedTokens)) {
        // An answer teaches the limiter how long the model's answers run (a failed call's usage says nothing of it).
        const metered = settlesDown && settlement.health === 'success' ? settlement.promptTokens : undefined;
        work.push(limiter.settle({ model: endpointOf(model), tpm: limits.tpm, headroom: config.limits.headroom, slotAt: settlement.slotAt, estimatedTokens: settlement.estimatedTokens, actualTokens: settlement.actualTokens, meteredPromptTokens: metered }));
      }
      if (settlement.coolDownMs !== null && settlement.coolDownMs > 0) work.push(limiter.coolDown({ model: endpointOf(model), forMs: settlement.coolDownMs }));
      if (settlement.budgetHold) work.push(budget.settle(settlement.budgetHold, settlement.actualNanos));
      // The month counts every batch's spending, also what its own cap (if any) did not reserve.
      if (!settlement.budgetHold?.scopes.some((held) => held.scope === 'month')) options.monthSpend?.add(settlement.actualNanos);
      let circuit: Promise<'open' | 'closed'> | null = null;
      if (settlement.health === 'failure') {
        failing.add(model);
        healthySince.delete(model);
        circuit = breaker.recordFailure(endpointOf(model), settlement.failureMessage);
        work.push(circuit);
      } else if (settlement.health === 'success' && failing.has(model)) {
        failing.delete(model);
        work.push(breaker.recordSuccess(endpointOf(model)));
      } else if (settlement.health === 'neutral' && settlement.probe !== undefined) {
        // A probe that told nothing of the model's health (not sent, a 400, a 429): the next caller probes.
        work.push(breaker.releaseProbe(endpointOf(model), settlement.probe));
      }
      await Promise.all(work);
      if ((await circuit) === 'open') return 'open';
    },
  };
}
