/** What bench/lib/usage-probe.mjs writes for a measured process. */
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
