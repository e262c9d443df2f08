import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.ts';
import { simOptionsFromCli } from '../../src/sim/cli-options.ts';
import { effectiveModel, parseSimOptions } from '../../src/sim/options.ts';

describe('simulator options', () => {
  it('fills defaults from an empty object', () => {
    expect(parseSimOptions({})).toEqual({
      latency_ms: 0,
      latency_jitter_ms: 0,
      tokens_per_second: 0,
      failure_rate: 0,
      seed: 1,
      models: {},
      strict_models: false,
      output_tokens: { min: 20, max: 120 },
    });
  });

  it('rejects bad values with the key path', () => {
    expect(() => parseSimOptions({ failure_rate: 2 })).toThrow(UsageError);
    expect(() => parseSimOptions({ failure_rate: 2 })).toThrow(/failure_rate/);
    expect(() => parseSimOptions({ models: { m: { fail_status: 200 } } })).toThrow(/models\.m\.fail_status/);
    expect(() => parseSimOptions({ output_tokens: { min: 50, max: 10 } })).toThrow(/min must not exceed max/);
    expect(() => parseSimOptions({ latency: 5 })).toThrow(/unknown key/);
  });

  it('resolves per-model overrides over top-level values', () => {
    const options = parseSimOptions({ latency_ms: 100, tokens_per_second: 50, failure_rate: 0.1, rpm: 10, models: { fast: { latency_ms: 5, tpm: 999, fail_status: 503, tokens_per_second: 400 } } });
    expect(effectiveModel(options, 'fast')).toEqual({
      rpm: 10,
      tpm: 999,
      latency_ms: 5,
      latency_jitter_ms: 0,
      tokens_per_second: 400,
      failure_rate: 0.1,
      fail_status: 503,
      context_window: undefined,
      omit_usage: false,
    });
    expect(effectiveModel(options, 'anything')).toMatchObject({ latency_ms: 100, tokens_per_second: 50, rpm: 10, tpm: undefined, fail_status: undefined });
    expect(effectiveModel(options, 'toString').latency_ms).toBe(100); // not fooled by prototype names
  });
});

describe('simulator command-line options', () => {
  it('turns flags into simulator options', () => {
    const options = simOptionsFromCli({
      port: '0',
      latencyMs: '250',
      failureRate: '0.05',
      rpm: '60',
      tpm: 100000,
      seed: '7',
      modelLimits: '{"deepseek-v4-flash":{"rpm":30,"fail_status":503}}',
      models: 'deepseek-v4-flash, glm-4',
      apiKey: 'sim-key',
    });
    expect(options).toMatchObject({
      port: 0,
      host: '127.0.0.1',
      latency_ms: 250,
      failure_rate: 0.05,
      rpm: 60,
      tpm: 100_000,
      seed: 7,
      strict_models: true,
      api_key: 'sim-key',
      models: { 'deepseek-v4-flash': { rpm: 30, fail_status: 503 }, 'glm-4': {} },
    });
    expect(simOptionsFromCli({}).strict_models).toBe(false); // without --models, any name is served
  });

  it('takes the answers\' length in tokens from --output-tokens (QA: long contract summaries could not be simulated from the command line)', () => {
    expect(simOptionsFromCli({ outputTokens: '9000-12000' }).output_tokens).toEqual({ min: 9000, max: 12000 });
    expect(simOptionsFromCli({ outputTokens: ' 3000 ' }).output_tokens).toEqual({ min: 3000, max: 3000 });
    expect(simOptionsFromCli({}).output_tokens).toBeUndefined();
  });

  it('defaults the port to 8787 and leaves unset flags to the defaults', () => {
    const options = simOptionsFromCli({});
    expect(options.port).toBe(8787);
    const { port: _port, host: _host, ...simOnly } = options;
    expect(parseSimOptions(simOnly)).toMatchObject({ latency_ms: 0, failure_rate: 0, models: {} });
    expect(options.latency_ms).toBeUndefined();
    expect(simOptionsFromCli({ apiKey: '' }).api_key).toBeUndefined(); // an empty SIM_API_KEY means no key
  });

  it('reports bad flags as usage errors', () => {
    expect(() => simOptionsFromCli({ latencyMs: 'slow' })).toThrow(/--latency-ms expects a number, got "slow"/);
    expect(() => simOptionsFromCli({ port: '70000' })).toThrow(/--port/);
    expect(() => simOptionsFromCli({ models: ' , ' })).toThrow(/--models expects model names separated by commas/);
    expect(() => simOptionsFromCli({ failureRate: '1.5' })).toThrow(UsageError);
    expect(() => simOptionsFromCli({ modelLimits: '{nope' })).toThrow(/--model-limits expects JSON/);
    expect(() => simOptionsFromCli({ outputTokens: 'long' })).toThrow(/--output-tokens expects a range of tokens such as 2000-4000/);
    expect(() => simOptionsFromCli({ outputTokens: '4000-2000' })).toThrow(/min must not exceed max/);
    expect(() => simOptionsFromCli({ outputTokens: '0' })).toThrow(UsageError);
    expect(() => simOptionsFromCli({ modelLimits: '{"m":{"rpm":-1}}' })).toThrow(/m\.rpm/);
  });
});
