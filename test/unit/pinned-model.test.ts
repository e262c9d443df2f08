import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.ts';
import { pinnedModel } from '../../src/routing/pinned-model.ts';

describe('pinnedModel (--model, --route)', () => {
  it('is the model either names, none for --route auto, and refuses two different ones', () => {
    expect(pinnedModel({ model: 'flash' })).toBe('flash');
    expect(pinnedModel({ route: 'pro' })).toBe('pro');
    expect(pinnedModel({ route: 'auto' })).toBeUndefined();
    expect(pinnedModel({ model: 'pro', route: 'pro' })).toBe('pro');
    expect(() => pinnedModel({ model: 'flash', route: 'pro' })).toThrow(new UsageError('give either --model or --route, not both'));
    expect(() => pinnedModel({ model: 'flash', route: 'auto' })).toThrow(UsageError);
  });
});
