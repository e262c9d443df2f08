/**
 * Preloaded with `node --import ./bench/lib/usage-probe.mjs ...`: when the process exits (also via
 * process.exit(), or SIGTERM from a benchmark's time limit), writes its own CPU time and peak RSS
 * as JSON (a UsageRecord, see usage-record.ts) to $SWITCHYARD_USAGE_FILE.
 *
 * Plain JavaScript on purpose: a .ts probe makes Node load its type stripper into the measured
 * process, which alone added 18 MB to the peak RSS of every run.
 */
import { writeFileSync } from 'node:fs';

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
    const record = {
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
