import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { notSet, refuseWithoutKeys, warnAboutConfig } from '../../src/batch/config-checks.ts';
import { parseConfig } from '../../src/config/load.ts';

describe('a key variable that is not set', () => {
  it('names a set one it was likely meant to be (QA: api_key_env OPENAI_KEY beside a set OPENAI_API_KEY)', () => {
    expect(notSet('OPENAI_KEY', { OPENAI_API_KEY: 'sk-x' })).toBe('$OPENAI_KEY is not set (did you mean $OPENAI_API_KEY, which is set? api_key_env names the variable)');
    expect(notSet('GROQ_API_KYE', { GROQ_API_KEY: 'gsk' })).toContain('did you mean $GROQ_API_KEY');
    expect(notSet('OPENAI_KEY', { OPENAI_API_KEY: '  ', HOME: '/root' })).toBe('$OPENAI_KEY is not set');
  });

  it('tells an empty key, or one of spaces alone, from an unset one', () => {
    expect(notSet('K_KEY', { K_KEY: '' })).toBe('$K_KEY is set but empty');
    expect(notSet('K_KEY', { K_KEY: '   ' })).toBe('$K_KEY is set but empty (spaces only)');
  });
});

describe('the key checks look at the models the rows go to', () => {
  const price = { input_per_mtok: 0.1, output_per_mtok: 0.2 };
  // fast and slow on a provider whose key is set, other on one whose key is not.
  const config = (extra: Record<string, unknown> = {}) =>
    parseConfig(
      {
        providers: { keyed: { base_url: 'https://a.example/v1', api_key_env: 'QA_ALPHA_PROVIDER_TOKEN' }, keyless: { base_url: 'https://b.example/v1', api_key_env: 'SWITCHYARD_TEST_UNSET_KEY' } },
        models: { fast: { provider: 'keyed', price }, slow: { provider: 'keyed', price }, other: { provider: 'keyless', price }, another: { provider: 'keyless', price } },
        default_model: 'fast',
        ...extra,
      },
      'switchyard.yaml',
    );
  const warnings = (parsed: ReturnType<typeof config>, answering: string[] | undefined) => {
    const said: string[] = [];
    warnAboutConfig(parsed, answering, false, false, new Set(), (line) => said.push(line));
    return said.filter((line) => line.includes('SWITCHYARD_TEST_UNSET_KEY'));
  };
  beforeEach(() => {
    process.env.QA_ALPHA_PROVIDER_TOKEN = 'sk-set';
    delete process.env.SWITCHYARD_TEST_UNSET_KEY;
  });
  afterEach(() => {
    delete process.env.QA_ALPHA_PROVIDER_TOKEN;
  });

  it('says nothing of a missing key that only models no row goes to need (QA: --compare fast,slow warned of other\'s key)', () => {
    expect(warnings(config(), ['fast', 'slow'])).toEqual([]);
    expect(warnings(config(), ['fast'])).toEqual([]);
    // Used: compared, an A/B arm, a fallback, the judge; or routed, when any model may be.
    expect(warnings(config(), ['fast', 'other'])).toEqual(['Warning: $SWITCHYARD_TEST_UNSET_KEY is not set: other cannot be called (missing_api_key): a row that reaches it with no other model to go on to fails.']);
    expect(warnings(config({ models: { ...config().models, slow: { provider: 'keyed', price, fallbacks: ['other'] } } }), ['fast', 'slow'])).toHaveLength(1);
    expect(warnings(config({ judge: { model: 'other' } }), ['fast', 'slow'])).toHaveLength(1);
    expect(warnings(config(), undefined)).toHaveLength(1);
    expect(warnings(config(), ['fast', 'auto'])).toHaveLength(1);
  });

  it('refuses a run none of whose compared models (or arms, with their fallbacks) can be called, whatever the other models\' keys', () => {
    // Before: every model of the config was looked at, so fast's key let a comparison of other and another start, every row failing.
    expect(() => refuseWithoutKeys(config(), ['other', 'another'], new Set(), 'run')).toThrow(
      '$SWITCHYARD_TEST_UNSET_KEY is not set, and the models the rows go to (other, another) need it: no call could succeed',
    );
    expect(() => refuseWithoutKeys(config(), ['other'], new Set(), 'run')).toThrow('and model "other" needs it');
    expect(refuseWithoutKeys(config(), ['fast', 'slow'], new Set(), 'run')).toBe('here');
    expect(refuseWithoutKeys(config(), ['other', 'fast'], new Set(), 'run')).toBe('here');
    // A fallback with its key set can answer.
    expect(refuseWithoutKeys(config({ models: { ...config().models, other: { provider: 'keyless', price, fallbacks: ['fast'] } } }), ['other'], new Set(), 'run')).toBe('here');
    // Routed: any model of the config may answer.
    expect(refuseWithoutKeys(config(), undefined, new Set(), 'run')).toBe('here');
    // Another worker has the key: the rows are left to it.
    expect(refuseWithoutKeys(config(), ['other', 'another'], new Set(['SWITCHYARD_TEST_UNSET_KEY']), 'run')).toBe('elsewhere');
  });
});
