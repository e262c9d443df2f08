import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { runDryRun } from '../../src/commands/dry-run.ts';
import { usdToNanos } from '../../src/models/pricing.ts';
import { countMessageTokens } from '../../src/routing/token-count.ts';
import { runCli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

describe('run --dry-run', () => {
  const h = useSimulatorAndRedis('dry-run', { latency_ms: 1 });

  it('routes and prices every row, says what is wrong with the bad ones, and calls nothing', async () => {
    const dir = await tempDir('dry');
    const config = join(dir, 'switchyard.yaml');
    await writeFile(
      config,
      stringify({
        providers: { sim: { base_url: h.sim.url } },
        models: { flash: { provider: 'sim', price: { input_per_mtok: 1, output_per_mtok: 2 } }, pro: { provider: 'sim', price: { input_per_mtok: 10, output_per_mtok: 20 } } },
        default_model: 'flash',
        max_tokens: 100,
        routing: { routes: { simple: ['flash'], complex: ['pro'] } },
      }),
    );
    const input = join(dir, 'in.csv');
    const simple = "What's the capital of France?";
    const complex = 'Analyze the competitive landscape of AI API providers and recommend a strategy for a startup entering the market.';
    await writeFile(input, Buffer.concat([Buffer.from(`prompt,temperature\n"${simple}",\n"${complex}",\nhot,9\n"caf`), Buffer.from([0xe9]), Buffer.from('",\n')]));
    const before = h.sim.stats().requests;

    const result = await runCli(['run', input, '--config', config, '--dry-run', '--batch-id', 'dry', '--budget', '0.0001'], h.env());
    // 1, as the run would exit: two rows could not run.
    expect(result.code, result.stderr).toBe(1);
    const lines = result.stdout.split('\n');
    expect(lines).toContain('2 rows routed, 2 invalid (they would go to errors.jsonl), 0 with no model that fits.');
    expect(lines).toContain('  bad_field 1, the first: line 4: temperature must be a number from 0 to 2, got "9"');
    expect(lines.some((line) => line.startsWith('  bad_encoding 1, the first: line 5 is not UTF-8 text'))).toBe(true);
    // Each row priced on its first choice, output at max_tokens: flash for the simple one, pro for the complex one.
    const tokens = (text: string) => countMessageTokens([{ role: 'user', content: text }]);
    const cost = (prompt: string, inPrice: number, outPrice: number) => (tokens(prompt) * inPrice + 100 * outPrice) / 1e6;
    expect(lines.find((line) => line.startsWith('flash'))).toMatch(new RegExp(`^flash +1 +${tokens(simple)} +100 +\\$`));
    expect(lines.find((line) => line.startsWith('pro'))).toMatch(new RegExp(`^pro +1 +${tokens(complex)} +100 +\\$`));
    const estimate = Number(/Estimated cost: at most \$([\d.]+)/.exec(result.stdout)?.[1]);
    const expected = cost(simple, 1, 2) + cost(complex, 10, 20);
    expect(Math.abs(estimate - expected) / expected).toBeLessThan(0.005); // printed to 3 significant digits
    expect(lines).toContain('Budget: the batch budget of $0.000100 is below this estimate; the calls stop where it runs out (answers are usually shorter than max_tokens), and the rows left end budget_exceeded.');
    // Nothing called, nothing queued.
    expect(h.sim.stats().requests).toBe(before);
    expect(await h.redis.exists(`${h.prefix}:batch:{dry}`)).toBe(0);
  });
});

describe('run --dry-run of structured-output rows', () => {
  const h = useSimulatorAndRedis('dry-run-schema', { latency_ms: 1 });

  it("counts a response_format's JSON schema as prompt, as providers bill it (QA: \"at most $0.000500\" for ten rows that cost $0.128)", async () => {
    const dir = await tempDir('dry-schema');
    const config = join(dir, 'switchyard.yaml');
    await writeFile(config, stringify({ providers: { sim: { base_url: h.sim.url } }, models: { flash: { provider: 'sim', price: { input_per_mtok: 1, output_per_mtok: 2 } } }, default_model: 'flash', max_tokens: 100 }));
    const schema = { type: 'object', properties: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`field_${i}`, { type: 'string', description: `What field ${i} holds, in a sentence.` }])) };
    const params = { response_format: { type: 'json_schema', json_schema: { name: 'form', schema } } };
    const input = join(dir, 'in.jsonl');
    await writeFile(input, `${JSON.stringify({ prompt: 'Fill the form', ...params })}\n`);
    const result = await runCli(['run', input, '--config', config, '--dry-run'], h.env());
    expect(result.code, result.stderr).toBe(0);
    const inputTokens = Number(/^flash +1 +([\d,]+) /m.exec(result.stdout)?.[1]?.replaceAll(',', ''));
    expect(inputTokens).toBeGreaterThan(countMessageTokens([{ role: 'user', content: 'Fill the form' }]) + countMessageTokens([{ role: 'user', content: JSON.stringify(params) }]) - 10);
  });
});

