import type { SwitchyardConfig } from '../config/schema.ts';
import type { PastRateLimitCost, Report } from '../output/report-json.ts';
import { pastRateLimitWords } from '../output/report-markdown.ts';
import { formatCount, formatDuration } from '../figure-text.ts';

/** A model's share of the calls at which its rpm is taken to be what set the pace (its slots were spaced that close). */
const PACED_SHARE = 0.8;

/** This run's calls to a model waiting this long in all for their rate-limit slots are worth a line in the summary. */
const WAITED_NOTED_MS = 10_000;

/**
 * The models whose rate limits slowed this run's rows: those whose `rpm` this batch's own calls
 * nearly used up (QA: a run at 8 rows/s with --concurrency 32 said nothing of the example config's
 * rpm 500), then those whose calls waited for their slots anyway (the limits are shared, through
 * Redis, by every batch and worker calling the endpoint: another batch may have set the pace, and
 * this batch's own rate then shows nothing). A line for each kind; none when no model did.
 */
export function rateLimitPaceLines(report: Report, config: SwitchyardConfig): string[] {
  const { elapsed_ms: elapsedMs } = report.totals;
  // A run too short to tell its rate from is judged by its waits alone.
  const perMinute = (calls: number) => (elapsedMs < 10_000 ? null : calls / (elapsedMs / 60_000));
  // This run's calls alone: a resume that only judged its rows made none of the answers' calls (QA: an
  // estimate from its share of the rows named five models at rates over their rpm, four of them never called).
  const paced = Object.entries(report.models).flatMap(([name, model]) => {
    const rpm = config.models[name]?.rpm;
    const rate = perMinute(model.calls_this_run);
    if (rpm === undefined || rate === null) return [];
    return rate >= PACED_SHARE * rpm * config.limits.headroom ? [[name, `${name} (${Math.round(rate)} calls a minute, models.${name}.rpm ${rpm})`]] : [];
  });
  const pacedNames = new Set(paced.map(([name]) => name));
  const waited = Object.entries(report.models).flatMap(([name, model]) => {
    const waits = model.limit_waits_this_run;
    if (pacedNames.has(name) || waits === undefined || waits.wait_ms < WAITED_NOTED_MS) return [];
    const rate = perMinute(model.calls_this_run);
    const own = rate === null ? '' : `, this batch's own at ${formatCount(rate, rate < 10 ? 1 : 0)} a minute`;
    const limits = config.models[name];
    // Only an rpm alone, with this batch's rate known and well under it, shows that other calls took the slots: a
    // tpm's tokens, or a 429's cooldown, may have been used up by this batch's own calls.
    const othersTookSlots = rate !== null && limits?.rpm !== undefined && limits.tpm === undefined;
    return [{ othersTookSlots, text: `${name} (${formatCount(waits.calls)} of ${formatCount(model.calls_this_run)} calls waited, ${formatDuration(waits.wait_ms / waits.calls)} on average, under ${limitsOf(name, config)}${own})` }];
  });
  const lines: string[] = [];
  if (paced.length > 0) lines.push(`Rate limits: ${paced.map(([, text]) => text).join(', ')} set the pace: rows waited for their slots, so --concurrency could not speed them up. Raise the rpm if your provider allows more.`);
  if (waited.length > 0) {
    const whose = waited.every((model) => model.othersTookSlots) ? 'and other calls took slots too' : "this batch's calls among them";
    lines.push(
      `Rate limits: ${waited.map((model) => model.text).join(', ')}: every batch and worker on the same endpoint shares these limits (through Redis), ${whose}; --concurrency cannot speed these rows up. Raise the limit if the provider allows more, or run the batches one after another.`,
    );
  }
  return lines;
}

/** The limits a model's calls wait under, as the config names them. */
function limitsOf(name: string, config: SwitchyardConfig): string {
  const model = config.models[name];
  const limits = [model?.rpm !== undefined && `models.${name}.rpm ${formatCount(model.rpm)}`, model?.tpm !== undefined && `models.${name}.tpm ${formatCount(model.tpm)}`].filter((limit) => limit !== false);
  // Neither: its waits were a 429's cooldown, which every caller of the endpoint keeps.
  return limits.length > 0 ? limits.join(' and ') : `the provider's 429s (their cooldown)`;
}

/**
 * The rows a model's rate limit sent on to their fallbacks (on_limit: fallback), what they cost
 * against the same tokens at its price, and what would keep them on it (QA: 584 of 600 FAQ rows went
 * to a model 34 times the price, the summary saying only how many). Null when none went on so.
 */
export function pastRateLimitText(report: Report, config: SwitchyardConfig | null): string | null {
  const words = pastRateLimitWords(report.extra_calls);
  if (words === null) return null;
  const models = Object.keys(report.extra_calls.rows_past_rate_limit ?? {});
  const one = models.length === 1 ? models[0]! : null;
  const wait = config ? ` (now ${formatDuration(config.limits.max_wait_ms)})` : '';
  const where = one !== null ? `models.${one}.` : 'models.<name>.';
  // Sent on to fallbacks that cost less than the model passed over, the rows were cheaper for it: no advice to keep them there.
  if (models.every((model) => fallbacksCostLess(report.extra_calls.past_rate_limit_cost?.[model]))) return `Rate limits: ${words}.`;
  return `Rate limits: ${words}. To keep such rows on ${one ?? 'those models'}: ${where}on_limit: wait, a higher limits.max_wait_ms${wait} or ${where}rpm (if the provider allows more), or a next model priced near it (${where}fallbacks, or its route in routing.routes).`;
}

/** Every priced row that went on past the model cost less than its tokens at the model's price (false when unknown). */
function fallbacksCostLess(cost: PastRateLimitCost | undefined): boolean {
  return cost !== undefined && cost.rows > 0 && cost.unpriced_rows === 0 && cost.cost_at_its_price_usd !== null && cost.cost_usd < cost.cost_at_its_price_usd;
}
