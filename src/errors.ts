/** A mistake in how Switchyard was called or configured: the CLI prints the message and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A problem with the environment (Redis unreachable, file unreadable) that stops a run before it starts. */
export class SetupError extends Error {
  override name = 'SetupError';
}

/**
 * Redis trouble that stopped the run of a saved batch: what goes on from there is its resume (the
 * same command again would start another batch when it was not given --batch-id).
 */
export class RedisStoppedRunError extends Error {
  override name = 'RedisStoppedRunError';
  readonly batchId: string;
  override readonly cause: Error;
  constructor(batchId: string, cause: Error) {
    super(cause.message);
    this.batchId = batchId;
    this.cause = cause;
  }
}

/**
 * What to tell a person when Redis, not Switchyard, stopped a command: it refused a command
 * (MISCONF: cannot save; OOM: maxmemory; READONLY: a replica), or a command gave up waiting for it
 * (our connections wait for as long as it takes, the session deciding when to stop: only a client
 * set up otherwise gets there). ioredis's errors are told by name, so that the CLI does not load
 * ioredis to check them (the bundler may suffix a class name, hence the prefix match). Null for any
 * other error.
 */
export function describeRedisTrouble(error: unknown): string | null {
  if (error instanceof RedisStoppedRunError) return describeTrouble(error.cause, `run \`switchyard run --resume ${error.batchId}\`: it goes on from where it stopped.`);
  return describeTrouble(error, 'run the same command again: it goes on from where it stopped.');
}

function describeTrouble(error: unknown, again: string): string | null {
  if (!(error instanceof Error)) return null;
  if (/^ReplyError/.test(error.name)) {
    return `Redis refused a command: ${error.message.split('\n', 1)[0]}\nCheck the Redis server (its log, free disk, maxmemory, that it is not a read-only replica), then ${again}`;
  }
  if (/^MaxRetriesPerRequestError/.test(error.name)) return `Redis did not answer for too long.\nOnce it is back, ${again}`;
  return null;
}

/** A file system error code in words a person acts on; the outputs folder's checks add their own. */
export const FILE_TROUBLE: Readonly<Record<string, string>> = {
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is used up',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EROFS: 'the file system is read-only',
  EIO: 'the disk reported an I/O error',
};

/** What to tell a person when a file system error (disk full, permissions) stopped a command mid-way; null otherwise. */
export function describeFileTrouble(error: unknown): string | null {
  const { code, path, syscall } = error as NodeJS.ErrnoException;
  const reason = code === undefined ? undefined : FILE_TROUBLE[code];
  if (!(error instanceof Error) || !reason) return null;
  // Writes through an open file handle carry no path; the outputs folder is then the likely one.
  const what = path ? `cannot use ${path}` : `a file ${syscall ?? 'operation'} failed (in the outputs folder, most likely)`;
  return `${what}: ${reason} [${code}]. Fix that, then run the same command again: it goes on from where it stopped.`;
}

/** The exit code of a command stopped by a signal, after it finished the rows in hand: 128 + the signal's number (Ctrl-C 130, SIGTERM 143). */
export function exitCodeForSignal(signal: NodeJS.Signals | null): number {
  return signal === 'SIGTERM' ? 143 : 130;
}
