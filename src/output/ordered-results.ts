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
  const buffer = Buffer.allocUnsafe(CHUNK);
  let fileOffset = 0;
  let carry = Buffer.alloc(0);
  let carryStart = 0;
  for (;;) {
    const read = readSync(fd, buffer, 0, CHUNK, fileOffset);
    if (read === 0) break;
    const data = carry.length > 0 ? Buffer.concat([carry, buffer.subarray(0, read)]) : buffer.subarray(0, read);
    const dataStart = carry.length > 0 ? carryStart : fileOffset;
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
        offsets[row] = dataStart + tab + 1;
        lengths[row] = nl - tab;
      }
      lineStart = nl + 1;
    }
    carry = Buffer.from(data.subarray(lineStart));
    carryStart = dataStart + lineStart;
    fileOffset += read;
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
    const pending: Buffer[] = [];
    let pendingBytes = 0;
    for (let row = 0; row <= index.maxRow; row++) {
      const offset = index.offsets[row] ?? -1;
      if (offset < 0) continue;
      // Copy: the window buffer is reused by the next read.
      const line = Buffer.from(readAt(offset, index.lengths[row] ?? 0));
      pending.push(line);
      pendingBytes += line.length;
      if (pendingBytes >= CHUNK) {
        writeSync(output, Buffer.concat(pending));
        pending.length = 0;
        pendingBytes = 0;
      }
    }
    if (pending.length > 0) writeSync(output, Buffer.concat(pending));
    return index.rows;
  } finally {
    closeSync(input);
    closeSync(output);
  }
}
