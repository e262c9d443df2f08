import { withControlsShown } from '../control-characters.ts';

/**
 * Keeps lines meant for a person (the CLI's messages, log lines) from being written into the middle
 * of a progress bar on the same terminal. While a bar is drawn, lines for a terminal go to the bar,
 * which prints them above itself at its next redraw. One terminal per process, so the bar registers
 * itself here for as long as it is shown.
 */
type LineSink = (text: string) => void;

let barLines: LineSink | null = null;

export function sendLinesToBar(sink: LineSink | null): void {
  barLines = sink;
}

/** Writes whole lines (ending in "\n") to `stream`, or above the progress bar when one is drawn on the terminal. */
export function writeLines(stream: NodeJS.WritableStream & { isTTY?: boolean }, text: string): void {
  const shown = withControlsShown(text);
  if (barLines && stream.isTTY) barLines(shown);
  else stream.write(shown);
}
