import { describe, expect, it } from 'vitest';
import { notSet } from '../../src/batch/config-checks.ts';

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
