/**
 * Counts and durations as the messages, progress lines and reports write them ("2,000 rows",
 * "3 min 12 s"): one wording for every command, and no ICU loaded at start-up to say them.
 */

/**
 * 1234567.8 -> "1,234,567.8": en-US digit grouping, at most `maxFractionDigits` decimals (trailing
 * zeros dropped). Written out instead of toLocaleString, whose first call loads ICU number
 * formatting: about 20 ms of every run's start-up.
 */
export function formatCount(n: number, maxFractionDigits = 0): string {
  const [whole = '0', fraction = ''] = Math.abs(n).toFixed(maxFractionDigits).split('.');
  const grouped = whole.replace(/\B(?=(\d{3})+$)/g, ',');
  const decimals = fraction.replace(/0+$/, '');
  return `${n < 0 ? '-' : ''}${grouped}${decimals ? `.${decimals}` : ''}`;
}

/** "1 row", "2,000 rows". */
export const counted = (n: number, noun: string): string => `${formatCount(n)} ${noun}${n === 1 ? '' : 's'}`;

/** "850 ms", "4.1 s", "3 min 12 s", "2 h 05 min". */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const totalSeconds = Math.round(ms / 1000);
  if (totalSeconds < 3600) return `${Math.floor(totalSeconds / 60)} min ${totalSeconds % 60} s`;
  const totalMinutes = Math.round(ms / 60_000);
  return `${Math.floor(totalMinutes / 60)} h ${String(totalMinutes % 60).padStart(2, '0')} min`;
}

/**
 * "02:30:15 UTC": a moment as the time of day, to the second, for a person reading a log that many
 * nights append to (when a progress line was written, when Redis went away, until when a circuit
 * stays shut). UTC, as report.md's timestamps and `date -u`.
 */
export function formatClockTime(epochMs: number): string {
  return `${new Date(epochMs).toISOString().slice(11, 19)} UTC`;
}

/**
 * "2026-12-05 02:30:01 to 02:30:49 UTC" (the end's date too when it differs; one time for a run within a second): when the run ran, for
 * the summary a log keeps night after night, and a server's line for a batch that finished. Empty when either time is not one (an older report).
 */
export function formatClockSpan(startedAt: string, finishedAt: string): string {
  const start = Date.parse(startedAt);
  const end = Date.parse(finishedAt);
  if (!Number.isFinite(start) || !Number.isFinite(end)) return '';
  const [startDay, startTime] = new Date(start).toISOString().slice(0, 19).split('T');
  const [endDay, endTime] = new Date(end).toISOString().slice(0, 19).split('T');
  if (endDay === startDay && endTime === startTime) return `${startDay} ${startTime} UTC`;
  return `${startDay} ${startTime} to ${endDay === startDay ? '' : `${endDay} `}${endTime} UTC`;
}
