/**
 * A whole chat-completion stream as one server-sent-events payload: a role chunk, one content
 * delta per word (per piece of JSON), a chunk carrying finish_reason, an optional usage chunk, then `data: [DONE]`.
 * The fixed part of each chunk is serialised once, so a long answer stays cheap to stream.
 */

export interface StreamInput {
  id: string;
  created: number;
  model: string;
  content: string;
  finishReason: string;
  /** JSON content: split at commas and colons as well as spaces, so compact JSON still streams in pieces. */
  json?: boolean | undefined;
  /** Present when the request asked for stream_options.include_usage. */
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | undefined;
}

/** Words with their leading whitespace: joined, they give back `content` exactly. */
export function splitDeltas(content: string): string[] {
  return content.match(/\s*\S+|\s+/g) ?? [content];
}

/** Pieces of JSON text, each ending at a comma or colon or before whitespace: joined, they give back `content` exactly. */
export function splitJsonDeltas(content: string): string[] {
  return content.match(/\s*[^\s,:]*[,:]|\s*[^\s,:]+|\s+/g) ?? [content];
}

export function streamPayload(input: StreamInput): string {
  return streamParts(input).join('');
}

/** The stream's events one by one: the role chunk, a chunk per word, the finish, usage, [DONE]. */
export function streamParts(input: StreamInput): string[] {
  const usageField = input.usage ? ',"usage":null' : '';
  const head = `data: {"id":${JSON.stringify(input.id)},"object":"chat.completion.chunk","created":${input.created},"model":${JSON.stringify(input.model)},"choices":[`;
  const chunk = (choice: string, tail = usageField) => `${head}${choice}]${tail}}\n\n`;
  const parts = [chunk('{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}')];
  for (const delta of input.json ? splitJsonDeltas(input.content) : splitDeltas(input.content)) {
    parts.push(chunk(`{"index":0,"delta":{"content":${JSON.stringify(delta)}},"finish_reason":null}`));
  }
  parts.push(chunk(`{"index":0,"delta":{},"finish_reason":${JSON.stringify(input.finishReason)}}`));
  if (input.usage) parts.push(chunk('', `,"usage":${JSON.stringify(input.usage)}`));
  parts.push('data: [DONE]\n\n');
  return parts;
}
