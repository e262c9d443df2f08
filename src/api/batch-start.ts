import type { Logger } from 'pino';
import { runBatch, type ReplacedRows, type RunHost } from '../batch/run-batch.ts';
import { counted } from '../figure-text.ts';
import type { BatchLease } from '../queue/batch-lease.ts';
import { inApiTerms } from './api-terms.ts';
import type { BackgroundCollection } from './background-collection.ts';

export type BatchRun = Parameters<typeof runBatch>[0];

export interface BatchStarter {
  /**
   * Starts the producer on the batch's file (as `run --detach` does, but reading on only as workers
   * take rows, `queue.max_pending` ahead) and, once its first record is checked and the batch
   * saved, hands the batch to a background collector: 'collecting' then, while the rest of the file
   * is read; 'stopped' when the server stopped first. A file refused at once rejects, with nothing
   * queued; one that turns unreadable further on is recorded on the batch as its `input_error`.
   * `said` gets the run's messages.
   */
  start(batchId: string, lease: BatchLease, run: BatchRun, said: string[]): Promise<'collecting' | 'stopped'>;
  /** Resolves once no file is being read (the server stopping waits for the runs it started). */
  whenReadingsEnd(): Promise<void>;
  /**
   * Stops reading the batch's file, if it is still being read (a cancel): no more of its rows are
   * queued. Resolves once the reading has ended, its last chunk queued or not.
   */
  stopReading(batchId: string): Promise<void>;
}

export interface BatchStarterOptions {
  host: RunHost;
  collection: BackgroundCollection;
  logger: Logger;
  say: (line: string) => void;
  /** The set of batches submitted over the API whose outputs are not written yet. */
  openKey: string;
}

export function createBatchStarter({ host, collection, logger, say, openKey }: BatchStarterOptions): BatchStarter {
  const { store, redis } = host.session;
  // Files still being read after their POST was answered; the server waits for them as it stops.
  const readings = new Set<Promise<void>>();
  // Each reading's own stop, beside the server's (a cancelled batch's file is read no further), and its end.
  const readingStops = new Map<string, { stop: AbortController; ended: Promise<void> }>();

  /** The file turned unreadable part-way: the rows before stay queued or done; the batch waits for the fixed file. */
  async function readingFailed(batchId: string, error: unknown, inputPath: string): Promise<void> {
    const reason = error instanceof Error ? error.message.split('\n', 1)[0]! : String(error);
    const message = `${inApiTerms(reason, inputPath)}. Rows before it that were queued run on; post the fixed file with batch_id=${batchId} to finish the batch without repeating them.`;
    await redis.srem(openKey, batchId).catch(() => undefined);
    // Its collector lets go first: a client that sees the error may post the fixed file at once.
    await collection.abandon(batchId);
    await store.update(batchId, { input_error: message }).catch(() => undefined);
    say(`[${batchId}] Reading its file stopped: ${message}`);
  }

  return {
    async start(batchId, lease, run, said) {
      const queuing = Promise.withResolvers<null>();
      const readingStop = new AbortController();
      const stop = AbortSignal.any([host.stop, readingStop.signal]);
      // Kept before the batch's row count is saved (RunHost.onFileRead): a client that sees it finished finds them in its view.
      const onFileRead = async (replaced: ReplacedRows) => {
        // A batch a restarted server reads on names its file only in its state.
        const inputPath = run.file ?? (await store.load(batchId).catch(() => null))?.input ?? '';
        const replacedNote = replacedRowsNote(batchId, replaced);
        const notes = [...(replacedNote ? [replacedNote] : []), ...notesOnceRead(said).map((note) => inApiTerms(note, inputPath))];
        sayFileRead(batchId, said, notes, say);
        if (notes.length > 0) await store.update(batchId, { file_notes: notes }).catch(() => undefined);
      };
      const reading = runBatch({ ...run, batchId, detach: true }, logger, (line) => said.push(line), { ...host, stop, onQueuing: () => queuing.resolve(null), onFileRead });
      const entry = { stop: readingStop, ended: reading.then(() => undefined, () => undefined) };
      readingStops.set(batchId, entry);
      void entry.ended.then(() => {
        if (readingStops.get(batchId) === entry) readingStops.delete(batchId);
      });
      reading.catch(() => undefined); // observed below, whichever settles first
      const early = await Promise.race([queuing.promise, reading]);
      if (early !== null) return 'stopped'; // the server stopped before a row was queued
      await redis.sadd(openKey, batchId);
      const meta = await store.load(batchId);
      if (!meta) throw new Error(`batch ${batchId} has no state in Redis after its run started`);
      collection.start(batchId, lease, { outDir: meta.out_dir, startedAt: new Date(meta.started_at ?? meta.created_at), config: host.config.config });
      const inputPath = run.file ?? meta.input;
      // Read to its end, its notes are kept already (onFileRead); stopped with the server, the next one reads on.
      const done = reading.then(
        () => undefined,
        (error: unknown) => readingFailed(batchId, error, inputPath),
      );
      readings.add(done);
      void done.finally(() => readings.delete(done));
      return 'collecting';
    },

    async whenReadingsEnd() {
      await Promise.all(readings);
    },

    stopReading(batchId) {
      const entry = readingStops.get(batchId);
      entry?.stop.abort();
      return entry?.ended ?? Promise.resolve();
    },
  };
}

/**
 * A post whose file replaced rows of the batch's last one: said in file_notes, where the client reads, since a
 * batch_id another client used already (another team's "nightly", say) runs as that batch again, and its
 * POST answer said only that succeeded rows are kept (QA: a team's results were replaced by another's).
 */
function replacedRowsNote(batchId: string, { changedSinceSucceeded: changed, goneFromFile: gone }: ReplacedRows): string | null {
  if (changed === 0 && gone === 0) return null;
  const parts = [
    ...(changed > 0 ? [`${counted(changed, 'changed row')} ${changed === 1 ? 'runs' : 'run'} again (${changed === 1 ? 'its earlier answer' : 'their earlier answers'} dropped)`] : []),
    ...(gone > 0 ? [`${counted(gone, 'row')} no longer in the file ${gone === 1 ? 'is' : 'are'} left out (${gone === 1 ? 'its calls stay' : 'their calls stay'} in costs.jsonl and the report)`] : []),
  ];
  // A batch_id is one namespace for every client of the server: say it, since the post may have meant a new batch.
  return `Note: this file replaced rows of batch ${batchId}'s last one: ${parts.join('; ')}. Not meant? Post under a batch_id of your own (posting the earlier file again brings its unchanged rows back with their answers).`;
}


/** The run's count of rows read, and the notes it said then, in the server's log. */
function sayFileRead(batchId: string, said: string[], notes: readonly string[], say: (line: string) => void): void {
  // Up to its "; N queued" part (of the run's workers): a ';' before it may be inside a parenthesis (rows no longer in the file).
  const read = said.find((line) => line.startsWith('Read '))?.replace(/; [\d,]+ queued\b[\s\S]*$/, '');
  if (read) say(`[${batchId}] ${read}.`);
  for (const note of notes) say(`[${batchId}] ${note}`);
}

/** The notes and warnings the run said after its Read line: those only the whole file shows (run-batch.ts). */
function notesOnceRead(said: readonly string[]): string[] {
  const read = said.findIndex((line) => line.startsWith('Read '));
  return read === -1 ? [] : said.slice(read + 1).filter((line) => /^(Note|Warning|Comparison)\b/.test(line));
}
