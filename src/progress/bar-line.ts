/**
 * The progress bar's line, fitted to the terminal's width. The bar is drawn with line wrapping off,
 * so whatever passes the last column is lost: on an 80-column terminal a 40-cell bar left no room
 * for the ETA and cost. The bar shrinks first (to 10 cells), then goes; then the least needed
 * figures go, in the order of `BarFigures` from the end.
 */
export interface BarFigures {
  rows: string;
  failed: string;
  eta: string;
  cost: string;
  rate: string;
}

const FULL_BAR_CELLS = 40;
const MIN_BAR_CELLS = 10;
const DONE_CELL = '\u2588';
const TODO_CELL = '\u2591';

/** `fraction` of the rows finished (0..1); `columns`: the terminal's width. */
export function barLine(fraction: number, figures: BarFigures, columns: number): string {
  const room = Math.max(1, columns - 1); // the last column would move the cursor on some terminals
  const parts = [figures.rows, figures.failed, figures.eta, figures.cost, figures.rate];
  const all = parts.join(' | ');
  const cells = Math.min(FULL_BAR_CELLS, room - all.length - 2);
  if (cells >= MIN_BAR_CELLS) return ` ${bar(fraction, cells)} ${all}`;
  for (let kept = parts.length; kept > 1; kept--) {
    const text = parts.slice(0, kept).join(' | ');
    if (text.length <= room) return text;
  }
  return figures.rows.slice(0, room);
}

function bar(fraction: number, cells: number): string {
  const done = Math.round(Math.min(1, Math.max(0, fraction)) * cells);
  return DONE_CELL.repeat(done) + TODO_CELL.repeat(cells - done);
}

/**
 * Lines printed above the bar, broken at spaces to fit `columns` (with wrapping off, the terminal
 * would cut them). A word longer than the line (a path) is left whole.
 */
export function wrapToWidth(text: string, columns: number): string {
  const room = Math.max(20, columns - 1);
  return text
    .split('\n')
    .map((line) => {
      const pieces: string[] = [];
      let rest = line;
      while (rest.length > room) {
        let cut = rest.lastIndexOf(' ', room);
        if (cut <= 0) cut = rest.indexOf(' ', room);
        if (cut <= 0) break;
        pieces.push(rest.slice(0, cut).trimEnd());
        rest = rest.slice(cut + 1);
      }
      pieces.push(rest);
      return pieces.join('\n');
    })
    .join('\n');
}
