/** Small number helpers for benchmark output. */

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export function passFail(ok: boolean): string {
  return ok ? 'PASS' : 'FAIL';
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

export function megabytes(kb: number): string {
  return `${(kb / 1024).toFixed(1)} MB`;
}
