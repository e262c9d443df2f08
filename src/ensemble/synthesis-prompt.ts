import type { ChatMessage } from '../input/row.ts';

/** What the synthesizer is told when the ensemble sets no synthesis_prompt of its own. */
export const DEFAULT_SYNTHESIS_PROMPT = `Several assistants answered the same request independently. Write the single best answer to it.
Keep what they agree on and what is correct, settle their disagreements on the merits, fix their mistakes, and leave out what is wrong.
Reply with the answer itself, as if you were answering the request directly: do not mention the assistants or compare them.

Request:
{question}

Their answers:
{answers}`;

export interface MemberAnswer {
  model: string;
  output: string;
}

/**
 * The synthesizer's messages: the row's own system message (if any) stays in force, and one user
 * message holds the instructions with the row's request and the members' answers put in. The
 * answers are numbered, not named, so the synthesis weighs what they say rather than who said it.
 */
export function synthesisMessages(request: readonly ChatMessage[], answers: readonly MemberAnswer[], template = DEFAULT_SYNTHESIS_PROMPT): ChatMessage[] {
  const system = request.filter((message) => message.role === 'system' || message.role === 'developer');
  const conversation = request.filter((message) => message.role !== 'system' && message.role !== 'developer');
  const question = conversation.length === 1 ? conversation[0]!.content : conversation.map((message) => `${message.role}: ${message.content}`).join('\n\n');
  const numbered = answers.map((answer, i) => `[${i + 1}]\n${answer.output}`).join('\n\n');
  // One pass over the template, so a {answers} inside the question is not filled in again.
  const content = template.replace(/\{question\}|\{answers\}/g, (slot) => (slot === '{question}' ? question : numbered));
  return [...system, { role: 'user', content }];
}
