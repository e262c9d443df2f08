/**
 * The CLI the tests start (helpers/cli.ts): bundled by the global setup as `npm run build` bundles
 * it (rolldown.config.ts), into a folder of the test run's own. The tests start the CLI from some
 * 360 places (more often, in loops), and the bundle starts in about half the time src/cli.ts takes
 * (Node stripping the sources' types and loading the dependencies' module files one by one: a dry
 * run 0.9 s against 1.7 s on the 2-core VM); it is also what users run (package.json's bin).
 * SWITCHYARD_TEST_CLI=src runs src/cli.ts instead (no build: a stack trace then names the source lines).
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';
import config from '../../rolldown.config.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The CLI script tests start with `node`: the test run's bundle, or src/cli.ts. */
    cliPath: string;
  }
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SOURCE_CLI = join(ROOT, 'src', 'cli.ts');

export interface TestCli {
  path: string;
  bundled: boolean;
  /** Bundles the sources again (a rerun in watch mode, after they changed). */
  rebuild: () => Promise<void>;
  remove: () => Promise<void>;
}

export async function prepareTestCli(env: NodeJS.ProcessEnv = process.env): Promise<TestCli> {
  if (env.SWITCHYARD_TEST_CLI === 'src') return { path: SOURCE_CLI, bundled: false, rebuild: async () => undefined, remove: async () => undefined };
  // Under node_modules, where the bundle's one external package (gpt-tokenizer) resolves from, and
  // the package root (package-root.ts) is found above; one folder per run, as two runs may overlap.
  const parent = join(ROOT, 'node_modules', '.cache', 'switchyard-test-cli');
  await removeFoldersOfEndedRuns(parent);
  const dir = join(parent, `${process.pid}-${Date.now()}`);
  const bundle = async () => {
    await build({ ...config, output: { ...config.output, dir } });
  };
  await bundle();
  return { path: join(dir, 'cli.js'), bundled: true, rebuild: bundle, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** The folders of runs whose process is gone (stopped before their teardown): `<pid>-<time>`. */
async function removeFoldersOfEndedRuns(parent: string): Promise<void> {
  const names = await readdir(parent).catch(() => [] as string[]);
  for (const name of names) {
    const pid = Number(name.split('-')[0]);
    if (Number.isInteger(pid) && pid > 0 && !isRunning(pid)) await rm(join(parent, name), { recursive: true, force: true });
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
