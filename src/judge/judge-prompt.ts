import type { ChatMessage } from '../input/row.ts';

/** The scale a judge scores on: whole numbers, worst to best. */
export const SCORE_MIN = 1;
export const SCORE_MAX = 10;

/** How the judge must start its reply; the simulator knows it too, so demo and tests get scores. */
export const SCORE_INSTRUCTION = `Reply with "SCORE: <a whole number from ${SCORE_MIN} to ${SCORE_MAX}>" on the first line, then one or two sentences on why.`;

export interface JudgeInput {
  /** The row's request, as the answering model got it. */
  request: readonly ChatMessage[];
  answer: string;
  /** The row's reference answer (judge.reference_column), when it has one. */
  reference?: string | undefined;
  /** What a good answer does here (judge.criteria), when the config says. */
  criteria?: string | undefined;
}

/**
 * The judge's messages: one user message with the request, the answer and, when the row has one,
 * the reference answer to compare with. The answering model is not named, so the judge scores
 * what was said rather than who said it (an A/B comparison depends on that).
 */
export function judgeMessages(input: JudgeInput): ChatMessage[] {
  const question = input.request.map((message) => (input.request.length === 1 ? message.content : `${message.role}: ${message.content}`)).join('\n\n');
  const parts = [
    `You are grading an assistant's answer to a request. Score it from ${SCORE_MIN} (wrong, unhelpful or off the point) to ${SCORE_MAX} (correct, complete and clear).`,
    ...(input.criteria ? [`Judge it by this: ${input.criteria}`] : []),
    ...(input.reference !== undefined ? ['A reference answer is given: an answer that agrees with it in substance is correct, whatever its wording.'] : []),
    SCORE_INSTRUCTION,
    `Request:\n${question}`,
    ...(input.reference !== undefined ? [`Reference answer:\n${input.reference}`] : []),
    `Answer to grade:\n${input.answer}`,
  ];
  return [{ role: 'user', content: parts.join('\n\n') }];
}

export type JudgeVerdict = { score: number; reason: string | null } | { score: null; reason: string };

/** "SCORE: 8", "Score: 8/10", "**SCORE:** 8": the label the instruction asks for. */
const LABELLED_SCORE = /score\s*\**\s*:\s*\**\s*(\d+(?:\.\d+)?)(?:\s*\/\s*10)?/gi;
/** A looser "score 8" or "score - 8", for a judge that left out the colon. */
const LOOSE_SCORE = /score\W{0,4}(\d+(?:\.\d+)?)(?:\s*\/\s*10)?/i;

/**
 * The score in a judge's reply: the first labelled "SCORE: n" on the scale (a "score 1-10 rubric"
 * said before it is not one), else the first looser "score n"; the text after it is the reason, or
 * the text before it for a judge that reasons first and scores last (as reasoning models tend to).
 * A reply without a score on the scale gives none, and says so.
 */
export function readJudgeReply(reply: string): JudgeVerdict {
  const onScale = (found: RegExpExecArray) => Number.isInteger(Number(found[1])) && Number(found[1]) >= SCORE_MIN && Number(found[1]) <= SCORE_MAX;
  const match = [...reply.matchAll(LABELLED_SCORE)].find(onScale) ?? LOOSE_SCORE.exec(reply);
  const score = match ? Number(match[1]) : NaN;
  if (!match || !Number.isInteger(score) || score < SCORE_MIN || score > SCORE_MAX) {
    const said = reply.replace(/\s+/g, ' ').trim().slice(0, 120);
    return { score: null, reason: `no score from ${SCORE_MIN} to ${SCORE_MAX} in the judge's reply${said ? `: "${said}"` : ' (it was empty)'}` };
  }
  const after = reply.slice(match.index + match[0].length).replace(/^[\s*:.,;)\]-]+/, '').replace(/\s+/g, ' ').trim();
  const before = reply.slice(0, match.index).replace(/[\s*#:(\[-]+$/, '').replace(/\s+/g, ' ').trim();
  const reason = after || before;
  return { score, reason: reason === '' ? null : reason };
}
