import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.ts';
import { pinnedModel, refuseUnknownPinned } from '../../src/routing/pinned-model.ts';

describe('--model and --route', () => {
  it('pins the model either names; --route auto pins none; both, differing, are refused', () => {
    expect(pinnedModel({ model: 'flash' })).toBe('flash');
    expect(pinnedModel({ route: 'flash' })).toBe('flash');
    expect(pinnedModel({ route: 'auto' })).toBeUndefined();
    expect(() => pinnedModel({ model: 'flash', route: 'pro' })).toThrow(new UsageError('give either --model or --route, not both'));
  });

  it('refuses a name the config lacks with the one meant, and says --route auto routes by task type', () => {
    expect(() => refuseUnknownPinned('aut', ['flash', 'pro'])).toThrow(
      new UsageError('--model/--route "aut" is not in the config (did you mean "auto"?); models and ensembles: flash, pro (or --route auto, to route each row by its task type)'),
    );
    expect(() => refuseUnknownPinned('flash', ['flash', 'pro'])).not.toThrow();
  });

  it('names the built-in models, not a config, when the run has no --config (QA: "not in the config" with no config given)', () => {
    expect(() => refuseUnknownPinned('gpt-4o', ['flash', 'pro'], true)).toThrow(
      new UsageError(
        '--model/--route "gpt-4o" is not a built-in model (no --config was given: to call other models, give a config that names them); built-in models and ensembles: flash, pro (or --route auto, to route each row by its task type)',
      ),
    );
  });
});
