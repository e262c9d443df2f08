import type { CallSettlement, RowGate } from '../../src/execution/row-gate.ts';

/**
 * A row gate that lets every call through at once (breaker closed, no limits, no budget), for
 * tests of what happens around it; `overrides` replace its parts, and each settlement is kept in
 * `settled` as "<model>:<health>".
 */
export function openRowGate(overrides: Partial<RowGate> = {}): { gate: RowGate; settled: string[] } {
  const settled: string[] = [];
  const gate: RowGate = {
    breaker: async () => ({ allowed: true, retryInMs: 0 }),
    coolingDownMs: async () => 0,
    reserveCapacity: async () => ({ reserved: true, waitMs: 0, slotAt: 0 }),
    reserveBudget: async () => ({ ok: true, hold: null }),
    reserveBudgetTogether: async () => ({ ok: true, holds: [] }),
    renewBudget: async (hold) => hold,
    releaseBudget: async () => undefined,
    budgetRefusal: async () => null,
    releaseSlot: async () => undefined,
    releaseProbe: async () => undefined,
    settle: async (settlement: CallSettlement) => void settled.push(`${settlement.model}:${settlement.health}`),
    // As `breaker` answers (a test's override included), without a probe.
    opensToCalls: async (model) => (await gate.breaker(model)).allowed,
    ...overrides,
  };
  return { gate, settled };
}
