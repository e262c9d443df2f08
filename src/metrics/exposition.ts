/**
 * The Prometheus text exposition format (version 0.0.4), written by hand: the few metric families
 * `GET /metrics` serves need counters, gauges and one histogram, which a dependency would add
 * little to (and a registry of its own, process-global, beside the reads from Redis made per scrape).
 * https://prometheus.io/docs/instrumenting/exposition_formats/
 */

export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type Labels = Readonly<Record<string, string>>;

export interface Sample {
  labels?: Labels;
  value: number;
}

export interface HistogramSample {
  labels?: Labels;
  /** Upper bounds (le), ascending, without +Inf; `cumulativeCounts[i]` observations were <= buckets[i]. */
  buckets: readonly number[];
  cumulativeCounts: readonly number[];
  count: number;
  sum: number;
}

export type MetricFamily =
  | { name: string; help: string; type: 'counter' | 'gauge'; samples: readonly Sample[] }
  | { name: string; help: string; type: 'histogram'; samples: readonly HistogramSample[] };

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A value as the format writes it: Go's float text, with NaN and the infinities spelled as Prometheus reads them. */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(value);
}

/** HELP text escapes only backslash and newline; label values also the double quote. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function escapeLabelValue(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labelText(labels: Labels | undefined, extra?: [string, string]): string {
  const pairs = Object.entries(labels ?? {});
  if (extra) pairs.push(extra);
  if (pairs.length === 0) return '';
  for (const [name] of pairs) if (!LABEL_NAME.test(name) || name.startsWith('__')) throw new Error(`"${name}" is not a valid Prometheus label name`);
  return `{${pairs.map(([name, value]) => `${name}="${escapeLabelValue(value)}"`).join(',')}}`;
}

/** The families as one exposition, each with its HELP and TYPE lines; a family with no samples is left out (its TYPE alone says nothing). */
export function formatExposition(families: readonly MetricFamily[]): string {
  const lines: string[] = [];
  for (const family of families) {
    // A bad name is this program's bug: failing here is caught by the tests, not by a scraper rejecting the whole page.
    if (!METRIC_NAME.test(family.name)) throw new Error(`"${family.name}" is not a valid Prometheus metric name`);
    if (family.samples.length === 0) continue;
    lines.push(`# HELP ${family.name} ${escapeHelp(family.help)}`, `# TYPE ${family.name} ${family.type}`);
    if (family.type === 'histogram') {
      for (const sample of family.samples) {
        sample.buckets.forEach((bound, i) => lines.push(`${family.name}_bucket${labelText(sample.labels, ['le', formatValue(bound)])} ${sample.cumulativeCounts[i] ?? 0}`));
        lines.push(`${family.name}_bucket${labelText(sample.labels, ['le', '+Inf'])} ${sample.count}`);
        lines.push(`${family.name}_sum${labelText(sample.labels)} ${formatValue(sample.sum)}`);
        lines.push(`${family.name}_count${labelText(sample.labels)} ${sample.count}`);
      }
    } else for (const sample of family.samples) lines.push(`${family.name}${labelText(sample.labels)} ${formatValue(sample.value)}`);
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}
