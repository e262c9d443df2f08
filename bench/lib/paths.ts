import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root and bench/.tmp (gitignored), where benchmarks keep their inputs and outputs. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const TMP = path.join(ROOT, 'bench', '.tmp');
/**
 * The product under test: this working tree, or a snapshot named by $BENCH_PRODUCT_ROOT (see
 * `node bench/run-all.ts --snapshot`, which measures the committed HEAD while the tree is being edited).
 */
export const PRODUCT_ROOT = process.env.BENCH_PRODUCT_ROOT ? path.resolve(process.env.BENCH_PRODUCT_ROOT) : ROOT;
/**
 * The command a user runs: the built dist/cli.js (`npm install` / `npm run build` make it),
 * else the sources, with the node flags its shebang names, so the benchmark measures what ships.
 */
const BUILT_CLI = path.join(PRODUCT_ROOT, 'dist', 'cli.js');
export const CLI = existsSync(BUILT_CLI) ? BUILT_CLI : path.join(PRODUCT_ROOT, 'src', 'cli.ts');
export const CLI_NODE_FLAGS = shebangNodeFlags(CLI);

function shebangNodeFlags(file: string): string[] {
  const first = readFileSync(file, 'utf8').split('\n', 1)[0] ?? '';
  const match = /^#!.*\bnode\b(.*)$/.exec(first);
  return match ? (match[1] ?? '').trim().split(/\s+/).filter(Boolean) : [];
}
export const USAGE_PROBE = path.join(ROOT, 'bench', 'lib', 'usage-probe.mjs');

/** A fresh folder under bench/.tmp for one benchmark run. */
export function tmpDir(name: string): string {
  const dir = path.join(TMP, `${name}-${process.pid}-${Date.now().toString(36)}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}
