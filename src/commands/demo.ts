import { join } from 'node:path';
import type { Logger } from 'pino';
import { exitCodeForSignal } from '../errors.ts';
import { packageRoot } from '../package-root.ts';
import { runBatch } from '../batch/run-batch.ts';

const EXAMPLE = join(packageRoot(), 'examples', 'prompts.csv');

const NEXT_STEP = 'Next: your own prompts the same way, `npx switchyard run <file.csv or .jsonl>` (a "prompt" column or field is all it needs); README.md "Use it" shows a config for your own provider.';

/** `npm run demo`: the example batch on the built-in models and simulator, into out/demo. */
export async function runDemoCommand(logger: Logger, say: (line: string) => void): Promise<number> {
  const batchId = `demo-${Date.now().toString(36)}`;
  const outcome = await runBatch({ file: EXAMPLE, batchId, out: `out/${batchId}` }, logger, say);
  say('');
  const interrupted = outcome.exitCode === exitCodeForSignal('SIGINT') || outcome.exitCode === exitCodeForSignal('SIGTERM');
  if (interrupted) {
    say(`Demo stopped early. ${outcome.outDir}/report.md holds the rows it finished, if any.`);
    return outcome.exitCode;
  }
  say(`Demo finished. Open ${outcome.outDir}/report.md for the report.`);
  // The one step a newcomer looks for after the demo (QA: the demo pointed at its report and nothing else).
  say(NEXT_STEP);
  return outcome.exitCode;
}
