import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { closestKey, configKeysAt } from '../../src/config/key-suggestion.ts';
import { UsageError } from '../../src/errors.ts';

/** The message parseConfig stops with. */
function problems(raw: unknown): string {
  try {
    parseConfig(raw, 'switchyard.yaml');
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as Error).message;
  }
  throw new Error('the config was accepted');
}

const valid = {
  providers: { local: { base_url: 'http://127.0.0.1:8787/v1' } },
  models: { flash: { provider: 'local', price: { input_per_mtok: 0.14, output_per_mtok: 0.28 } } },
  default_model: 'flash',
};

describe('a config with mistakes', () => {
  it('names every wrong key by its path and says what was expected, typos with the key meant', () => {
    const message = problems({
      providers: { local: { base_url: '127.0.0.1:8787/v1', timeout_ms: 'fast' } },
      models: {
        flash: { provider: 'local', price: { input_per_mtok: 0.14 }, max_output_token: 8192 },
        pro: { price: { input_per_mtok: -1, output_per_mtok: 1 } },
      },
      default_model: 'flash',
      concurency: 64,
      retry: { max_attempt: 3 },
      breaker: { max_wait: 60_000, trip_after: 3 },
      colour: 'blue',
    });
    expect(message.split('\n')).toEqual([
      'Config switchyard.yaml is not valid:',
      '  providers.local.base_url: expected an http(s) URL such as http://127.0.0.1:8787/v1',
      '  providers.local.timeout_ms: expected a number, got a string',
      '  models.flash.price.output_per_mtok: missing (expected a number)',
      '  models.flash: unknown key "max_output_token" (did you mean "max_output_tokens"?)',
      '  models.pro.provider: missing (expected a string)',
      '  models.pro.price.input_per_mtok: must be 0 or more',
      '  retry: unknown key "max_attempt" (did you mean "max_attempts"?)',
      '  breaker: unknown key "max_wait" (did you mean "max_wait_ms"?), unknown key "trip_after" (allowed here: failure_threshold, cooldown_ms, max_wait_ms)',
      '  (top level): unknown key "concurency" (did you mean "concurrency"?), unknown key "colour"',
      'See docs/config.md for every key.',
    ]);
  });

  it('names a model or provider that the config does not define', () => {
    expect(problems({ ...valid, default_model: 'flsh' })).toMatch(/default_model/);
    expect(problems({ ...valid, models: { flash: { provider: 'lokal' } } })).toMatch(/lokal/);
  });
});

describe('key suggestions', () => {
  it('come from the keys allowed where the unknown one stands', () => {
    expect(configKeysAt([])).toContain('concurrency');
    expect(configKeysAt(['models', 'any-name'])).toEqual(expect.arrayContaining(['provider', 'upstream', 'price', 'rpm', 'tpm']));
    expect(configKeysAt(['providers', 'p'])).toEqual(expect.arrayContaining(['base_url', 'api_key_env', 'timeout_ms']));
  });

  it('are made only for near misses, and short keys need a closer match', () => {
    expect(closestKey('modles', ['models', 'default_model'])).toBe('models');
    expect(closestKey('Concurrency', ['concurrency'])).toBe('concurrency');
    expect(closestKey('rpn', ['rpm', 'tpm'])).toBe('rpm');
    expect(closestKey('xyz', ['rpm', 'tpm'])).toBeNull();
    expect(closestKey('colour', ['concurrency', 'models'])).toBeNull();
  });
});
