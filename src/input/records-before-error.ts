import type { Readable } from 'node:stream';

/**
 * The records of an object stream, then its error, if any. A stream's own async iterator throws as
 * soon as the stream fails, dropping the records it had parsed but not yet handed over: csv-parse
 * fails at an unclosed quote only at the end of the file, so every row it held back (up to its
 * buffer's worth) went unrun. read() still gives them after the failure.
 */
export async function* recordsBeforeError<T>(stream: Readable): AsyncGenerator<T> {
  let failure: { error: unknown } | null = null;
  let ended = false;
  let wake: (() => void) | null = null;
  const awaken = () => {
    wake?.();
    wake = null;
  };
  const onError = (error: unknown) => {
    failure = { error };
    awaken();
  };
  const onEnd = () => {
    ended = true;
    awaken();
  };
  stream.on('readable', awaken);
  stream.on('error', onError);
  stream.on('end', onEnd);
  stream.on('close', onEnd);
  try {
    while (true) {
      const record = stream.read() as T | null;
      if (record !== null) {
        yield record;
        continue;
      }
      if (failure) throw (failure as { error: unknown }).error;
      if (ended) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    stream.off('readable', awaken);
    stream.off('error', onError);
    stream.off('end', onEnd);
    stream.off('close', onEnd);
  }
}
