import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';

export async function tempDir(name: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `switchyard-${name}-`));
}

export async function readJsonLines<T>(path: string): Promise<T[]> {
  const text = await readFile(path, 'utf8');
  return text.split('\n').filter((line) => line.length > 0).map((line) => JSON.parse(line) as T);
}

/** A switchyard.yaml pointing every model at one simulator. */
export async function writeSimConfig(dir: string, simUrl: string, extra: Record<string, unknown> = {}, models: string[] = ['fast', 'slow']): Promise<string> {
  const config = {
    providers: { sim: { base_url: simUrl, timeout_ms: 10_000 } },
    models: Object.fromEntries(models.map((name, i) => [name, { provider: 'sim', price: { input_per_mtok: 0.14 * (i + 1), output_per_mtok: 0.28 * (i + 1) } }])),
    default_model: models[0],
    retry: { max_attempts: 6, base_delay_ms: 5, max_delay_ms: 50 },
    // Injected failures are random: five in a row (about 1 run in 20 at a 15% rate) would open a
    // circuit for 30 s and fail the rows pinned to that model. Circuits have tests of their own.
    breaker: { failure_threshold: 1000 },
    ...extra,
  };
  const path = join(dir, 'switchyard.yaml');
  await writeFile(path, stringify(config));
  return path;
}

export async function writePromptsCsv(dir: string, rows: number, options: { model?: (row: number) => string | undefined } = {}): Promise<string> {
  const lines = ['id,prompt,model,topic'];
  for (let row = 1; row <= rows; row++) {
    lines.push(`r${row},"Question ${row}: explain item ${row}, briefly",${options.model?.(row) ?? ''},topic-${row % 7}`);
  }
  const path = join(dir, 'prompts.csv');
  await writeFile(path, `${lines.join('\n')}\n`);
  return path;
}
