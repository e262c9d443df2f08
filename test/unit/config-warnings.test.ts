import { describe, expect, it } from 'vitest';
import { warnAboutConfig } from '../../src/batch/config-checks.ts';
import { parseConfig } from '../../src/config/load.ts';

const base = {
  providers: { local: { base_url: 'http://127.0.0.1:8787/v1' } },
  models: { flash: { provider: 'local', price: { input_per_mtok: 0.1, output_per_mtok: 0.2 } } },
  default_model: 'flash',
};

function warnings(config: Record<string, unknown>, pinned?: string[]): string[] {
  const said: string[] = [];
  warnAboutConfig(parseConfig(config, 'switchyard.yaml'), pinned, false, false, new Set(), (line) => said.push(line));
  return said;
}

describe('what a run warns of in its config', () => {
  it('says a key that goes over plain http beyond loopback and private networks (security QA: sent unencrypted, unsaid)', () => {
    process.env.SWITCHYARD_TEST_CLEAR_KEY = 'sk-test';
    try {
      const on = (base_url: string) => warnings({ ...base, providers: { local: { base_url, api_key_env: 'SWITCHYARD_TEST_CLEAR_KEY' } } });
      expect(on('http://api.example.com/v1')).toEqual([
        'Warning: providers.local.base_url is plain http to api.example.com: $SWITCHYARD_TEST_CLEAR_KEY goes there unencrypted, readable by anyone on the way; use https:// (a key is only safe over http on a network of your own).',
      ]);
      expect(on('http://203.0.113.7:8000/v1')).toHaveLength(1);
      for (const own of ['https://api.example.com/v1', 'http://127.0.0.1:8000/v1', 'http://localhost:8000/v1', 'http://[::1]:8000/v1', 'http://10.1.2.3/v1', 'http://192.168.0.9/v1', 'http://172.20.0.2/v1', 'http://vllm:8000/v1', 'http://gpu1.internal/v1']) {
        expect(on(own), own).toEqual([]);
      }
      // No key set: nothing is sent but the SDK's placeholder (the warning is that it is not set).
      delete process.env.SWITCHYARD_TEST_CLEAR_KEY;
      expect(on('http://api.example.com/v1').join('\n')).not.toContain('plain http');
    } finally {
      delete process.env.SWITCHYARD_TEST_CLEAR_KEY;
    }
  });

  it('says an llm_classifier is unused while the classifier is the rules (QA: accepted and silently never called)', () => {
    expect(warnings({ ...base, routing: { llm_classifier: { model: 'flash' } } })).toEqual([
      'Warning: routing.llm_classifier (flash) is not used: routing.classifier is "rules"; set routing.classifier: llm to have it label the rows.',
    ]);
    expect(warnings({ ...base, routing: { classifier: 'llm', llm_classifier: { model: 'flash' } } })).toEqual([]);
  });

  it("says a synthesis_max_tokens or judge.max_tokens above its model's max_output_tokens, which each call is cut to (QA: 2000 sent as 512, unsaid)", () => {
    const price = { input_per_mtok: 0.1, output_per_mtok: 0.2 };
    const models = { flash: { provider: 'local', price }, short: { provider: 'local', price, max_output_tokens: 512 }, terse: { provider: 'local', price, max_output_tokens: 100 } };
    const ensembles = { duo: { members: ['flash', 'flash'], synthesizer: 'short', synthesis_max_tokens: 2000 }, fits: { members: ['flash', 'short'], synthesizer: 'short', synthesis_max_tokens: 512 } };
    const config = { ...base, models, ensembles, judge: { model: 'terse', max_tokens: 300 } };
    expect(warnings(config)).toEqual([
      "Warning: ensembles.duo.synthesis_max_tokens (2000) is above its synthesizer's models.short.max_output_tokens (512): each synthesis call asks short for 512 tokens at most. " +
        'Raise models.short.max_output_tokens if short can write more, or lower ensembles.duo.synthesis_max_tokens to 512.',
      "Warning: judge.max_tokens (300) is above the judge's models.terse.max_output_tokens (100): each judge call asks terse for 100 tokens at most. " +
        'Raise models.terse.max_output_tokens if terse can write more, or lower judge.max_tokens to 100.',
    ]);
    // Only the ensembles the rows may reach: a batch pinned to another model or ensemble is not told of duo's.
    expect(warnings({ ...config, judge: undefined }, ['fits'])).toEqual([]);
    expect(warnings({ ...config, judge: undefined }, ['duo'])).toHaveLength(1);
  });

  it("says nothing of judge.max_tokens left unset, whose default (200) a model's smaller max_output_tokens cuts (review: warned of a value nobody set)", () => {
    const models = { ...base.models, terse: { provider: 'local', price: { input_per_mtok: 0.1, output_per_mtok: 0.2 }, max_output_tokens: 100 } };
    expect(warnings({ ...base, models, judge: { model: 'terse' } })).toEqual([]);
    expect(warnings({ ...base, models, judge: { model: 'terse', max_tokens: 200 } })).toEqual([expect.stringMatching(/^Warning: judge\.max_tokens \(200\) is above the judge's models\.terse\.max_output_tokens \(100\)/)]);
  });
});
