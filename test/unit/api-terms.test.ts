import { describe, expect, it } from 'vitest';
import { inApiTerms } from '../../src/api/api-terms.ts';
import { AB_BESIDE_PINNED } from '../../src/routing/ab-split.ts';

describe("a run's message in the HTTP API's terms", () => {
  it('names query parameters for flags and the uploaded file for the server\'s copy of it (QA: "give either ab or model/?route=<model>")', () => {
    expect(inApiTerms(AB_BESIDE_PINNED, '/srv/out/b1/input.csv')).toBe('give either ab or ?model=<model> (or ?route=<model>), not both (an arm of ab may be auto, routed by task type)');
    expect(inApiTerms('input file /srv/out/b1/input.csv is empty: nothing to run', '/srv/out/b1/input.csv')).toBe('the uploaded file is empty: nothing to run');
    expect(inApiTerms('fix the file and run the same command again (--batch-id b1)', '/srv/out/b1/input.csv')).toBe('fix the file and post the file again (?batch_id=b1)');
  });
});
