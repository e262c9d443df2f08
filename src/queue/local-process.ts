import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

/** How Switchyard names a process in Redis and in messages: "host pid N". */
export const thisProcessName = (): string => `${hostname()} pid ${process.pid}`;

/**
 * Whether the process a "host pid N ..." name stands for is alive, when it is on this machine;
 * null when it is elsewhere (only its own renewals can tell). Containers that share a Redis need
 * distinct hostnames, as they have by default, for this to tell them apart.
 */
export function localProcessAlive(name: string): boolean | null {
  const [host, , pid] = name.split(' ');
  if (host !== hostname() || !pid) return null;
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
