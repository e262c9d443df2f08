import { describe, expect, it } from 'vitest';
import { judgeMessages, readJudgeReply, SCORE_INSTRUCTION } from '../../src/judge/judge-prompt.ts';
import { composeAnswer } from '../../src/sim/answer.ts';

describe('the judge prompt', () => {
  it('holds the request, the answer, the reference and the criteria, and never the answering model', () => {
    const [message, ...rest] = judgeMessages({ request: [{ role: 'user', content: 'What is 2 + 2?' }], answer: '4', reference: 'four', criteria: 'a number only' });
    expect(rest).toEqual([]);
    expect(message!.role).toBe('user');
    expect(message!.content).toContain(SCORE_INSTRUCTION);
    expect(message!.content).toContain('Judge it by this: a number only');
    expect(message!.content).toContain('Request:\nWhat is 2 + 2?');
    expect(message!.content).toContain('Reference answer:\nfour');
    expect(message!.content.endsWith('Answer to grade:\n4')).toBe(true);
  });

  it('leaves out the reference and criteria a row does not have, and names the roles of a longer request', () => {
    const [message] = judgeMessages({ request: [{ role: 'system', content: 'Be terse.' }, { role: 'user', content: 'Hi' }], answer: 'Hello' });
    expect(message!.content).not.toContain('Reference');
    expect(message!.content).not.toContain('Judge it by');
    expect(message!.content).toContain('Request:\nsystem: Be terse.\n\nuser: Hi');
  });
});

describe('reading the judge reply', () => {
  it('takes the first score on the scale and the words after it as the reason', () => {
    expect(readJudgeReply('SCORE: 8\nClear and correct.')).toEqual({ score: 8, reason: 'Clear and correct.' });
    expect(readJudgeReply('**Score:** 10/10 - exact')).toEqual({ score: 10, reason: 'exact' });
    expect(readJudgeReply('score 3')).toEqual({ score: 3, reason: null });
    // A judge that reasons first and scores last: the reasoning is the reason.
    expect(readJudgeReply('The answer names Paris, as the reference does.\n\n**SCORE: 9**')).toEqual({ score: 9, reason: 'The answer names Paris, as the reference does.' });
  });

  it('takes the labelled SCORE over a "score 1-10" said before it (QA: read as 1)', () => {
    expect(readJudgeReply('Using a score 1-10 rubric: the answer is excellent.\n\nSCORE: 9')).toEqual({ score: 9, reason: 'Using a score 1-10 rubric: the answer is excellent.' });
  });

  it('gives no score for a reply without one on the scale, and quotes what it said', () => {
    expect(readJudgeReply('SCORE: 11\nToo kind.')).toEqual({ score: null, reason: 'no score from 1 to 10 in the judge\'s reply: "SCORE: 11 Too kind."' });
    expect(readJudgeReply('SCORE: 7.5')).toMatchObject({ score: null });
    expect(readJudgeReply('I would rather not say.')).toMatchObject({ score: null, reason: expect.stringContaining('"I would rather not say."') });
    expect(readJudgeReply('')).toEqual({ score: null, reason: "no score from 1 to 10 in the judge's reply (it was empty)" });
  });

  it('is what the simulator answers a judge with, so demos and tests get scores', () => {
    const [message] = judgeMessages({ request: [{ role: 'user', content: 'Q' }], answer: 'A' });
    const reply = composeAnswer({ model: 'judge', messages: [{ role: 'user', text: message!.content }], maxTokens: 200, outputTokens: { min: 20, max: 60 } });
    const verdict = readJudgeReply(reply.content);
    expect(verdict.score).toBeGreaterThanOrEqual(1);
    expect(verdict.score).toBeLessThanOrEqual(10);
  });
});
