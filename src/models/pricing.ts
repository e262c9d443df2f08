import type { ModelConfig } from '../config/schema.ts';
import type { Usage } from '../output/records.ts';

/**
 * Money is kept as whole nano-dollars (1e-9 USD) so that sums are exact integers: the report's
 * total then equals the sum of costs.jsonl whatever order the records are added in.
 */
const NANOS_PER_USD = 1e9;

/** Cost of one call in nano-dollars, or null when the model has no configured price (never a guess). */
export function callCostNanos(price: ModelConfig['price'], usage: Usage): number | null {
  if (!price) return null;
  // price is USD per 1e6 tokens, so one token costs price * 1e3 nano-dollars.
  return Math.round(usage.input_tokens * price.input_per_mtok * 1e3 + usage.output_tokens * price.output_per_mtok * 1e3);
}

export function nanosToUsd(nanos: number): number {
  return nanos / NANOS_PER_USD;
}

/**
 * The largest budget taken: money is counted in whole nano-dollars, exact only below 2^53 of them
 * (about $9.007M); a larger one failed every row of its batch.
 */
export const MAX_BUDGET_USD = 9_000_000;
export const BUDGET_TOO_LARGE = `at most ${MAX_BUDGET_USD} (costs are counted in whole nano-dollars); for no limit, set none`;

export function usdToNanos(usd: number): number {
  return Math.round(usd * NANOS_PER_USD);
}

/** "$0.001234" with enough digits to be useful for the tiny per-row amounts LLM calls cost. */
export function formatUsd(usd: number | null): string {
  if (usd === null) return 'n/a (no price configured)';
  if (usd === 0) return '$0';
  if (usd >= 1) return `$${usd.toFixed(2)}`;
  // Three significant digits, and never an exponent (1e-7 of a dollar reads as $0.000000100).
  const text = usd.toPrecision(3);
  return `$${text.includes('e') ? usd.toFixed(Math.min(20, 2 - Math.floor(Math.log10(Math.abs(usd))))) : text}`;
}

/** No model of the config has a price: what its batches cost is unknown, not $0. */
export function noModelPriced(config: { models: Record<string, { price?: unknown }> }): boolean {
  return Object.values(config.models).every((model) => model.price === undefined);
}
