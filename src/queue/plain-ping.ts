import { createConnection } from 'node:net';

/** What a server said to a plain-text PING: a Redis reply, something else, or nothing at all. */
export type PlainPing =
  | { kind: 'redis'; reply: string }
  | { kind: 'other'; firstLine: string }
  /** It took the connection, then closed it or stayed silent. */
  | { kind: 'silent'; detail: string }
  /** Nothing took the connection. */
  | { kind: 'refused'; detail: string };

/**
 * Sends one inline PING over plain TCP and reads the first line back, to tell what is at a Redis
 * URL that did not answer ioredis. One small request is read whole, so a server that is not Redis
 * (a web server, say) answers it and closes cleanly; ioredis' handshake sends several commands at
 * once, and a server that reads only the first and closes resets the connection, which drops its
 * answer on the way (most of the time an HTTP server on the port was "unreachable").
 */
export function plainPing(host: string, port: number, timeoutMs: number): Promise<PlainPing> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    let received = '';
    let connected = false;
    const finish = (result: PlainPing) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const answer = (): PlainPing | null => {
      const end = received.indexOf('\n');
      if (end === -1 && received.length < 256) return null;
      const line = (end === -1 ? received : received.slice(0, end)).replace(/\r$/, '');
      return /^[+-]/.test(line) ? { kind: 'redis', reply: line } : { kind: 'other', firstLine: printable(line) };
    };
    const timer = setTimeout(() => finish(received ? { kind: 'other', firstLine: printable(received) } : { kind: 'silent', detail: `no answer within ${timeoutMs} ms` }), timeoutMs);
    socket.on('connect', () => {
      connected = true;
      socket.write('PING\r\n');
    });
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      const result = answer();
      if (result) finish(result);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (received) return finish({ kind: 'other', firstLine: printable(received) });
      finish(connected ? { kind: 'silent', detail: error.message } : { kind: 'refused', detail: error.message });
    });
    socket.on('close', () => finish(received ? (answer() ?? { kind: 'other', firstLine: printable(received) }) : { kind: 'silent', detail: 'it closed the connection without a word' }));
  });
}

/** A line as a person may read it: at most 80 characters, control bytes and binary as dots. */
function printable(text: string): string {
  const line = text.split('\n', 1)[0]!.replace(/\r$/, '');
  return line.replace(/[^\x20-\x7e]/g, '.').slice(0, 80);
}
