import type { ModelConfig } from '../config/schema.ts';
import type { Usage } from '../output/records.ts';

/**
 * Money is kept as whole nano-dollars (1e-9 USD) so that sums are exact integers: the report's
 * total then equals the sum of costs.jsonl whatever order the records are added in.
 */
const NANOS_PER_USD = 1e9;

/**
 * Cost of one call in nano-dollars, or null when the model has no configured price (never a guess).
 * A price is USD per 1e6 tokens, so a token costs price x 1e3 nano-dollars; the sum is rounded half
 * up, in exact decimal arithmetic: in floating point 17 tokens at 0.0003 and 112 at 0.0007 came to
 * 83.49999999999999 nanos, not 83.5, and rounded down (QA).
 */
export function callCostNanos(price: ModelConfig['price'], usage: Usage): number | null {
  if (!price) return null;
  const input = exactPrice(price.input_per_mtok);
  const output = exactPrice(price.output_per_mtok);
  const places = Math.max(input.places, output.places);
  const scaled = (tokens: number, exact: ExactPrice) => BigInt(tokens) * exact.digits * 10n ** BigInt(places - exact.places);
  // Nano-dollars x 10^places / 1e3, so the tokens' cost in nano-dollars is this x 1e3 / 10^places.
  const thousandths = (scaled(usage.input_tokens, input) + scaled(usage.output_tokens, output)) * 1000n;
  const unit = 10n ** BigInt(places);
  return Number((thousandths * 2n + unit) / (unit * 2n));
}

/** A price as its decimal digits and places: 0.0003 is 3 at 4 places. */
interface ExactPrice {
  digits: bigint;
  places: number;
}

const exactPrices = new Map<number, ExactPrice>();

function exactPrice(price: number): ExactPrice {
  let exact = exactPrices.get(price);
  if (!exact) {
    // The shortest decimal that reads back as this number: what the config said (1e-7 included).
    const [mantissa = '0', exponent = '0'] = String(price).split('e');
    const [whole = '0', fraction = ''] = mantissa.split('.');
    const places = Math.max(0, fraction.length - Number(exponent));
    const digits = BigInt(whole + fraction) * 10n ** BigInt(Math.max(0, Number(exponent) - fraction.length));
    exact = { digits, places };
    exactPrices.set(price, exact);
  }
  return exact;
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