describe('run --dry-run of ensemble rows', () => {
  const h = useSimulatorAndRedis('dry-run-ensemble', { latency_ms: 1 });

  it('prices each member on the model that would answer, and counts a row its members cannot reach min_answers for as not fitting', async () => {
    const dir = await tempDir('dry-ensemble');
    const config = join(dir, 'switchyard.yaml');
    const price = { input_per_mtok: 1, output_per_mtok: 1 };
    await writeFile(
      config,
      stringify({
        providers: { sim: { base_url: h.sim.url } },
        models: { flash: { provider: 'sim', price }, tiny: { provider: 'sim', price, context_window: 40, max_output_tokens: 8 }, pro: { provider: 'sim', price } },
        default_model: 'flash',
        max_tokens: 100,
        ensembles: { council: { members: ['flash', 'tiny'], synthesizer: 'pro' } },
      }),
    );
    const input = join(dir, 'in.csv');
    await writeFile(input, `prompt\nshort one\n"${'a long prompt that tiny cannot hold, '.repeat(10)}"\n`);
    const result = await runCli(['run', input, '--config', config, '--dry-run', '--model', 'council'], h.env());
    expect(result.code, result.stderr).toBe(1);
    const lines = result.stdout.split('\n');
    expect(lines).toContain('1 row routed, 0 invalid (they would go to errors.jsonl), 1 with no model that fits.');
    expect(lines).toContain('  no model that fits 1, the first: line 3: ensemble "council": 1 of 2 members can take this prompt, 2 needed');
    expect(h.sim.stats().requests).toBe(0);
  });
});

