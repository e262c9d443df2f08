/**
 * Preloaded with `node --import ./bench/lib/usage-probe.ts ...`: when the process exits (also via
 * process.exit(), or SIGTERM from a benchmark's time limit), writes its own CPU time and peak RSS
 * as JSON to $SWITCHYARD_USAGE_FILE.
 */
import { writeFileSync } from 'node:fs';

export interface UsageRecord {
  /** Microseconds, as process.resourceUsage() reports them. */
  userCPUTime: number;
  systemCPUTime: number;
  /** Kilobytes. */
  maxRSS: number;
  /** Peaks of process.memoryUsage() sampled every 200 ms, in bytes: where the RSS goes. */
  peakHeapTotal: number;
  peakHeapUsed: number;
  peakExternal: number;
  peakArrayBuffers: number;
  /** When the heapUsed and arrayBuffers peaks were seen, in ms since the process started. */
  peakHeapUsedAtMs: number;
  peakArrayBuffersAtMs: number;
  /** When the process exited, in ms since it started. */
  exitAtMs: number;
  exitCode: number;
}

const target = process.env.SWITCHYARD_USAGE_FILE;
if (target) {
  const peaks = { heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0, heapUsedAt: 0, arrayBuffersAt: 0 };
  const sample = () => {
    const m = process.memoryUsage();
    const now = performance.now();
    peaks.heapTotal = Math.max(peaks.heapTotal, m.heapTotal);
    if (m.heapUsed > peaks.heapUsed) [peaks.heapUsed, peaks.heapUsedAt] = [m.heapUsed, now];
    peaks.external = Math.max(peaks.external, m.external);
    if (m.arrayBuffers > peaks.arrayBuffers) [peaks.arrayBuffers, peaks.arrayBuffersAt] = [m.arrayBuffers, now];
  };
  setInterval(sample, 200).unref();
  process.on('exit', (code) => {
    sample();
    const usage = process.resourceUsage();
    const record: UsageRecord = {
      userCPUTime: usage.userCPUTime,
      systemCPUTime: usage.systemCPUTime,
      maxRSS: usage.maxRSS,
      peakHeapTotal: peaks.heapTotal,
      peakHeapUsed: peaks.heapUsed,
      peakExternal: peaks.external,
      peakArrayBuffers: peaks.arrayBuffers,
      peakHeapUsedAtMs: Math.round(peaks.heapUsedAt),
      peakArrayBuffersAtMs: Math.round(peaks.arrayBuffersAt),
      exitAtMs: Math.round(performance.now()),
      exitCode: code,
    };
    writeFileSync(target, `${JSON.stringify(record)}\n`);
  });
  // A benchmark's time limit stops the run with SIGTERM: exit through 'exit' so the figures are still written.
  process.once('SIGTERM', () => process.exit(143));
}
