/**
 * The script a user would write instead of Switchyard: read the CSV with csv-parse, call the
 * endpoint through the plain `openai` SDK with p-limit at the same concurrency, append each answer
 * to a JSONL file. Same request as Switchyard sends (model, user message, temperature 0.7,
 * max_tokens 1024) and, to be fair, SDK retries off (`maxRetries: 0`) as Switchyard has them.
 *
 * Usage: node bench/baseline-plain-sdk.ts <prompts.csv> <base_url> <out.jsonl> [concurrency=50] [model=fast]
 * Exits 0 when every row got an answer, 1 otherwise.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { parse } from 'csv-parse';
import OpenAI from 'openai';
import pLimit from 'p-limit';

const [csvPath, baseURL, outPath, concurrencyArg = '50', model = 'fast'] = process.argv.slice(2);
if (!csvPath || !baseURL || !outPath) {
  console.error('usage: node bench/baseline-plain-sdk.ts <prompts.csv> <base_url> <out.jsonl> [concurrency] [model]');
  process.exit(2);
}

const client = new OpenAI({ baseURL, apiKey: 'no-key', maxRetries: 0, timeout: 30_000 });
const limit = pLimit(Number(concurrencyArg));
const out = createWriteStream(outPath);
let failed = 0;

async function ask(row: { id: string; prompt: string }): Promise<void> {
  const started = Date.now();
  try {
    const completion = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: row.prompt }],
      temperature: 0.7,
      max_tokens: 1024,
    });
    const usage = completion.usage;
    out.write(`${JSON.stringify({ id: row.id, output: completion.choices[0]?.message.content ?? '', input_tokens: usage?.prompt_tokens, output_tokens: usage?.completion_tokens, latency_ms: Date.now() - started, started_at: new Date(started).toISOString() })}\n`);
  } catch (error) {
    failed++;
    out.write(`${JSON.stringify({ id: row.id, error: (error as Error).message })}\n`);
  }
}

const tasks: Promise<void>[] = [];
const parser = createReadStream(csvPath).pipe(parse({ columns: true, skip_empty_lines: true }));
for await (const row of parser as AsyncIterable<{ id: string; prompt: string }>) {
  tasks.push(limit(() => ask(row)));
}
await Promise.all(tasks);
await new Promise<void>((resolve) => out.end(resolve));
console.log(`${tasks.length} rows, ${failed} failed -> ${outPath}`);
process.exitCode = failed === 0 ? 0 : 1;
