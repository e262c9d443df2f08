/** Run flags named in the run's messages, as the API's query parameters. */
const FLAG_TO_PARAMETER: Record<string, string> = {
  '--batch-id': 'batch_id',
  '--prompt-column': 'prompt_column',
  '--model': 'model',
  '--route': 'route',
  '--ab': 'ab',
  '--budget': 'budget',
  '--judge': 'judge',
  '--no-cache': 'cache=false',
  '--cache': 'cache=true',
};

/** A run's message in the API's terms: its flags become query parameters, the server's copy of the file "the uploaded file". */
export function inApiTerms(message: string, inputPath: string): string {
  return message
    .replaceAll(`input file ${inputPath}`, 'the uploaded file')
    .replaceAll(inputPath, 'the uploaded file')
    // A client posts; it runs no command.
    .replaceAll('run the same command again', 'post the file again')
    .replace(/--batch-id ([A-Za-z0-9][\w.-]*)/g, '?batch_id=$1')
    .replace(/(--[a-z-]+)( <[^>]+>)?/g, (text, flag: string, value: string | undefined) => {
      const parameter = FLAG_TO_PARAMETER[flag];
      if (!parameter) return text;
      return value ? `?${parameter}=${value.trim()}` : parameter;
    });
}
