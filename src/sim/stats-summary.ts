import { counted, formatCount as count } from '../figure-text.ts';
import type { SimStats } from './stats.ts';

const byStatus = (counts: Record<string, number>) =>
  Object.entries(counts)
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([status, n]) => `${count(n)} x ${status}`)
    .join(', ');

/** What `switchyard sim` prints when it stops: what it served, so a client's behaviour shows at a glance. */
export function simStatsSummary(stats: SimStats): string[] {
  if (stats.requests === 0) return ['Simulator stopped; it served no requests.'];
  // No chat request in flight: every request was refused before it counted (a wrong key's 401s) or asked for something else.
  const inFlight = stats.peak_in_flight > 0 ? `; at most ${counted(stats.peak_in_flight, 'chat request')} in flight at once` : '';
  const lines = [`Simulator stopped after ${counted(stats.requests, 'request')} (${byStatus(stats.by_status)})${inFlight}.`];
  for (const [model, m] of Object.entries(stats.models).sort(([a], [b]) => a.localeCompare(b))) {
    lines.push(`  ${model}: ${counted(m.requests, 'request')} (${byStatus(m.by_status)}), ${count(m.prompt_tokens)} prompt + ${count(m.completion_tokens)} completion tokens served, peak ${counted(m.peak_rpm, 'request')}/min`);
  }
  return lines;
}
