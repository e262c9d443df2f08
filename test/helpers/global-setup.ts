/**
 * Vitest global setup: finds a Redis for the whole run and provides its URL as `redisUrl`
 * (tests read it with `inject('redisUrl')`, or `testRedisUrl()` from ./redis.ts), and bundles the
 * CLI the tests start, provided as `cliPath` (./test-cli.ts; bundled again on a watch-mode rerun).
 * Order: REDIS_URL when set; else a throwaway redis:7-alpine container through testcontainers
 * where Docker answers; else a private redis-server on a free port in a temp dir.
 * Whatever it starts, it stops at teardown; it never flushes a Redis it did not start.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { pingRedis, redactUrl } from '../../src/queue/redis-connection.ts';
import { findRedisServerBinary, startRedisServer } from '../../src/queue/redis-server-process.ts';
import type {} from './redis.ts'; // the ProvidedContext declaration
import { prepareTestCli } from './test-cli.ts';

interface TestRedis {
  url: string;
  description: string;
  stop: () => Promise<void>;
}

// Without Docker, testcontainers fails in milliseconds; this only bounds a Docker that hangs or a slow pull.
const CONTAINER_TIMEOUT_MS = 30_000;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const redis = await provideRedis();
  project.provide('redisUrl', redis.url);
  console.log(`[switchyard tests] Redis: ${redis.description}`);
  try {
    const started = performance.now();
    const cli = await prepareTestCli();
    console.log(`[switchyard tests] CLI: ${cli.bundled ? `bundled in ${((performance.now() - started) / 1000).toFixed(1)} s` : cli.path} (SWITCHYARD_TEST_CLI=src: src/cli.ts)`);
    project.provide('cliPath', cli.path);
    project.onTestsRerun(cli.rebuild);
    return async () => {
      await cli.remove();
      await redis.stop();
    };
  } catch (error) {
    await redis.stop();
    throw error;
  }
}

async function provideRedis(): Promise<TestRedis> {
  const fromEnv = process.env.REDIS_URL?.trim();
  if (fromEnv) {
    if (!(await pingRedis(fromEnv, 3000))) throw new Error(`REDIS_URL=${redactUrl(fromEnv)} does not answer PING`);
    return { url: fromEnv, description: `REDIS_URL ${redactUrl(fromEnv)}`, stop: async () => undefined };
  }
  const notes: string[] = [];
  const container = await startContainer().catch((error: unknown) => {
    notes.push(`no container (${firstLine(error)})`);
    return null;
  });
  if (container !== null) return container;
  const server = await startPrivateServer();
  if (server !== null) return { ...server, description: `${server.description}; ${notes.join('; ')}` };
  throw new Error(
    `Tests need Redis and found none: REDIS_URL is not set, ${notes.join('; ')}, and redis-server is not on PATH. ` +
      'Set REDIS_URL, start Docker, or install redis-server (apt-get install redis-server / brew install redis).',
  );
}

/** A redis:7-alpine container; fails at once without Docker, and gives up after a bounded time. */
async function startContainer(): Promise<TestRedis> {
  const { GenericContainer } = await import('testcontainers');
  const starting = new GenericContainer('redis:7-alpine').withExposedPorts(6379).start();
  let gaveUp = false;
  // A container that comes up after the timeout is stopped rather than left running.
  starting
    .then(async (late) => {
      if (gaveUp) await late.stop();
    })
    .catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      gaveUp = true;
      reject(new Error(`container not up within ${CONTAINER_TIMEOUT_MS} ms`));
    }, CONTAINER_TIMEOUT_MS);
  });
  try {
    const started = await Promise.race([starting, timeout]);
    const url = `redis://${started.getHost()}:${started.getMappedPort(6379)}`;
    return { url, description: `testcontainers redis:7-alpine at ${url}`, stop: async () => void (await started.stop()) };
  } finally {
    clearTimeout(timer);
  }
}

async function startPrivateServer(): Promise<TestRedis | null> {
  if (findRedisServerBinary() === null) return null;
  const dir = mkdtempSync(path.join(tmpdir(), 'switchyard-test-redis-'));
  try {
    const server = await startRedisServer({ port: 0, dir, persist: false });
    const stop = async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    };
    return { url: server.url, description: `private redis-server at ${server.url} (no persistence)`, stop };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? '';
}
