import { z } from 'zod';

/**
 * The part of an OpenAI chat-completions body the simulator reads. Unknown fields (temperature,
 * tools, ...) are accepted and ignored, as a lenient provider would.
 */

const textPartSchema = z.looseObject({ type: z.string(), text: z.string().optional() });

const chatMessageSchema = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: z.union([z.string(), z.array(textPartSchema), z.null()]).optional(),
});

const tokenLimit = z.number().int().positive().nullish();

export const chatRequestSchema = z.looseObject({
  model: z.string().min(1),
  messages: z.array(chatMessageSchema).min(1),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
  max_tokens: tokenLimit,
  max_completion_tokens: tokenLimit,
});

export type ChatRequest = z.infer<typeof chatRequestSchema>;
export type ChatMessage = z.infer<typeof chatMessageSchema>;

/** A message's text: the string content, or its text parts joined; images and nulls count as empty. */
export function messageText(message: ChatMessage): string {
  const { content } = message;
  if (typeof content === 'string') return content;
  if (!content) return '';
  return content.map((part) => part.text ?? '').join('');
}

/** The completion budget the caller asked for, if any (max_completion_tokens wins, as in the API). */
export function requestedMaxTokens(request: ChatRequest): number | undefined {
  return request.max_completion_tokens ?? request.max_tokens ?? undefined;
}

/** "messages.0.role: Invalid option ..." for the first problem, and the param it names. */
export function describeRequestError(error: z.ZodError): { message: string; param: string | null } {
  const issue = error.issues[0];
  if (!issue) return { message: 'Invalid request body.', param: null };
  const param = issue.path.length > 0 ? issue.path.map(String).join('.') : null;
  return { message: `Invalid request body: ${param ?? '(body)'}: ${issue.message}`, param };
}
