import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';
import { modelEndpoint } from '../../src/limits/model-endpoint.ts';

describe('modelEndpoint', () => {
  it('names the provider URL and the upstream model, so one endpoint is one key whatever the config calls it', () => {
    const config = configSchema.parse({
      providers: { a: { base_url: 'https://api.example.com/v1/' }, b: { base_url: 'https://api.example.com/v1' }, c: { base_url: 'http://127.0.0.1:8787/v1' } },
      models: { flash: { provider: 'a', upstream: 'deepseek-chat' }, cheap: { provider: 'b', upstream: 'deepseek-chat' }, local: { provider: 'c' } },
      default_model: 'flash',
    });
    expect(modelEndpoint(config, 'flash')).toBe('https://api.example.com/v1 deepseek-chat');
    expect(modelEndpoint(config, 'cheap')).toBe(modelEndpoint(config, 'flash'));
    expect(modelEndpoint(config, 'local')).toBe('http://127.0.0.1:8787/v1 local');
    expect(modelEndpoint(config, 'not-configured')).toBe('not-configured');
  });
});
