import { formatExposition, type MetricFamily } from '../metrics/exposition.ts';
import { processCallMetrics, type ProcessCallMetrics } from '../metrics/process-calls.ts';
import { readBatchMetrics, type BatchMetricsSource } from './batch-metrics.ts';

/**
 * How long a scrape waits for Redis: Prometheus' own scrape_timeout is 10 s by default, and a page
 * that says Redis is not answering (switchyard_redis_up 0) is worth more than none.
 */
const REDIS_READ_DEADLINE_MS = 5_000;

const STARTED_AT_S = Date.now() / 1000 - process.uptime();

export interface MetricsPageOptions extends BatchMetricsSource {
  /** Why Redis cannot be read now (redis-health.ts), or null. */
  unavailable: () => string | null;
  /** Told why a scrape's read failed (a refused command, say; or a bug here, which the server's log must show rather than a silent 0). */
  readFailed: (error: unknown) => void;
  calls?: ProcessCallMetrics;
  deadlineMs?: number;
}

/**
 * The /metrics page, as a function a server calls per scrape: this process's figures, then those
 * read from Redis. Redis away (or too slow) leaves its figures out and says so in
 * switchyard_redis_up, rather than failing the scrape: the process's own figures still come.
 * Scrapes that come while a read is under way share it (two Prometheus servers scraping together,
 * or scrapes every few seconds while Redis hangs): reads do not pile up behind a frozen Redis.
 */
export function createMetricsPage(options: MetricsPageOptions): () => Promise<string> {
  let reading: Promise<MetricFamily[] | null> | null = null;
  const readOnce = () =>
    (reading ??= readBatchMetrics(options)
      .catch((error: unknown) => {
        options.readFailed(error);
        return null;
      })
      .finally(() => (reading = null)));
  return () => metricsPage(options, readOnce);
}

async function metricsPage(options: MetricsPageOptions, readOnce: () => Promise<MetricFamily[] | null>): Promise<string> {
  const started = performance.now();
  let fromRedis: MetricFamily[] = [];
  let redisUp = 0;
  if (options.unavailable() === null) {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), options.deadlineMs ?? REDIS_READ_DEADLINE_MS)));
    const read = await Promise.race([readOnce(), late]).finally(() => clearTimeout(timer));
    if (read) [fromRedis, redisUp] = [read, 1];
  }
  // To the microsecond: the clock's further digits are noise.
  const readSeconds = Math.round((performance.now() - started) * 1000) / 1e6;
  return formatExposition([
    { name: 'process_start_time_seconds', type: 'gauge', help: 'When this process started (Unix time, seconds).', samples: [{ value: Math.round(STARTED_AT_S) }] },
    // The standard names (Prometheus' client libraries use them): a dashboard's memory panel works as it is.
    { name: 'process_resident_memory_bytes', type: 'gauge', help: "This process's resident memory, in bytes.", samples: [{ value: process.memoryUsage.rss() }] },
    { name: 'nodejs_heap_size_used_bytes', type: 'gauge', help: "This process's V8 heap in use, in bytes.", samples: [{ value: process.memoryUsage().heapUsed }] },
    ...(options.calls ?? processCallMetrics).families(),
    { name: 'switchyard_redis_up', type: 'gauge', help: "1 when this scrape read the batches' figures from Redis; 0 when Redis was away or did not answer in time (they are left out).", samples: [{ value: redisUp }] },
    { name: 'switchyard_metrics_redis_read_seconds', type: 'gauge', help: "How long this scrape's reads from Redis took, in seconds.", samples: [{ value: readSeconds }] },
    ...fromRedis,
  ]);
}
