import { describe, expect, it } from 'vitest';
import { keyVariableNames } from '../../src/queue/worker-registry.ts';

describe('the key variables a worker tells other workers it has', () => {
  it('names the set variables with KEY, TOKEN or SECRET anywhere in the name, never their values', () => {
    const env = {
      OPENAI_API_KEY: 'sk-1',
      DEEPSEEK_KEY_2: 'sk-2',
      OPENAI_API_KEY_PROD: 'sk-3',
      HF_TOKEN: 'hf-1',
      AZURE_CLIENT_SECRET: 's-1',
      EMPTY_API_KEY: '',
      HOME: '/root',
      PATH: '/usr/bin',
    };
    expect(keyVariableNames(env)).toEqual(['AZURE_CLIENT_SECRET', 'DEEPSEEK_KEY_2', 'HF_TOKEN', 'OPENAI_API_KEY', 'OPENAI_API_KEY_PROD']);
  });
});
