import { describe, expect, it } from 'vitest';
import { requestFieldProblem } from '../../src/input/request-fields.ts';

describe('a request field of the wrong type', () => {
  it('is shown cut to 80 characters, never inside a surrogate pair (review: half an emoji is a lone surrogate, which the reader refuses in input)', () => {
    // The JSON text is a quote, 77 x's, then the emoji across the 79th and 80th UTF-16 units.
    const message = requestFieldProblem({ seed: `${'x'.repeat(77)}😀 and more words past the cut` });
    expect(message).toBe(`seed must be an integer, got "${'x'.repeat(77)}…`);
    expect(requestFieldProblem({ seed: `${'x'.repeat(76)}😀 and more words past the cut` })).toBe(`seed must be an integer, got "${'x'.repeat(76)}😀…`);
    expect(requestFieldProblem({ seed: 'short' })).toBe('seed must be an integer, got "short"');
  });
});