describe('run --dry-run of OpenAI Batch lines', () => {
  const h = useSimulatorAndRedis('dry-run-batch-lines', { latency_ms: 1 });

  it('names the request body fields the run would not send, as the run does', async () => {
    const dir = await tempDir('dry-batch-lines');
    const config = join(dir, 'switchyard.yaml');
    await writeFile(config, stringify({ providers: { sim: { base_url: h.sim.url } }, models: { flash: { provider: 'sim' } }, default_model: 'flash' }));
    const line = (id: string, extra: Record<string, unknown>) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions', body: { model: 'flash', messages: [{ role: 'user', content: 'hi' }], ...extra } });
    const input = join(dir, 'requests.jsonl');
    await writeFile(input, `${line('a', { n: 2 })}\n${line('b', { n: 3, tools: [] })}\n${line('c', {})}\n`);
    const result = await runCli(['run', input, '--config', config, '--dry-run'], h.env());
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain("Note: request body fields not sent to the models: n (2 lines), tools (1 line). They are kept in each result's metadata.body_extra.");
    expect(result.stdout).not.toContain('Warning: $');
    // Its model has no price: the estimate is unknown, not a bound.
    expect(result.stdout).toContain('Estimated cost: n/a (no price configured) (input tokens by the o200k tokenizer');
  });
  it('warns of a key variable not set, or set empty, as the run would refuse to start without it', async () => {
    const dir = await tempDir('dry-keys');
    const config = join(dir, 'switchyard.yaml');
    await writeFile(config, stringify({ providers: { sim: { base_url: h.sim.url, api_key_env: 'SY_DRY_KEY' } }, models: { flash: { provider: 'sim' } }, default_model: 'flash' }));
    const input = join(dir, 'in.csv');
    await writeFile(input, 'prompt\nhello\n');
    const unset = await runCli(['run', input, '--config', config, '--dry-run'], h.env());
    expect(unset.stdout).toContain('Warning: $SY_DRY_KEY is not set here: calls to flash would fail with missing_api_key (a run stops before calling anything when no model its rows may use has its key, here or on a worker on its Redis).');
    // As the run would stop, so a preflight in a script fails (QA: it exited 0).
    expect(unset.code).toBe(1);
    expect(unset.stdout).toContain('A run here would stop before queueing, unless a worker on its Redis has the key: $SY_DRY_KEY is not set, and every model in the config needs one');
    const empty = await runCli(['run', input, '--config', config, '--dry-run'], h.env({ SY_DRY_KEY: '' }));
    expect(empty.stdout).toContain('Warning: $SY_DRY_KEY is set but empty here: calls to flash would fail');
    expect(empty.stdout).toContain('$SY_DRY_KEY is set but empty, and every model in the config needs one'); // not "is not set", beside the warning
    const set = await runCli(['run', input, '--config', config, '--dry-run'], h.env({ SY_DRY_KEY: 'k' }));
    expect(set.stdout).not.toContain('SY_DRY_KEY');
    expect(set.code).toBe(0);
    // The batch id is checked as the run would (QA: a dry run passed "a/b", the run refused it).
    const badId = await runCli(['run', input, '--config', config, '--dry-run', '--batch-id', 'a/b'], h.env({ SY_DRY_KEY: 'k' }));
    expect(badId.code).toBe(2);
    expect(badId.stderr).toContain('batch id "a/b" may only use letters, digits');
  });

  it('shows the A/B split it prices the rows by, as the run says it', async () => {
    const dir = await tempDir('dry-ab');
    const config = join(dir, 'switchyard.yaml');
    const price = { input_per_mtok: 1, output_per_mtok: 2 };
    await writeFile(config, stringify({ providers: { sim: { base_url: h.sim.url } }, models: { flash: { provider: 'sim', price }, pro: { provider: 'sim', price } }, default_model: 'flash' }));
    const input = join(dir, 'in.csv');
    await writeFile(input, `id,prompt\n${Array.from({ length: 40 }, (_, i) => `q${i},Question ${i}`).join('\n')}\n`);
    const result = await runCli(['run', input, '--config', config, '--dry-run', '--ab', 'flash=3,pro=1'], h.env());
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('A/B split: each row that names no model goes to flash 75%, pro 25%, by its id.');
  });
});

