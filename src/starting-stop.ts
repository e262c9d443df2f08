import { stopEarly } from './early-stop.ts';
import { writeLines } from './progress/terminal-lines.ts';

/**
 * Imported by cli.ts right after the Node.js version check: a Ctrl-C or SIGTERM while the CLI's
 * own modules load (commander, pino: 10-20 ms) was not listened for, and ended the process by the
 * signal, saying nothing. Caught now, it is answered once that synchronous start is over, by the
 * command's early stop (early-stop.ts) with what it left; a command without one (status, forget,
 * sim) ends by the signal as before (cli.ts ends this one before its action). Earlier than this,
 * Node itself is starting (about 40-200 ms, longer on a loaded machine): no code of ours runs, and
 * the signal ends the process as it always did (a shell still shows 130 or 143).
 */
stopEarly((line) => writeLines(process.stdout, `${line}\n`), 'before the command started: nothing was done.');
