import { readdirSync, readlinkSync } from 'node:fs';

/**
 * The descriptors a process (this one by default) has open on `path`, from Linux' /proc/<pid>/fd:
 * which point at the file, not how many there are, as the process opens and closes others meanwhile.
 */
export function descriptorsOn(path: string, pid: number | 'self' = 'self'): string[] {
  const dir = `/proc/${pid}/fd`;
  return readdirSync(dir).filter((fd) => {
    try {
      return readlinkSync(`${dir}/${fd}`) === path;
    } catch {
      return false; // closed between the listing and the read
    }
  });
}
