import { describe, expect, it } from 'vitest';
import type { InputRow } from '../../src/input/row.ts';
import { rowFingerprint } from '../../src/input/row-fingerprint.ts';

const row = (overrides: Partial<InputRow> = {}): InputRow => ({ row: 1, line: 2, id: 'a', messages: [{ role: 'user', content: 'hi' }], metadata: { k: 'v' }, ...overrides });

describe('rowFingerprint', () => {
  it('is stable for the same content wherever the row is, and changes with anything the row asks or carries', () => {
    expect(rowFingerprint(row(), true)).toBe(rowFingerprint(row({ row: 9, line: 12 }), true));
    const base = rowFingerprint(row(), true);
    for (const changed of [
      row({ messages: [{ role: 'user', content: 'hi!' }] }),
      row({ model: 'm' }),
      row({ temperature: 0.2 }),
      row({ max_tokens: 10 }),
      row({ metadata: { k: 'w' } }),
      row({ custom_id: 'c1' }),
      row({ id: 'b' }),
    ]) {
      expect(rowFingerprint(changed, true)).not.toBe(base);
    }
    expect(base).toBeGreaterThan(0);
    expect(base).toBeLessThan(2 ** 32);
  });

  it("leaves the id out for a batch created before ids counted, so its resume compares like with like", () => {
    expect(rowFingerprint(row({ id: 'b' }), false)).toBe(rowFingerprint(row(), false));
    expect(rowFingerprint(row(), false)).not.toBe(rowFingerprint(row(), true));
  });
});
