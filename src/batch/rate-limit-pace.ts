import type { SwitchyardConfig } from '../config/schema.ts';
import type { Report } from '../output/report.ts';

/** A model's share of the calls at which its rpm is taken to be what set the pace (its slots were spaced that close). */
const PACED_SHARE = 0.8;

/**
 * The models whose `rpm` set the batch's pace (QA: a run at 8 rows/s with --concurrency 32 said
 * nothing of the example config's rpm 500): their calls this run came at PACED_SHARE or more of the
 * rate the limiter allows. Null when none did, or the run was too short to tell.
 */
export function rateLimitPaceText(report: Report, config: SwitchyardConfig): string | null {
  const { elapsed_ms: elapsedMs, rows, rows_this_run: rowsThisRun } = report.totals;
  if (elapsedMs < 10_000 || rows === 0) return null;
  // The report counts every run's calls; this run's share is taken as its share of the rows.
  const thisRun = rowsThisRun / rows;
  const paced = Object.entries(report.models).flatMap(([name, model]) => {
    const rpm = config.models[name]?.rpm;
    if (rpm === undefined) return [];
    const perMinute = (model.calls * thisRun) / (elapsedMs / 60_000);
    return perMinute >= PACED_SHARE * rpm * config.limits.headroom ? [`${name} (${Math.round(perMinute)} calls a minute, models.${name}.rpm ${rpm})`] : [];
  });
  if (paced.length === 0) return null;
  return `Rate limits: ${paced.join(', ')} set the pace: rows waited for their slots, so --concurrency could not speed them up. Raise the rpm if your provider allows more.`;
}
