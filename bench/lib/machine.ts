import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { Redis } from 'ioredis';

function quiet(command: string, args: string[], cwd?: string): string {
  try {
    return execFileSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 }).trim();
  } catch {
    return '?';
  }
}

async function redisVersion(url: string): Promise<string> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? '?';
  } catch {
    return '?';
  } finally {
    redis.disconnect();
  }
}

/** Lines describing the machine and the code under test, for the top of a benchmark printout. */
export async function describeMachine(options: { redisUrl: string; productRoot: string; repoRoot: string }): Promise<string[]> {
  const cpus = os.cpus();
  const load = os.loadavg().map((value) => value.toFixed(2)).join(' ');
  const commit = quiet('git', ['rev-parse', '--short', 'HEAD'], options.repoRoot);
  const dirty = quiet('git', ['status', '--porcelain', '--', 'src', 'jobs', 'workers', 'package.json'], options.repoRoot);
  const code = options.productRoot === options.repoRoot ? `working tree at ${commit}${dirty && dirty !== '?' ? ' (with uncommitted changes in src/jobs/workers)' : ''}` : `snapshot ${options.productRoot}`;
  return [
    `date        ${new Date().toISOString()}`,
    `machine     ${os.type()} ${os.release()} ${os.arch()}, ${quiet('nproc', [])} CPUs (${cpus[0]?.model ?? '?'}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, load ${load}`,
    `node        ${process.version}`,
    `redis       server ${await redisVersion(options.redisUrl)} at ${options.redisUrl}; redis-server binary ${/v=(\S+)/.exec(quiet('redis-server', ['--version']))?.[1] ?? '?'}`,
    `code        ${code}`,
  ];
}
