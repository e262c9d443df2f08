/**
 * Runs the skeleton benchmarks in sequence: latency, throughput, memory (and, with --diagnose,
 * bench/where-time-goes.ts). Each runs as its own process with a time limit.
 *   --snapshot     measure the committed HEAD (extracted with `git archive` into bench/.tmp/),
 *                  not the working tree, e.g. while the tree is being edited.
 *   --limits       also the rate-limit benchmarks (issue 3): limits-rpm, limits-tpm, limits-overhead
 *                  (about 20 more minutes: the first two run at a provider's limit for 2-3.5 min a run).
 *   --limits-only  only those.
 *   --api          also bench/api-throughput.ts: a batch posted to `switchyard serve` against `run` (about 1 min).
 * Usage: node bench/run-all.ts [--snapshot] [--api] [--diagnose] [--limits | --limits-only]   (npm run bench -- --snapshot)
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { describeMachine } from './lib/machine.ts';
import { PRODUCT_ROOT, ROOT, TMP } from './lib/paths.ts';
import { selectRedis } from './lib/redis.ts';

const flags = new Set(process.argv.slice(2));

function snapshotHead(): string {
  const sha = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
  const dir = path.join(TMP, `snapshot-${sha.slice(0, 12)}`);
  if (!existsSync(path.join(dir, 'src', 'cli.ts'))) {
    mkdirSync(dir, { recursive: true });
    // node_modules is found by walking up from bench/.tmp/snapshot-*/ to the repository's own.
    execFileSync('sh', ['-c', `git archive --format=tar HEAD | tar -x -C '${dir}'`], { cwd: ROOT, stdio: 'inherit' });
  }
  // Measure the built command, as users run it.
  if (!existsSync(path.join(dir, 'dist', 'cli.js'))) {
    execFileSync(process.execPath, ['scripts/build.ts'], { cwd: dir, stdio: 'inherit' });
  }
  return dir;
}

const productRoot = flags.has('--snapshot') ? snapshotHead() : PRODUCT_ROOT;
const redis = await selectRedis();
for (const line of await describeMachine({ redisUrl: redis.url, productRoot, repoRoot: ROOT })) console.log(line);
await redis.stop();

const limitsOnly = flags.has('--limits-only');
const scripts: Array<{ file: string; limitMs: number }> = [
  ...(limitsOnly
    ? []
    : [
        { file: 'skeleton-latency.ts', limitMs: 15 * 60_000 },
        { file: 'skeleton-throughput.ts', limitMs: 15 * 60_000 },
        { file: 'skeleton-memory.ts', limitMs: 40 * 60_000 },
      ]),
  ...(flags.has('--api') && !limitsOnly ? [{ file: 'api-throughput.ts', limitMs: 10 * 60_000 }] : []),
  ...(flags.has('--diagnose') && !limitsOnly ? [{ file: 'where-time-goes.ts', limitMs: 20 * 60_000 }] : []),
  ...(flags.has('--limits') || limitsOnly
    ? [
        { file: 'limits-rpm.ts', limitMs: 15 * 60_000 },
        { file: 'limits-tpm.ts', limitMs: 25 * 60_000 },
        { file: 'limits-overhead.ts', limitMs: 10 * 60_000 },
      ]
    : []),
];

let failures = 0;
for (const { file, limitMs } of scripts) {
  console.log('');
  const started = performance.now();
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bench', file)], { cwd: ROOT, stdio: 'inherit', env: { ...process.env, BENCH_PRODUCT_ROOT: productRoot } });
    const timer = setTimeout(() => {
      console.log(`  ${file} ran past ${limitMs / 60_000} min: stopping it`);
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
    }, limitMs);
    child.once('close', (exitCode) => {
      clearTimeout(timer);
      resolve(exitCode);
    });
  });
  if (code !== 0) failures++;
  console.log(`  (${file}: ${((performance.now() - started) / 1000).toFixed(0)} s, exit ${code})`);
}
// Benchmarks report PASS/FAIL in their output; only a benchmark that could not run makes this exit non-zero.
process.exitCode = failures > 0 ? 1 : 0;