describe('run --dry-run without --config', () => {
  it('says it estimates with the built-in models, as run says it uses them (QA), and starts no simulator', async () => {
    const dir = await tempDir('dry-builtin');
    const input = join(dir, 'in.csv');
    await writeFile(input, "prompt\nWhat's the capital of France?\n");
    const lines: string[] = [];
    expect(await runDryRun({ file: input }, (line) => lines.push(line))).toBe(0);
    expect(lines[0]).toBe('No --config given: estimating with the built-in models (a run would start their simulator; a dry run starts none and calls nothing).');
    expect(lines.find((line) => line.startsWith('deepseek-v4-flash'))).toMatch(/^deepseek-v4-flash +1 /);
  });

  it('refuses a --judge or --ab the built-in models lack by naming them, not a config it was not given (QA)', async () => {
    const dir = await tempDir('dry-builtin-unknown');
    const input = join(dir, 'in.csv');
    await writeFile(input, 'prompt\nhi\n');
    const say = () => {};
    await expect(runDryRun({ file: input, judge: 'gpt-4o' }, say)).rejects.toThrow(/^--judge "gpt-4o" is not a built-in model \(no --config was given: to call other models, give a config that names them\); built-in models: deepseek-v4-flash, /);
    await expect(runDryRun({ file: input, ab: 'deepseek-v4-flash,gpt-4o' }, say)).rejects.toThrow(/^--ab: "gpt-4o" is not a built-in model \(no --config was given/);
    await expect(runDryRun({ file: input, model: 'gpt-4o' }, say)).rejects.toThrow(/^--model\/--route "gpt-4o" is not a built-in model \(no --config was given/);
  });

  it('trims --prompt-column as the header\'s column names are, so " question " is the question column (QA: refused as no such column)', async () => {
    const dir = await tempDir('dry-column-spaces');
    const input = join(dir, 'in.csv');
    await writeFile(input, 'id, question ,notes\nq1,What is 2 + 2?,x\n');
    const result = await runCli(['run', input, '--dry-run', '--prompt-column', ' question '], {});
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^deepseek-v4-flash +1 /m);
  });
});

describe('run --dry-run with budget.monthly_usd', () => {
  const h = useSimulatorAndRedis('dry-run-month', { latency_ms: 1 });

  it("reads the month's spend as the run would: what is left, exit 1 when the run would refuse it spent (QA: the dry run passed, the run exited 2), and goes on when Redis cannot be reached", async () => {
    const dir = await tempDir('dry-month');
    const cfg = join(dir, 'switchyard.yaml');
    await writeFile(cfg, stringify({ providers: { sim: { base_url: h.sim.url } }, models: { pricey: { provider: 'sim', price: { input_per_mtok: 1, output_per_mtok: 1 } } }, default_model: 'pricey', max_tokens: 100, budget: { monthly_usd: 3.5 } }));
    const input = join(dir, 'in.csv');
    await writeFile(input, 'prompt\nhello\n');
    const month = new Date().toISOString().slice(0, 7);
    const key = `${h.prefix}:budget:month:${month}`;
    const before = h.sim.stats().requests;
    try {
      await h.redis.hset(key, 'spent', usdToNanos(11.69));
      const spent = await runCli(['run', input, '--config', cfg, '--dry-run'], h.env());
      expect(spent.code, spent.stderr).toBe(1);
      expect(spent.stdout).toContain(`Month: $11.69 spent in ${month} (UTC) of budget.monthly_usd $3.50, $0 left (Redis at `);
      expect(spent.stdout).toContain(`A run here would stop before queueing: the month's budget is spent: calls on this Redis cost $11.69 in ${month} (UTC), and budget.monthly_usd is $3.50, so every row that needs a call would end budget_exceeded.`);

      await h.redis.hset(key, 'spent', usdToNanos(1.25));
      const left = await runCli(['run', input, '--config', cfg, '--dry-run'], h.env());
      expect(left.code, left.stderr).toBe(0);
      expect(left.stdout).toContain(`Month: $1.25 spent in ${month} (UTC) of budget.monthly_usd $3.50, $2.25 left (Redis at `);
      expect(left.stdout).toContain(`key prefix "${h.prefix}").`);
      expect(left.stdout).not.toContain('would stop before queueing');

      // No Redis there (a socket path that does not exist): said, and the dry run goes on; it starts none.
      const away = await runCli(['run', input, '--config', cfg, '--dry-run'], h.env({ REDIS_URL: join(dir, 'no-redis.sock') }));
      expect(away.code, away.stderr).toBe(0);
      expect(away.stdout).toMatch(/^Month: the month's spend could not be checked against budget\.monthly_usd \$3\.50 \(Redis at .*no-redis\.sock: .+\); a run refuses to start when it is spent\.$/m);
      expect(away.stdout).toContain('Estimated cost: at most $');
    } finally {
      await h.redis.del(key);
    }
    expect(h.sim.stats().requests).toBe(before);
  });
});
