import type { InputRow } from './row.ts';

/**
 * A 32-bit fingerprint (FNV-1a) of what a row asks and carries: its messages, model, settings,
 * metadata and (`withId`, batches created since) its id. Rows are known by their position in the
 * file; the fingerprint tells a resume whether the row at a position is still the one that
 * succeeded there, or was edited or moved (then it runs again, and its result carries what the file
 * says now). Never 0, which stands for "not recorded".
 */
export function rowFingerprint(row: InputRow, withId: boolean): number {
  const params = row.params === undefined ? [] : [row.params]; // absent: the same fingerprint as before params existed
  const id = withId ? [row.id] : [];
  const text = JSON.stringify([row.messages, row.model ?? null, row.temperature ?? null, row.max_tokens ?? null, row.metadata, row.custom_id ?? null, ...params, ...id]);
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0 || 1;
}

/** Whether the fingerprint recorded for a row's position (0: none recorded) says it is no longer the row `fingerprint` was taken of. */
export function fingerprintDiffers(recorded: number, fingerprint: number): boolean {
  return recorded !== 0 && recorded !== fingerprint;
}
