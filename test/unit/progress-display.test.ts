import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { barLine, wrapToWidth } from '../../src/progress/bar-line.ts';
import { createProgressDisplay } from '../../src/progress/progress-display.ts';
import { writeLines } from '../../src/progress/terminal-lines.ts';
import type { BatchProgress } from '../../src/queue/batch-state.ts';

/** A stream that says it is a terminal, keeping everything written to it as one text. */
function terminal(columns = 120) {
  const written: string[] = [];
  const stream = Object.assign(
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        written.push(chunk.toString());
        done();
      },
    }),
    { isTTY: true, columns },
  );
  return { stream, text: () => written.join('') };
}

/** A non-terminal stream that keeps what was written, and a clock the test moves. */
function plainOutput() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  let time = 1_000_000;
  return { stream, lines, now: () => time, advance: (ms: number) => (time += ms) };
}

function progress(finished: number, total: number | null, failed = 0, estimatedTotal: number | null = null): BatchProgress {
  return { total, estimatedTotal, finished, succeeded: finished - failed, failed, costUsd: finished * 0.0001, status: 'running' };
}

describe('progress display (plain lines)', () => {
  it('rates count the rows finished since the first update, which is the start', () => {
    const out = plainOutput();
    const display = createProgressDisplay(out.stream, { now: out.now, plainEveryMs: 5000 });
    display.update(progress(0, 24));
    out.advance(250);
    display.update(progress(22, 24));
    out.advance(406);
    display.update(progress(24, 24));
    display.stop();
    // 24 rows in 656 ms, not the 2 rows after the first poll.
    expect(out.lines).toEqual(['progress: 24/24 rows, 0 failed, 37 rows/s, done, cost $0.00240']);
  });

  it("ends the CLI's lines with the time of day, for a log that many nights append to (QA)", () => {
    const out = plainOutput();
    const display = createProgressDisplay(out.stream, { now: out.now, plainEveryMs: 5000, clock: true });
    display.update(progress(0, 10));
    out.advance(5000);
    display.update(progress(4, 10));
    expect(out.lines).toEqual(['progress: 4/10 rows, 0 failed, 0.8 rows/s, ETA 7.5 s, cost $0.000400, at 00:16:45 UTC']);
  });

  it('leaves the rate out of a batch already done at its first reading, rather than saying 0 rows/s (QA)', () => {
    const out = plainOutput();
    const display = createProgressDisplay(out.stream, { now: out.now, plainEveryMs: 5000 });
    out.advance(90);
    display.update(progress(5, 5));
    display.stop();
    expect(out.lines).toEqual(['progress: 5/5 rows, 0 failed, done, cost $0.000500']);
  });

  it('shows the cost as unknown, not $0, when no model of the batch has a price', () => {
    const out = plainOutput();
    const display = createProgressDisplay(out.stream, { now: out.now, plainEveryMs: 5000, unpriced: true });
    display.update({ ...progress(0, 4), costUsd: 0 });
    out.advance(1000);
    display.update({ ...progress(4, 4), costUsd: 0 });
    display.stop();
    expect(out.lines).toEqual(['progress: 4/4 rows, 0 failed, 4 rows/s, done, cost n/a (no price configured)']);
  });

  it('gives a rate under one row a second with a decimal, not as 0', () => {
    const out = plainOutput();
    const display = createProgressDisplay(out.stream, { now: out.now, plainEveryMs: 5000 });
    display.update(progress(0, 12));
    for (let finished = 1; finished <= 2; finished++) {
      out.advance(3000); // a row every 3 s: a judge allowed 20 calls a minute
      display.update(progress(finished, 12));
    }
    expect(out.lines).toEqual(['progress: 2/12 rows, 0 failed, 0.3 rows/s, ETA 30.0 s, cost $0.000200']);
  });

  it('prints at most one line per interval, with an ETA from the rate so far', () => {
    const out = plainOutput();
    const display = createProgressDisplay(out.stream, { now: out.now, plainEveryMs: 5000 });
    display.update(progress(0, null));
    out.advance(4000);
    display.update(progress(400, null));
    expect(out.lines).toEqual([]);
    out.advance(1000);
    display.update(progress(500, 2000, 3));
    out.advance(1000);
    display.update(progress(600, 2000, 3));
    expect(out.lines).toEqual(['progress: 500/2,000 rows, 3 failed, 100 rows/s, ETA 15.0 s, cost $0.0500']);
  });

  it('does not count rows a resumed batch had finished before, and shows ? while the total is unknown', () => {
    const out = plainOutput();
    const display = createProgressDisplay(out.stream, { now: out.now, plainEveryMs: 1000 });
    display.update(progress(900, null));
    out.advance(1000);
    display.update(progress(950, null));
    expect(out.lines).toEqual(['progress: 950/? rows, 0 failed, 50 rows/s, ETA ?, cost $0.0950']);
  });

  it('counts the failed rows a resume runs again, though the finished count ends where it began', () => {
    const out = plainOutput();
    const display = createProgressDisplay(out.stream, { now: out.now, plainEveryMs: 1000 });
    display.update(progress(100, 100, 10)); // the first run left 10 failed rows
    display.update(progress(90, 100, 0)); // the resume clears them
    out.advance(1000);
    display.update(progress(95, 100, 0));
    out.advance(1000);
    display.update(progress(100, 100, 0));
    expect(out.lines).toEqual(['progress: 95/100 rows, 0 failed, 5 rows/s, ETA ?, cost $0.00950', 'progress: 100/100 rows, 0 failed, 5 rows/s, done, cost $0.0100']);
  });
});

