import { exitCodeForSignal } from './errors.ts';

/**
 * Ctrl-C or SIGTERM while `run`, `worker`, `collect` or `serve` starts (its modules load, Redis
 * connects, the file's first record is read), before the command's own stop handling is installed:
 * the command ends at once, saying what that left, with 130 (143). Node's default ended the process
 * by the signal, saying nothing. Listened for from the CLI's first line of code (starting-stop.ts),
 * each command then says what the stop would leave as it goes (`stopEarly`, `saysWhenStopped`), and
 * hands over to its own handling (`endEarlyStop`) in the same tick as it installs it.
 */
let state: { say: (line: string) => void; text: string; holding: number; pending: NodeJS.Signals | null; waitingFor: string; atQuit: Array<() => void> } | null = null;

/**
 * Whether onSignal is among the process's signal listeners. Once on, it stays on while anything
 * else listens: taking a signal's last listener off closes Node's handle for it, which drops a
 * signal caught while the current tick runs (its delivery waits for the event loop), so a Ctrl-C
 * landing just before a command's own handling took over (installed in the same tick) was lost.
 */
let listening = false;

const onSignal = (signal: NodeJS.Signals): void => {
  if (!state) {
    // The command's own handling has it; with none, it ends the process as it would have without this listener.
    if (process.listenerCount(signal) > 1) return;
    stopListening();
    process.kill(process.pid, signal);
    return;
  }
  // A step that must not be cut in two (the batch's folder claimed, then the batch saved) ends first;
  // a second signal does not wait for it (it may be waiting for a Redis that went away). Said at
  // once: the step may wait on Redis, and a signal that seems ignored is sent again (review).
  if (state.holding > 0 && state.pending === null) {
    state.pending = signal;
    state.say(`\nInterrupted${signal === 'SIGTERM' ? ' (SIGTERM)' : ''} ${state.waitingFor}: the command stops once it is (a second Ctrl-C or SIGTERM quits at once).`);
    return;
  }
  quit(signal);
};

function quit(signal: NodeJS.Signals): never {
  const { say, text, pending } = state!;
  const named = signal === 'SIGTERM' ? ' (SIGTERM)' : '';
  // After the line that said the first signal waits: what it left, or what a second one leaves.
  const said = pending === null ? `\nInterrupted${named} ${text}` : pending === signal && state!.holding === 0 ? `Stopped ${text}` : `Quit${named} ${text}`;
  say(said);
  for (const hook of state!.atQuit) {
    try {
      hook();
    } catch {
      // what it gives back is only spared a wait; the process ends all the same
    }
  }
  process.exit(exitCodeForSignal(signal));
}

/** Listens for an early Ctrl-C or SIGTERM; `text` follows "Interrupted" in what it says. */
export function stopEarly(say: (line: string) => void, text: string): void {
  if (state) return;
  state = { say, text, holding: 0, pending: null, waitingFor: '', atQuit: [] };
  if (listening) return;
  listening = true;
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function stopListening(): void {
  listening = false;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}

/**
 * Called, synchronously, as an early stop quits: what the command holds that the next one would
 * otherwise wait out (the batch's lease). Nothing when no early stop is listened for (a server's runs).
 */
export function atEarlyQuit(hook: () => void): void {
  state?.atQuit.push(hook);
}

/** What an early stop says from now on (nothing when none is listened for: a server's runs). */
export function saysWhenStopped(text: string): void {
  if (state) state.text = text;
}

/**
 * Runs `work` with an early signal waiting for it to end; `waitingFor` is what a first signal then
 * says it waits for ("while batch X is being saved"), `after` what the stop says once it ended, and
 * `during` what a second signal says, which quits before it ends.
 */
export async function holdingEarlyStop<T>(work: () => Promise<T>, texts: { waitingFor: string; during: string; after: string }): Promise<T> {
  if (!state) return work();
  const before = state.text;
  state.holding += 1;
  state.text = texts.during;
  state.waitingFor = texts.waitingFor;
  try {
    const done = await work();
    if (state) state.text = texts.after;
    return done;
  } catch (error) {
    if (state) {
      state.text = before;
      // A first signal waited for a step that failed: the command stops on its failure, said as any
      // failure is (quitting here said "Stopped <what it left before>" and hid why, review2).
      if (state.holding === 1) state.pending = null;
    }
    throw error;
  } finally {
    if (state) {
      state.holding -= 1;
      if (state.holding === 0 && state.pending) quit(state.pending);
    }
  }
}

/**
 * The command's own stop handling takes over (or, for a command without any, the signals' default:
 * the process ends by the signal). The listener stays on, passing signals on (see `listening`).
 */
export function endEarlyStop(): void {
  state = null;
}
