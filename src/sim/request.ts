import { z } from 'zod';
import type { AnswerFormat } from './answer.ts';

/**
 * The part of an OpenAI chat-completions body the simulator reads. Unknown fields (temperature,
 * tools, ...) are accepted and ignored, as a lenient provider would; the fields it reads get the
 * provider's 400 when malformed (a `response_format: "json"`, a `seed: "abc"`).
 */

const textPartSchema = z.looseObject({ type: z.string(), text: z.string().optional() });

const chatMessageSchema = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: z.union([z.string(), z.array(textPartSchema), z.null()]).optional(),
});

const tokenLimit = z.number().int().positive().nullish();

const responseFormatSchema = z.discriminatedUnion('type', [
  z.looseObject({ type: z.literal('text') }),
  z.looseObject({ type: z.literal('json_object') }),
  z.looseObject({
    type: z.literal('json_schema'),
    json_schema: z.looseObject({
      name: z.string().min(1),
      schema: z.union([z.looseObject({}), z.boolean()]).optional(),
      strict: z.boolean().nullish(),
    }),
  }),
]);

const plainRequestSchema = z.looseObject({
  model: z.string().min(1),
  messages: z.array(chatMessageSchema).min(1),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
  max_tokens: tokenLimit,
  max_completion_tokens: tokenLimit,
});

/** With the fields that change what the answer is, beside the messages. */
const chatRequestSchema = plainRequestSchema.extend({
  response_format: responseFormatSchema.nullish(),
  stop: z.union([z.string(), z.array(z.string())]).nullish(),
  seed: z.number().int().nullish(),
});

export type ChatRequest = z.infer<typeof chatRequestSchema>;

/**
 * The request, or what is wrong with it. A body with none of the answer fields is parsed without
 * them: the throughput benchmarks' plain requests pay nothing for what they do not send.
 */
export function parseChatRequest(body: unknown): z.ZodSafeParseResult<ChatRequest> {
  const withAnswerFields = typeof body === 'object' && body !== null && ('response_format' in body || 'stop' in body || 'seed' in body);
  // Without those keys both schemas give the same data.
  return withAnswerFields ? chatRequestSchema.safeParse(body) : (plainRequestSchema.safeParse(body) as z.ZodSafeParseResult<ChatRequest>);
}

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

/** The answer's format the request asks for; undefined for text. */
export function requestedFormat(request: ChatRequest): AnswerFormat | undefined {
  const format = request.response_format;
  if (!format || format.type === 'text') return undefined;
  return format.type === 'json_schema' ? { type: 'json_schema', schema: format.json_schema.schema } : { type: 'json_object' };
}

/** The stop sequences as a list; undefined for none. */
export function stopSequences(request: ChatRequest): readonly string[] | undefined {
  const { stop } = request;
  return typeof stop === 'string' ? [stop] : (stop ?? undefined);
}

/** "messages.0.role: Invalid option ..." for the first problem, and the param it names. */
export function describeRequestError(error: z.ZodError): { message: string; param: string | null } {
  const issue = error.issues[0];
  if (!issue) return { message: 'Invalid request body.', param: null };
  const param = issue.path.length > 0 ? issue.path.map(String).join('.') : null;
  return { message: `Invalid request body: ${param ?? '(body)'}: ${issue.message}`, param };
}
