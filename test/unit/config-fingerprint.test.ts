import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';
import { configFingerprint } from '../../src/config/config-fingerprint.ts';
import { builtInConfig } from '../../src/config/defaults.ts';

const parse = (raw: unknown) => configSchema.parse(raw);

describe("a config's fingerprint, which a server's batches record", () => {
  const base = { providers: { p: { base_url: 'https://user:secret@gateway.example/v1' } }, models: { a: { provider: 'p', rpm: 600 }, b: { provider: 'p' } }, default_model: 'a' };

  it('is the same for the same config written in another order, and differs for other limits or providers', () => {
    const reordered = { default_model: 'a', models: { b: { provider: 'p' }, a: { rpm: 600, provider: 'p' } }, providers: { p: { base_url: 'https://user:secret@gateway.example/v1' } } };
    expect(configFingerprint(parse(reordered), false)).toBe(configFingerprint(parse(base), false));
    expect(configFingerprint(parse({ ...base, models: { ...base.models, a: { provider: 'p', rpm: 6000 } } }), false)).not.toBe(configFingerprint(parse(base), false));
    expect(configFingerprint(parse({ ...base, providers: { p: { base_url: 'https://other.example/v1' } } }), false)).not.toBe(configFingerprint(parse(base), false));
    expect(configFingerprint(parse(base), false)).toMatch(/^[0-9a-f]{12}$/);
  });

  it("leaves out a base_url's password, and the built-in simulator's port, which differs each time", () => {
    const otherPassword = { ...base, providers: { p: { base_url: 'https://user:another@gateway.example/v1' } } };
    expect(configFingerprint(parse(otherPassword), false)).toBe(configFingerprint(parse(base), false));
    expect(configFingerprint(builtInConfig('http://127.0.0.1:41001/v1'), true)).toBe(configFingerprint(builtInConfig('http://127.0.0.1:52002/v1'), true));
  });
});
