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
  exitCode: number;
}

const target = process.env.SWITCHYARD_USAGE_FILE;
if (target) {
  process.on('exit', (code) => {
    const usage = process.resourceUsage();
    const record: UsageRecord = { userCPUTime: usage.userCPUTime, systemCPUTime: usage.systemCPUTime, maxRSS: usage.maxRSS, exitCode: code };
    writeFileSync(target, `${JSON.stringify(record)}\n`);
  });
  // A benchmark's time limit stops the run with SIGTERM: exit through 'exit' so the figures are still written.
  process.once('SIGTERM', () => process.exit(143));
}
