import { describe, expect, it } from 'vitest';
import { warnAboutConfig } from '../../src/batch/config-checks.ts';
import { parseConfig } from '../../src/config/load.ts';

const base = {
  providers: { local: { base_url: 'http://127.0.0.1:8787/v1' } },
  models: { flash: { provider: 'local', price: { input_per_mtok: 0.1, output_per_mtok: 0.2 } } },
  default_model: 'flash',
};

function warnings(config: Record<string, unknown>): string[] {
  const said: string[] = [];
  warnAboutConfig(parseConfig(config, 'switchyard.yaml'), undefined, false, false, new Set(), (line) => said.push(line));
  return said;
}

describe('what a run warns of in its config', () => {
  it('says an llm_classifier is unused while the classifier is the rules (QA: accepted and silently never called)', () => {
    expect(warnings({ ...base, routing: { llm_classifier: { model: 'flash' } } })).toEqual([
      'Warning: routing.llm_classifier (flash) is not used: routing.classifier is "rules"; set routing.classifier: llm to have it label the rows.',
    ]);
    expect(warnings({ ...base, routing: { classifier: 'llm', llm_classifier: { model: 'flash' } } })).toEqual([]);
  });
});
