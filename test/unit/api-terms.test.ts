import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { inApiTerms } from '../../src/api/api-terms.ts';
import { chooseRunSettings } from '../../src/batch/run-settings.ts';
import type { RunOptions } from '../../src/batch/run-batch.ts';
import { parseConfig } from '../../src/config/load.ts';
import type { BatchMeta } from '../../src/queue/batch-state.ts';
import { checkInputFile } from '../../src/input/read-rows.ts';
import { useTempFiles } from '../helpers/reader-fixtures.ts';

const temp = useTempFiles('api-terms');

/** What the run says of the file when it refuses it. */
async function refusal(path: string): Promise<string> {
  return checkInputFile(path).then(
    () => 'no refusal',
    (error: unknown) => (error as Error).message,
  );
}
import { AB_BESIDE_PINNED } from '../../src/routing/ab-split.ts';
import { chooseCompareModels } from '../../src/routing/compare-models.ts';

describe("a run's message in the HTTP API's terms", () => {
  it('names query parameters for flags and the uploaded file for the server\'s copy of it (QA: "give either ab or model/?route=<model>")', () => {
    expect(inApiTerms(AB_BESIDE_PINNED, '/srv/out/b1/input.csv')).toBe('give either ab or ?model=<model> (or ?route=<model>), not both (an arm of ab may be auto, routed by task type)');
    expect(inApiTerms('input file /srv/out/b1/input.csv is empty: nothing to run', '/srv/out/b1/input.csv')).toBe('the uploaded file is empty: nothing to run');
    expect(inApiTerms('fix the file and run the same command again (--batch-id b1)', '/srv/out/b1/input.csv')).toBe('fix the file and post the file again (?batch_id=b1)');
  });

  it("tells a batch posted again that its budget stopped, raising none, to post it with a higher budget, and that the month's cap is the server's config (QA: \"Run it with a config\" to a client)", () => {
    const notes: string[] = [];
    const existing = { batch_id: 'b1', status: 'budget_exceeded', budget_usd: 1, cost_nanos: 990_000_000, prompt_column: 'prompt' } as BatchMeta;
    const config = parseConfig({ providers: { p: { base_url: 'http://127.0.0.1:1' } }, models: { m: { provider: 'p' } }, default_model: 'm', budget: { monthly_usd: 5 } }, 'test');
    chooseRunSettings({ file: '/srv/out/b1/input.csv' } as RunOptions, existing, config, false, config, (line) => notes.push(line));
    chooseRunSettings({ file: '/srv/out/b1/input.csv' } as RunOptions, { ...existing, budget_stop: 'month' }, config, false, config, (line) => notes.push(line));
    expect(notes.map((note) => inApiTerms(note, '/srv/out/b1/input.csv'))).toEqual([
      "Warning: batch b1 stopped at a budget (its own is $1.00, $0.990 spent) and this run raises none: its rows that still need a call may end budget_exceeded again. Post the file again with the same batch_id and a higher budget (its query parameter, in USD) to finish it (if the month's cap stopped it: the server needs a config with a higher budget.monthly_usd, or the next month).",
      "Warning: batch b1 stopped at the month's cap (budget.monthly_usd $5.00) and this run's config does not raise it: its rows that still need a call may end budget_exceeded again. The server needs a config with a higher budget.monthly_usd, or the next month; then post the file again with the same batch_id to finish it.",
    ]);
  });
});

describe('a comparison posted again to a server whose config lacks one of its models', () => {
  it('says what the server lacks and what the client can do, not to give a config (review: an API client has no --config)', () => {
    let message = '';
    try {
      chooseCompareModels({}, { id: 'b1', compare: ['fast', 'slow'] }, ['fast'], false);
    } catch (error) {
      message = inApiTerms((error as Error).message, '/srv/out/b1/input.csv');
    }
    expect(message).toBe(
      'batch b1 compares fast,slow (compare), but "slow" is not in the server\'s config (it was started with another one since): the batch goes on only on a server whose config has it, ' +
        'or post the file as a new batch (another batch_id, or none) to compare models the server has',
    );
  });
});

describe('advice on a refused file, said for a client that posted it', () => {
  it('names the request headers to set, and pastes no server path into a shell command (QA)', async () => {
    const gzipped = await temp.file('input.csv', gzipSync('prompt\nhi\n'));
    expect(inApiTerms(await refusal(gzipped), gzipped)).toBe('the uploaded file is gzip-compressed, not text: send it with the header Content-Encoding: gzip (the server decompresses it as it comes), or uncompressed');
    const utf16 = await temp.file('input.jsonl', Buffer.from('{"prompt":"hi"}\n', 'utf16le'));
    expect(inApiTerms(await refusal(utf16), utf16)).toBe(
      "the uploaded file looks like UTF-16 text without a byte order mark (every other byte is 0): name its charset in the Content-Type (charset=utf-16le, as Windows writes it; utf-16be otherwise) and post it again, or send it as UTF-8",
    );
    const crOnly = await temp.file('mac.csv', 'prompt\rhi\rho\r');
    expect(inApiTerms(await refusal(crOnly), crOnly)).toBe(
      'the uploaded file ends its lines with a carriage return alone (old Mac line endings, as Excel for Mac\'s "CSV (Macintosh)" writes), so it reads as one line: ' +
        "save it as \"CSV UTF-8\", or convert its line endings before posting it (e.g. tr '\\r' '\\n' < prompts.csv > fixed.csv) and post the converted file",
    );
  });
});
