import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';

/** How Switchyard names a process in Redis and in messages: "host pid N". */
export const thisProcessName = (): string => `${hostname()} pid ${process.pid}`;

/**
 * This process's PID namespace ("pid:[4026531836]" on Linux; null elsewhere). Two containers may
 * share a hostname but never a PID namespace: a pid read in the one says nothing in the other.
 */
export function pidNamespace(): string | null {
  if (ownNamespace === undefined) {
    try {
      ownNamespace = readlinkSync('/proc/self/ns/pid');
    } catch {
      ownNamespace = null;
    }
  }
  return ownNamespace;
}
let ownNamespace: string | null | undefined;

/**
 * Whether the process a "host pid N ..." name stands for is alive, when it is on this machine and
 * in this PID namespace (when `namespace`, the one it was in, is known); null when it is elsewhere
 * (only its own renewals can tell). Containers that share a Redis and a hostname are told apart by
 * their namespaces.
 */
export function localProcessAlive(name: string, namespace?: string | null): boolean | null {
  const [host, , pid] = name.split(' ');
  if (host !== hostname() || !pid) return null;
  const ours = pidNamespace();
  if (namespace && ours && namespace !== ours) return null;
  try {
    process.kill(Number(pid), 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
  return !isZombie(Number(pid));
}

/**
 * A process killed but not yet reaped by its parent still answers signal 0. Seen after kill -9
 * where PID 1 reaps late (containers, VMs): a resume was refused as if the dead run still went.
 * Linux says so in /proc; elsewhere the process counts as alive.
 */
function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}
