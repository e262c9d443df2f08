import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { runCli } from '../helpers/cli.ts';
import { tempDir, writePromptsCsv } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

const KEY = 'sk-canary-7f3a9c51d2';

/** Every value stored under a key prefix, as text: strings, hashes, lists, sets, sorted sets, streams. */
async function everythingStored(redis: ReturnType<typeof useSimulatorAndRedis>['redis'], prefix: string): Promise<string> {
  const parts: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
    cursor = next;
    for (const key of keys) {
      const type = await redis.type(key);
      if (type === 'string') parts.push((await redis.getBuffer(key))?.toString('latin1') ?? '');
      else if (type === 'hash') parts.push(JSON.stringify(await redis.hgetall(key)));
      else if (type === 'list') parts.push(JSON.stringify(await redis.lrange(key, 0, -1)));
      else if (type === 'set') parts.push(JSON.stringify(await redis.smembers(key)));
      else if (type === 'zset') parts.push(JSON.stringify(await redis.zrange(key, '0', '-1')));
      else if (type === 'stream') parts.push(JSON.stringify(await redis.xrange(key, '-', '+')));
    }
  } while (cursor !== '0');
  return parts.join('\n');
}

describe('API keys stay out of everything Switchyard writes', () => {
  const h = useSimulatorAndRedis('secrets', { api_key: KEY, latency_ms: 1, models: { flaky: { failure_rate: 0.3 } }, seed: 5 });

  it('is in no output file, log line (debug level), terminal line or Redis value, failed calls included', async () => {
    const dir = await tempDir('secrets');
    const config = join(dir, 'switchyard.yaml');
    await writeFile(
      config,
      stringify({
        providers: { sim: { base_url: h.sim.url, api_key_env: 'SIM_SECRET_KEY' } },
        models: { flaky: { provider: 'sim', price: { input_per_mtok: 1, output_per_mtok: 1 } } },
        default_model: 'flaky',
        retry: { max_attempts: 2, base_delay_ms: 5, max_delay_ms: 10 },
        breaker: { failure_threshold: 1000 },
      }),
    );
    const out = join(dir, 'out');
    const run = await runCli(['run', await writePromptsCsv(dir, 60), '--config', config, '--out', out, '--batch-id', 'secrets'], h.env({ SIM_SECRET_KEY: KEY, LOG_LEVEL: 'debug' }));
    expect(run.stdout).toContain('Rows     '); // it ran to the summary
    expect(h.sim.stats().by_status['500']).toBeGreaterThan(0); // and failed calls were logged and recorded
    expect(run.stdout + run.stderr).not.toContain(KEY);
    for (const name of await readdir(out)) expect(await readFile(join(out, name), 'latin1'), name).not.toContain(KEY);
    const stored = await everythingStored(h.redis, h.prefix);
    expect(stored).toContain('SIM_SECRET_KEY'); // the batch's config is there, naming the variable only
    expect(stored).not.toContain(KEY);
  });
});
