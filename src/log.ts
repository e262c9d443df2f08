import pino, { type Logger } from 'pino';
import { writeLines } from './progress/terminal-lines.ts';

/**
 * Structured logs go to stderr, so stdout stays for the summary (they are few: the default level is warn). API keys never reach a log line:
 * anything that looks like a key or an auth header is redacted wherever it is nested.
 */
export function createLogger(level = process.env.LOG_LEVEL ?? 'warn'): Logger {
  return pino(
    {
      level,
      base: undefined,
      redact: {
        paths: ['apiKey', '*.apiKey', 'api_key', '*.api_key', 'authorization', '*.authorization', 'headers.authorization', '*.headers.authorization', 'config.providers.*.api_key'],
        censor: '[redacted]',
      },
    },
    // Through writeLines, so a warning printed while run's progress bar is up lands above the bar.
    { write: (line: string) => writeLines(process.stderr, line) },
  );
}
