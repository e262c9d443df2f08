import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** Error codes of a lost or refused connection (as opposed to a command that failed). */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

export function isConnectionError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return (code !== undefined && CONNECTION_CODES.has(code)) || (error instanceof Error && error.message === 'Connection is closed.');
}

/**
 * Tells a person once that Redis stopped answering, and once that it is back, instead of a JSON
 * error line from every connection at every reconnect attempt (ioredis retries forever, which is
 * right: the batch's state lives in Redis, and a restarted Redis carries on from its data).
 */
export function watchRedisOutages(options: { label: string; logger: Logger; say: (line: string) => void }) {
  let outage: { since: number } | null = null;

  function failed(source: string, error: unknown): void {
    if (!isConnectionError(error)) {
      options.logger.error({ err: error }, `${source} error`);
      return;
    }
    if (outage) {
      options.logger.debug({ err: error }, `${source} still cannot reach Redis`);
      return;
    }
    outage = { since: Date.now() };
    options.logger.error({ err: error }, `${source} lost Redis`);
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    options.say(`Redis at ${options.label} is not answering (${code}); waiting for it to come back: the batch's state lives there. Ctrl-C stops; running the same command again later goes on from where it stopped.`);
  }

  function answering(): void {
    if (!outage) return;
    options.say(`Redis is answering again after ${((Date.now() - outage.since) / 1000).toFixed(1)} s; going on.`);
    outage = null;
  }

  return {
    failed,
    /** Reports this connection's errors here, and its recovery. */
    watch(connection: Redis, source: string): void {
      connection.on('error', (error) => failed(source, error));
      connection.on('ready', answering);
    },
  };
}

export type RedisOutageWatch = ReturnType<typeof watchRedisOutages>;
