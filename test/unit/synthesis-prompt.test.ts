import { describe, expect, it } from 'vitest';
import { DEFAULT_SYNTHESIS_PROMPT, synthesisMessages } from '../../src/ensemble/synthesis-prompt.ts';

describe('synthesisMessages', () => {
  const answers = [
    { model: 'alpha', output: 'Paris.' },
    { model: 'beta', output: 'It is Paris, on the Seine.' },
  ];

  it("keeps the row's system message and puts the request and the numbered answers into the instructions", () => {
    const messages = synthesisMessages([{ role: 'system', content: 'Answer in one line.' }, { role: 'user', content: 'Capital of France?' }], answers);
    expect(messages[0]).toEqual({ role: 'system', content: 'Answer in one line.' });
    expect(messages).toHaveLength(2);
    const text = messages[1]!.content as string;
    expect(messages[1]!.role).toBe('user');
    expect(text).toContain('Request:\nCapital of France?');
    expect(text).toContain('Their answers:\n[1]\nParis.\n\n[2]\nIt is Paris, on the Seine.');
    expect(text).not.toContain('alpha'); // answers are weighed by what they say, not by who said it
    expect(text.startsWith(DEFAULT_SYNTHESIS_PROMPT.slice(0, 40))).toBe(true);
  });

  it('writes a conversation out turn by turn, and fills a custom template once (a "{answers}" in the request stays text)', () => {
    const messages = synthesisMessages(
      [{ role: 'user', content: 'Say {answers}' }, { role: 'assistant', content: 'Which?' }, { role: 'user', content: 'Both.' }],
      answers,
      'Q: {question}\nA: {answers}',
    );
    expect(messages).toEqual([{ role: 'user', content: 'Q: user: Say {answers}\n\nassistant: Which?\n\nuser: Both.\nA: [1]\nParis.\n\n[2]\nIt is Paris, on the Seine.' }]);
  });
});
