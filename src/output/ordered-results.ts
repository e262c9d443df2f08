import { closeSync, openSync, readSync, writeSync, fstatSync } from 'node:fs';

/**
 * Journal lines are `<row>\t<result JSON>\n`, appended in arrival order; a row may appear more than
 * once when it was re-run (stalled worker, resumed failure). results.jsonl keeps the newest line of
 * each row, in row order. Memory: 12 bytes per row for the index, plus fixed-size buffers.
 */
export function formatJournalLine(row: number, resultJson: string): string {
  return `${row}\t${resultJson}\n`;
}

interface JournalIndex {
  offsets: Float64Array;
  lengths: Uint32Array;
  maxRow: number;
  rows: number;
}

const CHUNK = 1 << 20;

function grow<T extends Float64Array | Uint32Array>(array: T, minLength: number): T {
  if (array.length > minLength) return array;
  const bigger = new (array.constructor as new (n: number) => T)(Math.max(minLength + 1, array.length * 2));
  bigger.set(array);
  return bigger;
}

/** One sequential pass: where the newest line of every row starts (the JSON part) and its length. */
function indexJournal(fd: number): JournalIndex {
  let offsets = new Float64Array(1024).fill(-1);
  let lengths = new Uint32Array(1024);
  let maxRow = 0;
  let rows = 0;
  let buffer = Buffer.allocUnsafe(CHUNK);
  let fileOffset = 0;
  for (;;) {
    const read = readSync(fd, buffer, 0, buffer.length, fileOffset);
    if (read === 0) break;
    const data = buffer.subarray(0, read);
    let lineStart = 0;
    for (let nl = data.indexOf(10, lineStart); nl !== -1; nl = data.indexOf(10, lineStart)) {
      const tab = data.indexOf(9, lineStart);
      if (tab > lineStart && tab < nl) {
        const row = Number(data.toString('latin1', lineStart, tab));
        if (row > maxRow) maxRow = row;
        if (offsets.length <= row) {
          const before = offsets.length;
          offsets = grow(offsets, row);
          offsets.fill(-1, before);
          lengths = grow(lengths, row);
        }
        if (offsets[row] === -1) rows++;
        offsets[row] = fileOffset + tab + 1;
        lengths[row] = nl - tab;
      }
      lineStart = nl + 1;
    }
    // The next read starts at the unfinished line (no copying); a line longer than the buffer grows it.
    if (lineStart === 0) {
      if (read < buffer.length) break; // a last line without a newline: not a complete record
      buffer = Buffer.allocUnsafe(buffer.length * 2);
    }
    fileOffset += lineStart;
  }
  return { offsets, lengths, maxRow, rows };
}

/** Reads byte ranges through a 1 MiB window, so mostly-ascending offsets cost few system calls. */
function windowedReader(fd: number, fileSize: number) {
  let window = Buffer.allocUnsafe(CHUNK);
  let windowStart = 0;
  let windowEnd = 0;
  return (offset: number, length: number): Buffer => {
    if (offset < windowStart || offset + length > windowEnd) {
      if (length > window.length) window = Buffer.allocUnsafe(length);
      const read = readSync(fd, window, 0, Math.min(window.length, fileSize - offset), offset);
      windowStart = offset;
      windowEnd = offset + read;
    }
    return window.subarray(offset - windowStart, offset - windowStart + length);
  };
}

/** Writes results.jsonl from the journal; returns how many rows it holds. */
export function writeOrderedResults(journalPath: string, resultsPath: string): number {
  const input = openSync(journalPath, 'r');
  const output = openSync(resultsPath, 'w');
  try {
    const index = indexJournal(input);
    const readAt = windowedReader(input, fstatSync(input).size);
    // Lines are copied into one reused output buffer: no allocation per row, so memory stays flat.
    let out = Buffer.allocUnsafe(CHUNK);
    let used = 0;
    for (let row = 0; row <= index.maxRow; row++) {
      const offset = index.offsets[row] ?? -1;
      if (offset < 0) continue;
      const line = readAt(offset, index.lengths[row] ?? 0);
      if (used + line.length > out.length) {
        writeSync(output, out, 0, used);
        used = 0;
        if (line.length > out.length) out = Buffer.allocUnsafe(line.length);
      }
      line.copy(out, used);
      used += line.length;
    }
    if (used > 0) writeSync(output, out, 0, used);
    return index.rows;
  } finally {
    closeSync(input);
    closeSync(output);
  }
}
