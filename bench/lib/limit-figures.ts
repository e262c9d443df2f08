import { busiestWindow, formatTimeline, pacing, ratePerMinute, timeline, type LoggedCall } from './call-log.ts';
import { passFail } from './stats.ts';

/**
 * The figures of one run against a provider limit, from its costs.jsonl: what share of the limit
 * it used (accepted calls, or their tokens as the provider counts them, per minute over the span
 * from the first to the last accepted start), how many calls were answered 429 and when, and how
 * even the pace was. Prints them with PASS/FAIL against the issue's targets.
 */

export interface LimitTargets {
  /** Minimum achieved share of the limit, e.g. 0.97. */
  minShare: number;
  /** Maximum share of calls answered 429, e.g. 0.01. */
  max429Share: number;
}

export interface LimitRunInput {
  label: string;
  calls: readonly LoggedCall[];
  rows: number;
  succeededRows: number | null;
  wallMs: number;
  /** 'requests' counts 1 per accepted call; 'tokens' counts `counted(call)`. */
  unit: 'requests' | 'tokens';
  limitPerMinute: number;
  counted: (call: LoggedCall) => number;
  targets: LimitTargets;
  /** Extra lines (CPU, worker, ...) printed under the figures. */
  notes?: string[];
  /** Epoch ms just before the run process was spawned, to place the first calls in its start-up. */
  spawnedAt?: number;
  /** The run's stdout lines with ms since spawn (runCommand's `lines`). */
  lines?: Array<{ ms: number; text: string }>;
}

export interface LimitRunFigures {
  share: number;
  ratePerMinute: number;
  calls: number;
  rejected: number;
  rejectedShare: number;
  succeededRows: number | null;
  busiestShare: number;
  pass: boolean;
}

export function reportLimitRun(input: LimitRunInput): LimitRunFigures {
  const accepted = input.calls.filter((c) => c.httpStatus !== 429);
  const rejected = input.calls.length - accepted.length;
  const times = accepted.map((c) => c.atMs);
  const amounts = accepted.map((c) => (input.unit === 'requests' ? 1 : input.counted(c)));
  const rate = ratePerMinute(times, amounts);
  const share = rate / input.limitPerMinute;
  const rejectedShare = input.calls.length === 0 ? Number.NaN : rejected / input.calls.length;
  const busiest = busiestWindow(times, amounts);
  const t0 = input.calls[0]?.atMs ?? 0;
  const spanS = times.length > 1 ? ((times.at(-1) as number) - (times[0] as number)) / 1000 : Number.NaN;
  const pace = pacing(times);
  const unit = input.unit === 'requests' ? 'calls' : 'tokens';
  const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
  const sharePass = share >= input.targets.minShare;
  const rejectedPass = rejectedShare <= input.targets.max429Share;
  const rowsPass = input.succeededRows === input.rows;

  console.log(`  ${input.label}`);
  console.log(`    wall ${(input.wallMs / 1000).toFixed(1)} s; ${input.calls.length} calls (${accepted.length} accepted, ${rejected} answered 429); rows succeeded ${input.succeededRows ?? '?'} of ${input.rows}`);
  console.log(
    `    achieved: ${fmt(rate)} ${unit}/min over ${spanS.toFixed(1)} s (first to last accepted start) = ${(share * 100).toFixed(1)}% of ${fmt(input.limitPerMinute)}` +
      `   target >= ${(input.targets.minShare * 100).toFixed(0)}%  ${passFail(sharePass)}`,
  );
  console.log(`    429 share: ${(rejectedShare * 100).toFixed(2)}% (${rejected} of ${input.calls.length} calls)   target <= ${(input.targets.max429Share * 100).toFixed(0)}%  ${passFail(rejectedPass)}`);
  console.log(`    rows succeeded: ${input.succeededRows ?? '?'} of ${input.rows}   target all  ${passFail(rowsPass)}`);
  console.log(
    `    busiest 60 s window (by call start): ${fmt(busiest.sum)} ${unit} = ${((busiest.sum / input.limitPerMinute) * 100).toFixed(1)}% of the limit, from ${((busiest.fromMs - t0) / 1000).toFixed(1)} s;` +
      ` end to end ${fmt((input.unit === 'requests' ? accepted.length : amounts.reduce((a, b) => a + b, 0)) / (input.wallMs / 60_000))} ${unit}/min of wall time`,
  );
  console.log(
    `    pace: accepted calls per whole second median ${pace.perSecond.median}, p10 ${pace.perSecond.p10}, p90 ${pace.perSecond.p90}, min ${pace.perSecond.min}, max ${pace.perSecond.max};` +
      ` gaps between starts p50 ${pace.gaps.p50} ms, p99 ${pace.gaps.p99} ms, max ${pace.gaps.max} ms (at ${pace.gaps.maxAtS.toFixed(1)} s)`,
  );
  if (rejected > 0) {
    const r = input.calls.filter((c) => c.httpStatus === 429);
    console.log(`    429s from ${(((r[0]?.atMs ?? t0) - t0) / 1000).toFixed(1)} s to ${(((r.at(-1)?.atMs ?? t0) - t0) / 1000).toFixed(1)} s after the first call; rows with a 429: ${new Set(r.map((c) => c.row)).size}`);
  }
  if (input.spawnedAt !== undefined) {
    const at = (text: RegExp) => input.lines?.find((l) => text.test(l.text))?.ms;
    const show = (ms: number | undefined) => (ms === undefined ? '?' : `${(ms / 1000).toFixed(2)} s`);
    const firstAfter = (n: number) => (times.length > n ? show((times[n] as number) - input.spawnedAt!) : '?');
    console.log(
      `    start-up, s after spawn: "Batch" line ${show(at(/^Batch /))}, "Read ... queued" line ${show(at(/^Read [\d,]+ rows/))}; ` +
        `accepted call no. 1 at ${firstAfter(0)}, no. 50 at ${firstAfter(49)}, no. 100 at ${firstAfter(99)}, no. 200 at ${firstAfter(199)}`,
    );
    const first = timeline(input.calls.filter((c) => c.atMs - t0 < 6000), 0.5, input.counted);
    console.log(`    first 6 s after the first call, 0.5 s bins (accepted/429): ${first.map((b) => `${b.accepted}/${b.rejected}`).join(' ')}`);
  }
  console.log(`    timeline, 10 s bins (accepted/429${input.unit === 'tokens' ? ' tokens-as-counted' : ''}):`);
  for (const line of formatTimeline(timeline(input.calls, 10, input.counted), input.unit === 'tokens')) console.log(`      ${line}`);
  for (const note of input.notes ?? []) console.log(`    ${note}`);
  return { share, ratePerMinute: rate, calls: input.calls.length, rejected, rejectedShare, succeededRows: input.succeededRows, busiestShare: busiest.sum / input.limitPerMinute, pass: sharePass && rejectedPass && rowsPass };
}
