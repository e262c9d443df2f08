import type { SwitchyardConfig } from '../config/schema.ts';
import type { Report } from '../output/report-json.ts';
import { pastRateLimitWords } from '../output/report-markdown.ts';
import { formatDuration } from '../figure-text.ts';

/** A model's share of the calls at which its rpm is taken to be what set the pace (its slots were spaced that close). */
const PACED_SHARE = 0.8;

/**
 * The models whose `rpm` set the batch's pace (QA: a run at 8 rows/s with --concurrency 32 said
 * nothing of the example config's rpm 500): their calls this run came at PACED_SHARE or more of the
 * rate the limiter allows. Null when none did, or the run was too short to tell.
 */
export function rateLimitPaceText(report: Report, config: SwitchyardConfig): string | null {
  const { elapsed_ms: elapsedMs } = report.totals;
  if (elapsedMs < 10_000) return null;
  // This run's calls alone: a resume that only judged its rows made none of the answers' calls (QA: an
  // estimate from its share of the rows named five models at rates over their rpm, four of them never called).
  const paced = Object.entries(report.models).flatMap(([name, model]) => {
    const rpm = config.models[name]?.rpm;
    if (rpm === undefined) return [];
    const perMinute = model.calls_this_run / (elapsedMs / 60_000);
    return perMinute >= PACED_SHARE * rpm * config.limits.headroom ? [`${name} (${Math.round(perMinute)} calls a minute, models.${name}.rpm ${rpm})`] : [];
  });
  if (paced.length === 0) return null;
  return `Rate limits: ${paced.join(', ')} set the pace: rows waited for their slots, so --concurrency could not speed them up. Raise the rpm if your provider allows more.`;
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
  return `Rate limits: ${words}. To keep such rows on ${one ?? 'those models'}: ${where}on_limit: wait, a higher limits.max_wait_ms${wait} or ${where}rpm (if the provider allows more), or a next model priced near it (${where}fallbacks, or its route in routing.routes).`;
}

