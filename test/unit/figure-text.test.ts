import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { counted, formatClockTime, formatCount, formatDuration } from '../../src/figure-text.ts';

describe('formatCount', () => {
  it('groups digits as en-US does and drops trailing zeros', () => {
    expect(formatCount(0)).toBe('0');
    expect(formatCount(999)).toBe('999');
    expect(formatCount(1000)).toBe('1,000');
    expect(formatCount(8_388_608)).toBe('8,388,608');
    expect(formatCount(-1234567.25, 2)).toBe('-1,234,567.25');
    expect(formatCount(1500.5, 3)).toBe('1,500.5');
    expect(formatCount(12.0, 2)).toBe('12');
    for (const n of [7, 12_345, 1_000_000, 987_654_321]) expect(formatCount(n)).toBe(n.toLocaleString('en-US'));
  });

  it('says counts with their noun', () => {
    expect(counted(1, 'row')).toBe('1 row');
    expect(counted(2000, 'row')).toBe('2,000 rows');
  });
});

describe('formatDuration', () => {
  it('picks the unit a person reads at a glance', () => {
    expect(formatDuration(850)).toBe('850 ms');
    expect(formatDuration(4100)).toBe('4.1 s');
    expect(formatDuration(192_000)).toBe('3 min 12 s');
    expect(formatDuration(7_500_000)).toBe('2 h 05 min');
  });
});

describe('formatClockTime', () => {
  it('says a moment as the time of day in UTC, to the second', () => {
    expect(formatClockTime(Date.UTC(2026, 11, 5, 2, 30, 15, 999))).toBe('02:30:15 UTC');
    expect(formatClockTime(Date.UTC(2026, 11, 5, 23, 59, 59))).toBe('23:59:59 UTC');
  });
});

describe('start-up cost', () => {
  // The first toLocaleString loads ICU's number formatting: 14-20 ms of every run's start-up when it
  // sits in a module's top level (csv-reader.ts had one). figure-text.ts says numbers without it.
  it('no source file formats numbers through ICU', () => {
    const root = path.resolve(import.meta.dirname, '../..');
    const offenders: string[] = [];
    for (const folder of ['src', 'workers', 'jobs']) {
      for (const file of readdirSync(path.join(root, folder), { recursive: true, encoding: 'utf8' })) {
        if (!file.endsWith('.ts')) continue;
        const lines = readFileSync(path.join(root, folder, file), 'utf8').split('\n');
        lines.forEach((line, i) => {
          if (/\.toLocaleString\(|new Intl\.NumberFormat/.test(line) && !/^\s*(\*|\/\/)/.test(line)) offenders.push(`${folder}/${file}:${i + 1}`);
        });
      }
    }
    expect(offenders).toEqual([]);
  });
});
