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

/**
 * Control characters but tab and line feed: C0, DEL and C1. Lines quote text from input files (a
 * model name, a column) and from providers (an error's message), which a terminal would run as
 * commands: colours, a window title, a cleared screen.
 */
const CONTROL_CHARACTERS = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;

/** The text with each control character written out as `\x1b`, so that it is seen, not run. */
export function withControlsShown(text: string): string {
  return text.replace(CONTROL_CHARACTERS, (char) => `\\x${char.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Writes whole lines (ending in "\n") to `stream`, or above the progress bar when one is drawn on the terminal. */
export function writeLines(stream: NodeJS.WritableStream & { isTTY?: boolean }, text: string): void {
  const shown = withControlsShown(text);
  if (barLines && stream.isTTY) barLines(shown);
  else stream.write(shown);
}
