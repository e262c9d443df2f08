import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { endEarlyStop, holdingEarlyStop, stopEarly } from '../../src/early-stop.ts';

/** As the process delivers a signal: its listeners get its name. */
const signal = (name: NodeJS.Signals) => (process.emit as (event: string, ...args: unknown[]) => boolean)(name, name);

/** An early stop listened for, process.exit stubbed, and what it says kept. */
function listening() {
  const exit = vi.spyOn(process, 'exit').mockImplementation((() => undefined) as never);
  const said: string[] = [];
  stopEarly((line) => said.push(line), 'before anything was queued: nothing to resume.');
  return { exit, said };
}

/** The same, inside a held save that ends when `saved` settles. */
function duringSave() {
  const listened = listening();
  const saved = Promise.withResolvers<void>();
  const holding = holdingEarlyStop(() => saved.promise, { waitingFor: 'while batch b is being saved', during: 'while batch b was being saved: x.', after: 'before any row was queued: batch b is saved.' });
  return { ...listened, saved, holding };
}

describe('a signal while the command starts (early-stop.ts)', () => {
  afterEach(() => {
    endEarlyStop();
    vi.restoreAllMocks();
  });

  it('says at once that it stops once the batch is saved, when the save holds it up (review: nothing was said while Redis held the save)', async () => {
    const { exit, said, saved, holding } = duringSave();
    signal('SIGINT');
    expect(said).toEqual(['\nInterrupted while batch b is being saved: the command stops once it is (a second Ctrl-C or SIGTERM quits at once).']);
    expect(exit).not.toHaveBeenCalled();
    saved.resolve();
    await holding;
    expect(said.at(-1)).toBe('Stopped before any row was queued: batch b is saved.');
    expect(exit).toHaveBeenCalledWith(130);
  });

  it('a second signal while the save holds it up quits at once, saying the batch may be saved', async () => {
    const { exit, said, saved, holding } = duringSave();
    signal('SIGINT');
    signal('SIGTERM');
    expect(said.at(-1)).toBe('Quit (SIGTERM) while batch b was being saved: x.');
    expect(exit).toHaveBeenCalledWith(143);
    saved.resolve();
    await holding.catch(() => undefined);
  });

  it('a signal outside the save quits at once with one line', () => {
    const { exit, said } = listening();
    signal('SIGTERM');
    expect(said).toEqual(['\nInterrupted (SIGTERM) before anything was queued: nothing to resume.']);
    expect(exit).toHaveBeenCalledWith(143);
  });

  it('a step that fails after a first signal ends the command on its failure, not with a stop that hides it (review2)', async () => {
    const { exit, said, saved, holding } = duringSave();
    signal('SIGTERM');
    saved.reject(new Error('out/ is batch a\'s, which did not finish'));
    await expect(holding).rejects.toThrow("batch a's");
    expect(said).toHaveLength(1);
    expect(exit).not.toHaveBeenCalled();
  });
});

/** Runs `body` in a node process of its own after importing early-stop.ts (real signals, which a test's process must not get). */
function inOwnProcess(body: string) {
  const script = `import { endEarlyStop, stopEarly } from ${JSON.stringify(new URL('../../src/early-stop.ts', import.meta.url).href)};\n${body}`;
  const busy = (ms: number) => `{ const until = Date.now() + ${ms}; while (Date.now() < until); }`;
  return spawnSync(process.execPath, ['--input-type=module', '-e', script.replaceAll('BUSY', busy(50))], { encoding: 'utf8', timeout: 10_000 });
}

describe('the early stop handing over to the command\'s own handling', () => {
  it('a signal caught in the tick the command takes over reaches its handling (QA: taking the last listener off dropped it: the Ctrl-C was lost)', () => {
    const ran = inOwnProcess(`
      stopEarly((line) => console.log(line), 'before anything was queued.');
      process.kill(process.pid, 'SIGINT');
      BUSY // caught by Node, not yet delivered
      endEarlyStop();
      process.on('SIGINT', () => { console.log('own handling'); process.exit(0); });
      setTimeout(() => { console.log('lost'); process.exit(3); }, 1000);
    `);
    expect(ran.stdout).toBe('own handling\n');
    expect(ran.status).toBe(0);
  });

  it('with no handling of the command\'s own, a signal ends the process as it would have, saying nothing', () => {
    const ran = inOwnProcess(`
      stopEarly((line) => console.log(line), 'before anything was queued.');
      endEarlyStop();
      process.kill(process.pid, 'SIGTERM');
      BUSY
      setTimeout(() => { console.log('lived on'); process.exit(3); }, 1000);
    `);
    expect(ran.signal).toBe('SIGTERM');
    expect(ran.stdout).toBe('');
  });
});
