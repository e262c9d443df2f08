import { UsageError } from './errors.ts';

/** How a URL names the address a server listens on: a wildcard one as 127.0.0.1, an IPv6 one in brackets. */
export function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

/**
 * Whether `host` only takes connections from this machine: localhost, ::1 or any of 127.0.0.0/8
 * (also written as an IPv4-mapped IPv6 address). Any other name or address may be reached from
 * the network.
 */
export function isLoopback(host: string): boolean {
  const address = host.toLowerCase().replace(/^::ffff:(?=\d+\.)/, '');
  return address === 'localhost' || address === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(address);
}

/** A port that is taken or not allowed, or a host that is not this machine's, said as such instead of a stack trace; null for other errors. */
export function listenTrouble(error: unknown, host: string, port: number): UsageError | null {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EADDRINUSE') return new UsageError(`port ${port} on ${host} is already in use (another simulator, or another server); choose a free one with --port <n>`);
  if (code === 'EACCES') return new UsageError(`not allowed to listen on port ${port} (ports below 1024 need root); choose one above 1023 with --port <n>`);
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') return new UsageError(`${host} is not an address of this machine; use --host 127.0.0.1, or 0.0.0.0 for every interface`);
  return null;
}
