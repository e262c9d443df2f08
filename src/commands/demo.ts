import { join } from 'node:path';
import type { Logger } from 'pino';
import { exitCodeForSignal } from '../errors.ts';
import { packageRoot } from '../package-root.ts';
import { runBatch } from '../batch/run-batch.ts';

const EXAMPLE = join(packageRoot(), 'examples', 'prompts.csv');

/** `npm run demo`: the example batch on the built-in models and simulator, into out/demo. */
export async function runDemoCommand(logger: Logger, say: (line: string) => void): Promise<number> {
  const batchId = `demo-${Date.now().toString(36)}`;
  const outcome = await runBatch({ file: EXAMPLE, batchId, out: `out/${batchId}` }, logger, say);
  say('');
  const interrupted = outcome.exitCode === exitCodeForSignal('SIGINT') || outcome.exitCode === exitCodeForSignal('SIGTERM');
  say(interrupted ? `Demo stopped early. ${outcome.outDir}/report.md holds the rows it finished, if any.` : `Demo finished. Open ${outcome.outDir}/report.md for the report.`);
  return outcome.exitCode;
}
