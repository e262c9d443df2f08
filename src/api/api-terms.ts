import { extname } from 'node:path';
import { postAgainWayOut, RAISE_A_BUDGET, RAISE_MONTH_CAP, SERVER_MONTH_CAP } from '../limits/budget-way-out.ts';
import { GUNZIP, lineEndsCommand, SAVE_AS_UTF8 } from '../input/input-file.ts';
import { COMPARED_MODEL_NOT_IN_CONFIG } from '../routing/compare-models.ts';

/** Run flags named in the run's messages, as the API's query parameters. */
const FLAG_TO_PARAMETER: Record<string, string> = {
  '--batch-id': 'batch_id',
  '--prompt-column': 'prompt_column',
  '--model': 'model',
  '--route': 'route',
  '--ab': 'ab',
  '--compare': 'compare',
  '--budget': 'budget',
  '--judge': 'judge',
  '--no-cache': 'cache=false',
  '--cache': 'cache=true',
};

/** A run's message in the API's terms: its flags become query parameters, the server's copy of the file "the uploaded file". */
export function inApiTerms(message: string, inputPath: string): string {
  return message
    // Fixed in the request, not on the server's copy (QA: a shell command was given "< the uploaded file >").
    .replace(`convert it: ${lineEndsCommand(inputPath)}`, `convert its line endings before posting it (e.g. ${lineEndsCommand(`prompts${extname(inputPath)}`)}) and post the converted file`)
    .replace(SAVE_AS_UTF8, 'name its charset in the Content-Type (charset=utf-16le, as Windows writes it; utf-16be otherwise) and post it again, or send it as UTF-8')
    .replace(GUNZIP, 'send it with the header Content-Encoding: gzip (the server decompresses it as it comes), or uncompressed')
    // The server's config is its operator's, and a client finishes a batch by posting it.
    .replace(RAISE_MONTH_CAP, `${capitalized(postAgainWayOut('month'))}.`)
    // The server's config is its operator's: a client can only post elsewhere or start anew.
    .replace(COMPARED_MODEL_NOT_IN_CONFIG, "is not in the server's config (it was started with another one since): the batch goes on only on a server whose config has it, or post the file as a new batch (another batch_id, or none) to compare models the server has")
    .replace(RAISE_A_BUDGET, `${capitalized(postAgainWayOut('batch'))} (if the month's cap stopped it: ${SERVER_MONTH_CAP}).`)
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

const capitalized = (text: string): string => text.charAt(0).toUpperCase() + text.slice(1);