describe('progress display while the file is still being read', () => {
  it('shows the estimated row count with "~" and an ETA from it', () => {
    const out = plainOutput();
    const display = createProgressDisplay(out.stream, { now: out.now, plainEveryMs: 1000 });
    display.update(progress(0, null, 0, 20_000));
    out.advance(1000);
    display.update(progress(500, null, 0, 20_000));
    // One second of measuring is too little for an ETA; two are enough.
    out.advance(1000);
    display.update(progress(1000, null, 0, 20_000));
    expect(out.lines).toEqual(['progress: 500/~20,000 rows, 0 failed, 500 rows/s, ETA ?, cost $0.0500', 'progress: 1,000/~20,000 rows, 0 failed, 500 rows/s, ETA 38.0 s, cost $0.100']);
  });
});

describe('progress bar on a terminal', () => {

  it('prints lines said while the bar is up above the bar, not into it, and writes directly again once it stops', () => {
    const bar = terminal();
    const stdout = terminal();
    const display = createProgressDisplay(bar.stream as unknown as NodeJS.WriteStream);
    display.update(progress(0, 10));
    writeLines(stdout.stream, 'Read 10 rows: 10 valid\n');
    expect(stdout.text()).toBe(''); // held for the bar, which clears its line and prints it above itself
    display.update(progress(10, 10));
    display.stop();
    const out = bar.text();
    expect(out).toContain('\x1b[2KRead 10 rows: 10 valid\n');
    expect(out.indexOf('Read 10 rows')).toBeLessThan(out.lastIndexOf('10/10 rows'));
    writeLines(stdout.stream, 'Rows 10 of 10 succeeded\n');
    expect(stdout.text()).toBe('Rows 10 of 10 succeeded\n');
  });

  it('fits lines to 80 columns on a terminal that reports a width of 0 (script, some docker exec -t)', () => {
    const bar = terminal(0);
    const display = createProgressDisplay(bar.stream as unknown as NodeJS.WriteStream);
    display.update(progress(0, 10));
    const line = 'Read 10 rows: 10 valid, 0 invalid; 10 queued, workers here making up to 64 calls at a time.';
    writeLines(terminal().stream, `${line}\n`);
    display.update(progress(10, 10));
    display.stop();
    expect(bar.text()).toContain('\x1b[2KRead 10 rows: 10 valid, 0 invalid; 10 queued, workers here making up to 64\ncalls at a time.\n');
  });
});

describe('progress display of a run that is stopping', () => {
  /** Plain lines; 40 of 100 rows done 5 s in, then Ctrl-C. */
  function stoppingAt40() {
    const out = plainOutput();
    const display = createProgressDisplay(out.stream, { now: out.now, plainEveryMs: 5000 });
    display.update(progress(0, 100));
    out.advance(5000);
    display.update(progress(40, 100));
    display.stopping();
    return { out, display };
  }

  it('says it is stopping where the ETA was, so a Ctrl-C does not look ignored', () => {
    const { out, display } = stoppingAt40();
    out.advance(5000);
    display.update(progress(44, 100));
    display.stop();
    expect(out.lines.at(-1)).toBe('progress: 44/100 rows, 0 failed, 4.4 rows/s, stopping: the calls in flight finish, cost $0.00440');
  });

  it('keeps saying it is stopping when no row finishes for a while, with how long it has waited, rather than a stall line and the same line again (QA)', () => {
    const { out, display } = stoppingAt40();
    for (let step = 0; step < 12; step++) {
      out.advance(5000);
      display.update(progress(40, 100)); // a minute of calls in flight that do not end, a poll every 5 s
    }
    display.stop();
    expect(out.lines).toEqual([
      'progress: 40/100 rows, 0 failed, 8 rows/s, ETA 7.5 s, cost $0.00400',
      // An unchanged line every 30 s, as in a stall; no stall line at 15 s.
      'progress: 40/100 rows, 0 failed, 0 rows/s, stopping: the calls in flight finish (30.0 s so far), cost $0.00400',
      'progress: 40/100 rows, 0 failed, 0 rows/s, stopping: the calls in flight finish (1 min 0 s so far), cost $0.00400',
    ]);
  });

  it('shows the wait on the bar too, once the stop has taken as long as a stall', () => {
    const bar = terminal(160);
    let time = 1_000_000;
    const display = createProgressDisplay(bar.stream as unknown as NodeJS.WriteStream, { now: () => time });
    display.update(progress(0, 100));
    time += 5000;
    display.update(progress(40, 100));
    display.stopping();
    time += 20_000;
    display.update(progress(40, 100));
    display.stop();
    const drawn = bar.text().split(/\r|\n|\x1b\[[0-9;?]*[A-Za-z]/).filter((line) => line.includes('rows'));
    expect(drawn.at(-1)).toContain('| stopping: the calls in flight finish (20.0 s so far) |');
    expect(bar.text()).not.toContain('no row finished');
  });
});

describe('the bar fitted to the terminal', () => {
  const figures = { rows: '500/2,000 rows', failed: '3 failed', eta: 'ETA 12.5 s', cost: '$0.0123', rate: '144 rows/s' };
  const visible = (line: string, columns: number) => {
    expect(line.length).toBeLessThan(columns);
    return line;
  };

  it('keeps every figure with a full bar on a wide terminal, a shorter bar at 80 columns', () => {
    expect(barLine(0.25, figures, 120)).toBe(` ${'\u2588'.repeat(10)}${'\u2591'.repeat(30)} 500/2,000 rows | 3 failed | ETA 12.5 s | $0.0123 | 144 rows/s`);
    const at80 = visible(barLine(0.25, figures, 80), 80);
    expect(at80).toMatch(/^ [\u2588\u2591]{10,39} 500\/2,000 rows \| 3 failed \| ETA 12\.5 s \| \$0\.0123 \| 144 rows\/s$/);
  });

  it('drops the bar, then the rate, then the cost on narrow terminals; the rows always stay', () => {
    expect(visible(barLine(0.5, figures, 74), 74)).toMatch(/^ [\u2588\u2591]{10} 500\/2,000 rows \| 3 failed \| ETA 12\.5 s \| \$0\.0123 \| 144 rows\/s$/);
    expect(visible(barLine(0.5, figures, 72), 72)).toBe('500/2,000 rows | 3 failed | ETA 12.5 s | $0.0123 | 144 rows/s');
    expect(visible(barLine(0.5, figures, 60), 60)).toBe('500/2,000 rows | 3 failed | ETA 12.5 s | $0.0123');
    expect(visible(barLine(0.5, figures, 40), 40)).toBe('500/2,000 rows | 3 failed | ETA 12.5 s');
    expect(visible(barLine(0.5, figures, 12), 12)).toBe('500/2,000 r');
  });

  it('breaks long lines printed above the bar at spaces, leaving a word longer than the line whole', () => {
    expect(wrapToWidth('Read 500 rows: 500 valid, 0 invalid; 500 queued, workers here making up to 32 calls at a time.\n', 40)).toBe(
      'Read 500 rows: 500 valid, 0 invalid;\n500 queued, workers here making up to\n32 calls at a time.\n',
    );
    expect(wrapToWidth(`Results  /${'x'.repeat(50)}/results.jsonl and more\n`, 40)).toBe(`Results\n/${'x'.repeat(50)}/results.jsonl\nand more\n`);
  });

  it('draws within an 80-column terminal, and says done at the end instead of an ETA', () => {
    const bar = terminal(80);
    const display = createProgressDisplay(bar.stream as unknown as NodeJS.WriteStream);
    display.update(progress(0, 2000));
    display.update(progress(2000, 2000));
    display.stop();
    const drawn = bar.text().split(/\r|\n|\x1b\[[0-9;?]*[A-Za-z]/).filter((line) => line.includes('rows'));
    expect(drawn.length).toBeGreaterThan(0);
    for (const line of drawn) expect(line.length).toBeLessThan(80);
    expect(drawn.at(-1)).toMatch(/ 2,000\/2,000 rows \| 0 failed \| done \| \$/);
  });
});

describe('progress display when rows stop finishing', () => {
  it('rates count the last 20 s, so a batch that stopped moving shows it at once instead of a slowly decaying average', () => {
    const out = plainOutput();
    const display = createProgressDisplay(out.stream, { now: out.now, plainEveryMs: 5000 });
    display.update(progress(0, 10_000));
    for (let second = 1; second <= 60; second++) {
      out.advance(1000);
      display.update(progress(second * 100, 10_000)); // 100 rows/s for a minute
    }
    for (let second = 1; second <= 25; second++) {
      out.advance(1000);
      display.update(progress(6000, 10_000)); // then nothing
    }
    display.stop();
    const last = out.lines.at(-1);
    // An average since the start would still say 71 rows/s and an ETA of about a minute.
    expect(last).toBe('progress: 6,000/10,000 rows, 0 failed, 0 rows/s, ETA ? (no row finished for 25.0 s), cost $0.600');
  });

  it('says how long no row has finished instead of a growing ETA, as soon as that shows (15 s), then repeats an unchanged line only every 30 s', () => {
    const out = plainOutput();
    const display = createProgressDisplay(out.stream, { now: out.now, plainEveryMs: 5000 });
    display.update(progress(0, 300));
    out.advance(5000);
    display.update(progress(200, 300));
    for (let step = 0; step < 24; step++) {
      out.advance(5000);
      display.update(progress(200, 300)); // two minutes without a finished row, a poll every 5 s
    }
    expect(out.lines).toEqual([
      'progress: 200/300 rows, 0 failed, 40 rows/s, ETA 2.5 s, cost $0.0200',
      'progress: 200/300 rows, 0 failed, 10 rows/s, ETA ? (no row finished for 15.0 s), cost $0.0200',
      'progress: 200/300 rows, 0 failed, 0 rows/s, ETA ? (no row finished for 45.0 s), cost $0.0200',
      'progress: 200/300 rows, 0 failed, 0 rows/s, ETA ? (no row finished for 1 min 15 s), cost $0.0200',
      'progress: 200/300 rows, 0 failed, 0 rows/s, ETA ? (no row finished for 1 min 45 s), cost $0.0200',
    ]);
    out.advance(5000);
    display.update(progress(250, 300));
    // The pace since the stall ended, not averaged with it (QA: an ETA of an hour for rows done seconds later).
    expect(out.lines.at(-1)).toBe('progress: 250/300 rows, 0 failed, 10 rows/s, ETA 5.0 s, cost $0.0250');
  });

  it('gives the row that ends a stall the rate over the last 20 s, not one over the moment since the last poll, and its done line once (QA: "1/1 rows, 18 rows/s, done" twice)', () => {
    const out = plainOutput();
    const display = createProgressDisplay(out.stream, { now: out.now, plainEveryMs: 5000 });
    display.update(progress(0, 1));
    for (let step = 0; step < 80; step++) {
      out.advance(250); // polls every 250 ms; the one row takes 20 s
      display.update(progress(0, 1));
    }
    out.advance(55);
    display.update(progress(1, 1)); // the read after the run's end, 55 ms after the last poll
    display.stop();
    expect(out.lines.slice(-2)).toEqual([
      'progress: 0/1 rows, 0 failed, 0 rows/s, ETA ? (no row finished for 15.0 s), cost $0',
      // 1 row in 20.1 s, as the summary's "0 rows/s".
      'progress: 1/1 rows, 0 failed, 0 rows/s, done, cost $0.000100',
    ]);
  });

  it('waits 2 s after a stall before giving the pace since it ended, and no ETA meanwhile', () => {
    const out = plainOutput();
    const display = createProgressDisplay(out.stream, { now: out.now, plainEveryMs: 500 });
    display.update(progress(0, 100));
    out.advance(20_000);
    display.update(progress(0, 100));
    out.advance(500);
    display.update(progress(10, 100)); // the stall ends: 10 rows in 0.5 s
    out.advance(1000);
    display.update(progress(20, 100));
    out.advance(1000);
    display.update(progress(30, 100));
    expect(out.lines.slice(-3)).toEqual([
      // Over the last 20 s, which holds the stall: not 20 rows/s from half a second.
      'progress: 10/100 rows, 0 failed, 0.5 rows/s, ETA ?, cost $0.00100',
      'progress: 20/100 rows, 0 failed, 0.9 rows/s, ETA ?, cost $0.00200',
      'progress: 30/100 rows, 0 failed, 12 rows/s, ETA 5.8 s, cost $0.00300',
    ]);
  });
});

describe('progress display with LOG_FORMAT=json', () => {
  it('writes each plain line as a JSON object with its figures, so stderr stays one JSON object a line (QA)', () => {
    const out = plainOutput();
    const display = createProgressDisplay(out.stream, { now: out.now, json: true });
    display.update(progress(0, 300));
    out.advance(5000);
    display.update(progress(200, 300, 2));
    const entry = JSON.parse(out.lines.at(-1)!) as Record<string, unknown>;
    expect(entry).toMatchObject({ level: 30, finished: 200, total: 300, failed: 2, rows_per_second: 40, msg: 'progress: 200/300 rows, 2 failed, 40 rows/s, ETA 2.5 s, cost $0.0200' });
  });
});
