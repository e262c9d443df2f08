import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import type { CallRecord, RowResult } from '../../src/output/records.ts';
import type { Report } from '../../src/output/report-json.ts';
import { runCli, spawnCli, waitForOutput } from '../helpers/cli.ts';
import { readJsonLines, tempDir, writePromptsCsv } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';
import { startSimulator } from '../../src/sim/server.ts';

const price = { input_per_mtok: 0.2, output_per_mtok: 0.4 };

describe('routing, context windows, fallback, circuit breaker and auth errors, end to end', () => {
  const h = useSimulatorAndRedis('routing', { api_key: 'right-key', latency_ms: 1, models: { dead: { fail_status: 500 }, 'gpt-typo': { fail_status: 404 }, 'gpt-typo2': { fail_status: 404 }, 'gpt-busy': { fail_status: 429 } } });

  async function config(dir: string, body: Record<string, unknown>): Promise<string> {
    const path = join(dir, 'switchyard.yaml');
    await writeFile(path, stringify({ providers: { sim: { base_url: h.sim.url, api_key_env: 'SIM_KEY' } }, retry: { max_attempts: 2, base_delay_ms: 5, max_delay_ms: 20 }, ...body }));
    return path;
  }

  it("routes the design source's three examples as its comments say", async () => {
    const dir = await tempDir('route3');
    const cfg = await config(dir, {
      models: { flash: { provider: 'sim', price }, pro: { provider: 'sim', price }, writer: { provider: 'sim', price } },
      default_model: 'flash',
      routing: { routes: { simple: ['flash'], coding: ['flash'], complex: ['pro'], creative: ['writer'] } },
    });
    const input = join(dir, 'in.csv');
    await writeFile(
      input,
      [
        'id,prompt',
        `capital,What's the capital of France?`,
        'bst,"Write a Python function to implement a binary search tree with insertion, deletion, and traversal methods."',
        'landscape,"Analyze the competitive landscape of AI API providers in 2026 and recommend a strategy for a startup looking to enter the market. Consider pricing, model capabilities, and go-to-market approaches."',
        'read,Can you read this paragraph and tell me what it says?',
      ].join('\n'),
    );
    const out = join(dir, 'out');
    const run = await runCli(['run', input, '--config', cfg, '--out', out, '--batch-id', 'route3'], h.env({ SIM_KEY: 'right-key' }));
    expect(run.code, run.stderr).toBe(0);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    const byId = Object.fromEntries(results.map((r) => [r.id, r]));
    expect(byId.capital).toMatchObject({ task_type: 'simple', final_model: 'flash', models_tried: ['flash'], fallback_reason: null });
    expect(byId.bst).toMatchObject({ task_type: 'coding', final_model: 'flash' });
    expect(byId.landscape).toMatchObject({ task_type: 'complex', final_model: 'pro' });
    expect(byId.landscape!.route_reason).toContain('complex');
    expect(byId.read!.task_type).toBe('simple'); // "read" contains "ad", but only whole words count

    const pinned = await runCli(['run', input, '--config', cfg, '--out', join(dir, 'pinned'), '--batch-id', 'route3-pinned', '--route', 'writer'], h.env({ SIM_KEY: 'right-key' }));
    expect(pinned.code, pinned.stderr).toBe(0);
    const pinnedResults = await readJsonLines<RowResult>(join(dir, 'pinned', 'results.jsonl'));
    expect(pinnedResults.every((r) => r.final_model === 'writer' && r.route_reason.includes('writer'))).toBe(true);
  });

  it('an LLM classifier labels rows (its calls are cost records); when its answer names no type, the rules decide', async () => {
    const dir = await tempDir('llmclass');
    const cfg = await config(dir, {
      models: { cheap: { provider: 'sim', price }, flash: { provider: 'sim', price }, writer: { provider: 'sim', price } },
      default_model: 'flash',
      routing: { classifier: 'llm', llm_classifier: { model: 'cheap' }, routes: { creative: ['writer'], simple: ['flash'] } },
    });
    const input = join(dir, 'in.csv');
    // The simulator's answer echoes the prompt's start, so "Creative ..." comes back labelled creative.
    await writeFile(input, ['id,prompt', 'a,Creative task: a limerick about queues', 'b,What is the capital of Peru?'].join('\n'));
    const out = join(dir, 'out');
    const run = await runCli(['run', input, '--config', cfg, '--out', out, '--batch-id', 'llmclass'], h.env({ SIM_KEY: 'right-key' }));
    expect(run.code, run.stderr).toBe(0);
    const byId = Object.fromEntries((await readJsonLines<RowResult>(join(out, 'results.jsonl'))).map((r) => [r.id, r]));
    expect(byId.a).toMatchObject({ task_type: 'creative', final_model: 'writer' });
    expect(byId.a!.route_reason).toMatch(/^llm/);
    expect(byId.b).toMatchObject({ task_type: 'simple', final_model: 'flash' });
    expect(byId.b!.route_reason).toContain('rules');
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(calls.filter((c) => c.purpose === 'classify').map((c) => c.model)).toEqual(['cheap', 'cheap']);
    expect(calls.filter((c) => c.purpose === 'classify').every((c) => (c.cost_usd ?? 0) > 0)).toBe(true);
  });

  it('a row the budget stopped keeps its label: the resume that finishes it does not pay the LLM classifier again', async () => {
    const dir = await tempDir('llmclass-budget');
    // The answers cost about 5,000 times what a label does: the budget runs out on answers, after every row was labelled.
    const cfg = await config(dir, {
      models: { cheap: { provider: 'sim', price }, pricey: { provider: 'sim', price: { input_per_mtok: 1000, output_per_mtok: 2000 } } },
      default_model: 'pricey',
      max_tokens: 100,
      routing: { classifier: 'llm', llm_classifier: { model: 'cheap' } },
    });
    const input = await writePromptsCsv(dir, 20);
    const out = join(dir, 'out');
    const first = await runCli(['run', input, '--config', cfg, '--out', out, '--batch-id', 'llmclass-budget', '--budget', '0.6', '--concurrency', '2'], h.env({ SIM_KEY: 'right-key' }));
    expect(first.code, first.stderr).toBe(1);
    const stopped = (await readJsonLines<RowResult>(join(out, 'results.jsonl'))).filter((r) => r.error?.code === 'budget_exceeded');
    expect(stopped.length).toBeGreaterThan(5);
    const resumed = await runCli(['run', '--resume', 'llmclass-budget', '--budget', '100'], h.env({ SIM_KEY: 'right-key' }));
    expect(resumed.code, resumed.stderr).toBe(0);
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    const labels = calls.filter((c) => c.purpose === 'classify');
    // One label per row, whichever run labelled it.
    expect(labels.map((c) => c.row).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.every((r) => r.status === 'succeeded' && r.route_reason.startsWith('llm'))).toBe(true);
  });

  it('rows wait for the LLM classifier\'s rate-limit slot (parked, not sleeping in the worker) rather than quietly falling back to the rules', async () => {
    const dir = await tempDir('llmclass-rpm');
    // 120 requests a minute: one every 0.5 s, further apart than limits.inline_wait_ms (200 ms).
    const cfg = await config(dir, {
      models: { cheap: { provider: 'sim', price, rpm: 120 }, flash: { provider: 'sim', price } },
      default_model: 'flash',
      routing: { classifier: 'llm', llm_classifier: { model: 'cheap' } },
    });
    const input = join(dir, 'in.csv');
    await writeFile(input, ['id,prompt', ...Array.from({ length: 5 }, (_, i) => `q${i},Coding question ${i}: how do I reverse a list?`)].join('\n'));
    const out = join(dir, 'out');
    const run = await runCli(['run', input, '--config', cfg, '--out', out, '--batch-id', 'llmclass-rpm'], h.env({ SIM_KEY: 'right-key' }));
    expect(run.code, run.stderr).toBe(0);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results.map((r) => [r.task_type, r.route_reason])).toEqual(results.map(() => ['coding', 'llm: coding']));
    const classified = (await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).filter((c) => c.purpose === 'classify');
    expect(classified).toHaveLength(5);
    // Paced at the model's rate: the five calls spread over about two seconds.
    const starts = classified.map((c) => Date.parse(c.started_at)).sort((a, b) => a - b);
    expect(starts.at(-1)! - starts[0]!).toBeGreaterThanOrEqual(1500);
  });

  it('a row stopped while it waits for its answer keeps its LLM label: the resume does not classify it (and pay) again', async () => {
    const dir = await tempDir('llmclass-stop');
    // Labelled at once; answered one a second (60 rpm), so most rows wait for the answer when stopped.
    const cfg = await config(dir, {
      models: { cheap: { provider: 'sim', price }, slow: { provider: 'sim', price, rpm: 60 } },
      default_model: 'slow',
      routing: { classifier: 'llm', llm_classifier: { model: 'cheap' } },
    });
    const input = join(dir, 'in.csv');
    await writeFile(input, ['id,prompt', ...Array.from({ length: 6 }, (_, i) => `q${i},Coding question ${i}: how do I reverse a list?`)].join('\n'));
    const out = join(dir, 'out');
    const args = ['run', input, '--config', cfg, '--out', out, '--batch-id', 'llmclass-stop'];
    const run = spawnCli(args, h.env({ SIM_KEY: 'right-key' }));
    await waitForOutput(() => run.output().stdout, 'Read 6 rows', 20_000);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    run.kill('SIGINT');
    expect((await run.done).code).toBe(130);
    const resumed = await runCli(args, h.env({ SIM_KEY: 'right-key' }));
    expect(resumed.code, resumed.stderr).toBe(0);
    const classified = (await readJsonLines<CallRecord>(join(out, 'costs.jsonl'))).filter((c) => c.purpose === 'classify');
    expect(classified.map((c) => c.row).sort()).toEqual([1, 2, 3, 4, 5, 6]);
    expect((await readJsonLines<RowResult>(join(out, 'results.jsonl'))).map((r) => r.route_reason)).toEqual(Array(6).fill('llm: coding'));
  });

  it('skips a model whose context window cannot hold the prompt, and says so', async () => {
    const dir = await tempDir('ctx');
    const cfg = await config(dir, {
      models: { small: { provider: 'sim', price, context_window: 400 }, big: { provider: 'sim', price, context_window: 100_000, fallbacks: ['small'] } },
      default_model: 'small',
      max_tokens: 100,
      routing: { routes: { simple: ['small', 'big'], moderate: ['small', 'big'], complex: ['small'] } },
    });
    const input = join(dir, 'in.jsonl');
    const long = 'Tell me about lighthouses. '.repeat(60);
    const schema = { type: 'object', properties: Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`field_${i}`, { type: 'string', description: `What field ${i} holds, in a sentence.` }])) };
    const formSchema = { type: 'json_schema', json_schema: { name: 'form', schema } };
    const huge = `Analyze and compare these: ${'lighthouse keepers and ships '.repeat(300)}`;
    const rows = [
      { id: 'short', prompt: 'Hello there' },
      { id: 'long', prompt: long },
      { id: 'huge', prompt: huge },
      { id: 'long-on-big', prompt: long, model: 'big' },
      // A short prompt whose answer asks more room than the window has (QA: said as the prompt no model could take).
      { id: 'greedy', prompt: 'Hello there', model: 'small', max_tokens: 9000 },
      // A short prompt with a structured output's schema that small's window cannot hold: providers read the schema as prompt (QA: it was sent, and refused 400).
      { id: 'schema', prompt: 'Hello there', response_format: formSchema },
      { id: 'schema-on-small', prompt: 'Hello there', model: 'small', response_format: formSchema },
    ];
    await writeFile(input, rows.map((row) => JSON.stringify(row)).join('\n'));
    const out = join(dir, 'out');
    const run = await runCli(['run', input, '--config', cfg, '--out', out, '--batch-id', 'ctx'], h.env({ SIM_KEY: 'right-key' }));
    expect(run.code).toBe(1);
    const byId = Object.fromEntries((await readJsonLines<RowResult>(join(out, 'results.jsonl'))).map((r) => [r.id, r]));
    expect(byId.short).toMatchObject({ final_model: 'small', fallback_reason: null });
    expect(byId.long).toMatchObject({ status: 'succeeded', final_model: 'big', models_tried: ['big'] });
    expect(byId.long!.fallback_reason).toMatch(/small: skipped, context window 400/);
    expect(byId.huge).toMatchObject({ status: 'failed', error: { code: 'no_model_available' } });
    expect(byId.huge!.error!.message).toMatch(/^no model can take this prompt \(\d+ tokens\): small: context window 400 < \d+ prompt \+ 100 output tokens\. The prompt alone leaves no room for an answer in that context window: shorten it, or add a model with a larger context window to routing\.routes\.complex$/);
    expect(byId.greedy).toMatchObject({ status: 'failed', error: { code: 'no_model_available' } });
    expect(byId.greedy!.error!.message).toMatch(
      /^no model has room for this prompt \((\d+) tokens\) and its answer: small: context window 400 < \1 prompt \+ 9000 output tokens\. The prompt fits small's context window, the answer's max_tokens does not: set the row's max_tokens \(or models\.small\.max_output_tokens\) to \d+ or less, or add a model with a larger context window to models\.small\.fallbacks$/,
    );
    expect(byId.schema).toMatchObject({ status: 'succeeded', final_model: 'big', models_tried: ['big'] });
    expect(byId.schema!.fallback_reason).toMatch(/^small: skipped, context window 400 < \d+ prompt \(\d+ of them its response_format\) \+ 100 output tokens$/);
    // Pinned to small, which has no fallback: failed before any call, at $0, the fields named.
    expect(byId['schema-on-small']).toMatchObject({ status: 'failed', attempts: 0, cost_usd: 0, error: { code: 'no_model_available' } });
    expect(byId['schema-on-small']!.error!.message).toMatch(
      /^no model can take this prompt \(\d+ tokens, \d+ of them its response_format\): small: context window 400 < .*\. The prompt alone leaves no room for an answer in that context window: shorten it or its response_format, or add a model with a larger context window to models\.small\.fallbacks$/,
    );
    // Its fallback, too small, comes after the model that answered: the row never fell back.
    expect(byId['long-on-big']).toMatchObject({ status: 'succeeded', final_model: 'big', fallback_reason: null });
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
    expect(report.extra_calls.rows_on_fallback).toBe(2);
  });

  it("tells answers cut off at the model's max_output_tokens from those cut at their own max_tokens, on the run and on its resume (QA: the advice to raise max_tokens paid for the same cut answer again)", async () => {
    const dir = await tempDir('cap');
    const cfg = await config(dir, { models: { small: { provider: 'sim', price, max_output_tokens: 30 } }, default_model: 'small', max_tokens: 50 });
    const input = join(dir, 'in.jsonl');
    const lines = (asked: number) => [{ id: 'asks-more', prompt: 'Write a long essay about rivers and their deltas.', max_tokens: asked }, { id: 'asks-10', prompt: 'Write a long essay about mountains and glaciers.', max_tokens: 10 }];
    await writeFile(input, lines(5000).map((row) => JSON.stringify(row)).join('\n'));
    const out = join(dir, 'out');
    const capLine = /^Cut off +1 answer stopped at max_tokens \(finish_reason "length"\): give those rows a higher max_tokens .*; 1 answer stopped at models\.small\.max_output_tokens \(finish_reason "length"\), which caps a row's max_tokens, so a higher one does not help: raise it if small can write more, or give those rows another model/m;
    const run = await runCli(['run', input, '--config', cfg, '--out', out, '--batch-id', 'cap'], h.env({ SIM_KEY: 'right-key' }));
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(capLine);
    // The cap applied to the row's max_tokens is said before, once per model.
    expect(run.stdout).toContain("Note: rows ask for a max_tokens above their model's max_output_tokens, which caps it: small 30 (1 row asking up to 5000). Their answers stop there at most; raise models.small.max_output_tokens if small can write more.");
    expect((JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report).cut_off_at_model_cap).toEqual({ small: 1 });
    // Edited as the old advice said and resumed: the report is tallied from the files then, and still tells them apart.
    await writeFile(input, lines(20_000).map((row) => JSON.stringify(row)).join('\n'));
    const resumed = await runCli(['run', input, '--config', cfg, '--out', out, '--batch-id', 'cap'], h.env({ SIM_KEY: 'right-key' }));
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(capLine);
    expect(resumed.stdout).toContain('small 30 (1 row asking up to 20000)');
  });

  it("a misspelt model is said to be not found, not down, and with a fallback it is still named (QA: \"Models down\", \"once the provider is back\")", async () => {
    const dir = await tempDir('typo');
    const alone = await config(dir, { models: { typo: { provider: 'sim', upstream: 'gpt-typo', price } }, default_model: 'typo', breaker: { failure_threshold: 3, cooldown_ms: 60_000 } });
    const input = await writePromptsCsv(dir, 40);
    const run = await runCli(['run', input, '--config', alone, '--out', join(dir, 'alone'), '--batch-id', 'typo', '--concurrency', '4'], h.env({ SIM_KEY: 'right-key' }));
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^Models not found: \d+ rows found their model and every fallback shut after 404 answers .* waiting would not help\. Fix the name \(models\.<model>\.upstream\) or base_url as results\.jsonl's error says, then: switchyard run --resume typo --config <the fixed config>/m);
    expect(run.stdout).not.toContain('Models down');
    // The rows whose 404s shut the circuits are the same cause, not a second one (QA).
    // No row succeeded: the resume keeps none (QA: "the rows that succeeded are kept" read as if some had).
    expect(run.stdout).toMatch(/^Failed: \d+ rows? \(model_not_found \d+\), the failures that shut the circuits above: the same resume runs (it|them) again\.$/m);

    const withFallback = join(dir, 'fallback.yaml');
    await writeFile(withFallback, stringify({ providers: { sim: { base_url: h.sim.url, api_key_env: 'SIM_KEY' } }, retry: { max_attempts: 2, base_delay_ms: 5, max_delay_ms: 20 }, models: { typo: { provider: 'sim', upstream: 'gpt-typo2', price, fallbacks: ['good'] }, good: { provider: 'sim', price } }, default_model: 'typo', breaker: { failure_threshold: 3, cooldown_ms: 60_000 } }));
    const fellBack = await runCli(['run', input, '--config', withFallback, '--out', join(dir, 'fb'), '--batch-id', 'typo-fb', '--concurrency', '4'], h.env({ SIM_KEY: 'right-key' }));
    expect(fellBack.code, fellBack.stdout).toBe(0);
    expect(fellBack.stdout).toMatch(/^Not found at a provider: model_not_found \d+ calls? \(a model name it does not know, or a base_url without its path\)\. Their rows went on to other models/m);
  });

  it("failures whose fix is in the config (a key no api_key_env names, 429s without rpm) say that their resume needs --config (QA: the resume ran on the saved config and failed again)", async () => {
    const dir = await tempDir('cfgfix');
    const input = await writePromptsCsv(dir, 2);
    // No api_key_env: the 401's message says to set one, in the config.
    const keyless = join(dir, 'keyless.yaml');
    await writeFile(keyless, stringify({ providers: { sim: { base_url: h.sim.url } }, retry: { max_attempts: 2, base_delay_ms: 5, max_delay_ms: 20 }, models: { m: { provider: 'sim', price } }, default_model: 'm' }));
    const refused = await runCli(['run', input, '--config', keyless, '--out', join(dir, 'keyless'), '--batch-id', 'cfgfix-401'], h.env());
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stdout).toMatch(/^Failed: 2 rows \(unauthorized 2\)\. .*a resume runs on the config saved with the batch: add --config <file> when the fix is in it\)\.$/m);

    // 429s: the message says to set models.<model>.rpm, in the config.
    const busy = await config(dir, { models: { busy: { provider: 'sim', upstream: 'gpt-busy', price } }, default_model: 'busy' });
    const limited = await runCli(['run', input, '--config', busy, '--out', join(dir, 'busy'), '--batch-id', 'cfgfix-429'], h.env({ SIM_KEY: 'right-key' }));
    expect(limited.code, limited.stderr).toBe(1);
    expect(limited.stdout).toMatch(/^Failed: 2 rows \(rate_limited 2\)\. Set models\.<model>\.rpm .*a resume runs on the config saved with the batch: add --config <file> when the fix is in it\)\.$/m);
  });

  it("says a resume needs --config for 401s from a provider with no api_key_env, whichever row's 401 the report's example is (review: its wording was matched, in the first example only)", async () => {
    const dir = await tempDir('cfgfix-mixed');
    // Row 1 on a provider whose key ($SIM_KEY) is wrong, row 2 on one that names no key: both 401, row 1's first.
    const input = join(dir, 'mixed.csv');
    await writeFile(input, 'id,prompt,model\nwrong-key,Say hi,keyed\nno-key,Say hi,keyless\n');
    const cfg = join(dir, 'mixed.yaml');
    await writeFile(cfg, stringify({ providers: { withkey: { base_url: h.sim.url, api_key_env: 'SIM_KEY' }, nokey: { base_url: h.sim.url } }, retry: { max_attempts: 2, base_delay_ms: 5, max_delay_ms: 20 }, models: { keyed: { provider: 'withkey', price }, keyless: { provider: 'nokey', price } }, default_model: 'keyed' }));
    const run = await runCli(['run', input, '--config', cfg, '--out', join(dir, 'out'), '--batch-id', 'cfgfix-mixed', '--concurrency', '1'], h.env({ SIM_KEY: 'wrong-key' }));
    expect(run.code, run.stderr).toBe(1);
    const report = JSON.parse(await readFile(join(dir, 'out', 'report.json'), 'utf8')) as Report;
    expect(report.error_examples.unauthorized).toMatch(/check the key in \$SIM_KEY$/);
    expect(report.error_models).toEqual({ unauthorized: ['keyed', 'keyless'] });
    expect(run.stdout).toMatch(/^Failed: 2 rows \(unauthorized 2\)\. .*a resume runs on the config saved with the batch: add --config <file> when the fix is in it\)\.$/m);
  });

  it("a model whose context window refuses every row's prompt and max_tokens: the rows go on, and the summary says how to skip it without a call (QA: all went to a fallback at 10 times the price, exit 0, unsaid)", async () => {
    const dir = await tempDir('context-refused');
    const own = await startSimulator({ latency_ms: 1, models: { small: { context_window: 600 } } });
    try {
      const cfg = join(dir, 'ctx.yaml');
      await writeFile(cfg, stringify({ providers: { sim: { base_url: own.url } }, models: { small: { provider: 'sim', price, fallbacks: ['big'] }, big: { provider: 'sim', price } }, default_model: 'small', max_tokens: 600 }));
      const out = join(dir, 'out');
      const run = await runCli(['run', await writePromptsCsv(dir, 10), '--config', cfg, '--out', out, '--batch-id', 'context-refused'], h.env());
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toMatch(/^Too long for a model: bad_request 10 calls refused by a model's context window \(the prompt and max_tokens over it; .*\)\. .* Set its models\.<model>\.context_window, so that rows it cannot hold skip it without a call, or lower max_tokens if the prompts are short\.$/m);
      const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
      for (const result of results) {
        expect(result).toMatchObject({ status: 'succeeded', final_model: 'big' });
        // The provider's words say the prompt is short and max_tokens fills the window.
        expect(result.fallback_reason).toMatch(/^small: its context window refused the prompt and max_tokens \(400: .*maximum context length is 600 tokens\. However, you requested \d+ tokens \(\d+ in the messages, 600 in the completion\).*; set models\.small\.context_window, and rows it cannot hold skip it without a call$/);
      }
    } finally {
      await own.close();
    }
  });

  it("a model whose context_window is set but its provider counts more tokens: the summary says to lower it, not to set it (QA: German and Japanese contracts refused at a 32,000 window that was set)", async () => {
    const dir = await tempDir('context-miscounted');
    const own = await startSimulator({ latency_ms: 1, models: { small: { context_window: 600 } } });
    try {
      const cfg = join(dir, 'ctx.yaml');
      // The config's window is what the model's page says; the provider's tokenizer fills it sooner.
      await writeFile(cfg, stringify({ providers: { sim: { base_url: own.url } }, models: { small: { provider: 'sim', price, context_window: 4000, fallbacks: ['big'] }, big: { provider: 'sim', price } }, default_model: 'small', max_tokens: 600 }));
      const run = await runCli(['run', await writePromptsCsv(dir, 4), '--config', cfg, '--out', join(dir, 'out'), '--batch-id', 'context-miscounted'], h.env());
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toMatch(/^Too long for a model: bad_request 4 calls refused .* models\.small\.context_window is set \(4,000\), .* but its provider counted more: .* Lower its context_window to leave that margin .*$/m);
      expect(run.stdout).not.toMatch(/Set its models\.<model>\.context_window/);
    } finally {
      await own.close();
    }
  });

  it('a model answering only 500s: every row finishes on its fallback, and the breaker stops calling the dead model', async () => {
    const dir = await tempDir('dead');
    const cfg = await config(dir, {
      models: { dead: { provider: 'sim', price }, backup: { provider: 'sim', price } },
      default_model: 'dead',
      routing: { routes: { simple: ['dead', 'backup'], moderate: ['dead', 'backup'], complex: ['dead', 'backup'], coding: ['dead', 'backup'] } },
      breaker: { failure_threshold: 3, cooldown_ms: 60_000 },
    });
    const input = await writePromptsCsv(dir, 200);
    const out = join(dir, 'out');
    const before = h.sim.stats().models.dead?.requests ?? 0;
    const run = await runCli(['run', input, '--config', cfg, '--out', out, '--batch-id', 'dead', '--concurrency', '8'], h.env({ SIM_KEY: 'right-key', LOG_LEVEL: 'warn' }));
    expect(run.code, run.stderr).toBe(0);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results).toHaveLength(200);
    expect(results.every((r) => r.status === 'succeeded' && r.final_model === 'backup')).toBe(true);
    const deadCalls = (h.sim.stats().models.dead?.requests ?? 0) - before;
    // Without the breaker: 200 rows x 2 attempts = 400 calls. With it: the first few rows in flight.
    expect(deadCalls).toBeLessThan(40);
    const passedOver = results.filter((r) => r.fallback_reason?.includes('circuit open'));
    expect(passedOver.length).toBeGreaterThan(150);
    // Each says what opened the circuit, not only that it is open.
    for (const r of passedOver) expect(r.fallback_reason).toMatch(/dead: circuit open after repeated failures \(last error: .*\b500\b.*; next probe in/);
    // Said once while it happens (QA: only results.jsonl told of it).
    expect((run.stdout + run.stderr).match(/dead's circuit is open after repeated failures: rows go on to their fallbacks/g)).toHaveLength(1);
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(calls.filter((c) => c.model === 'dead')).toHaveLength(deadCalls);
    expect(calls.filter((c) => c.model === 'backup').every((c) => c.chain_position === 1)).toBe(true);
  });

  it('a chain whose every model is shut: the rows not sent fail, and the summary says what to do once the provider is back', async () => {
    const dir = await tempDir('all-dead');
    const cfg = await config(dir, { models: { dead: { provider: 'sim', price } }, default_model: 'dead', breaker: { failure_threshold: 2, cooldown_ms: 60_000 } });
    const input = await writePromptsCsv(dir, 20);
    const run = await runCli(['run', input, '--config', cfg, '--out', join(dir, 'out'), '--batch-id', 'all-dead', '--concurrency', '2'], h.env({ SIM_KEY: 'right-key' }));
    expect(run.code).toBe(1);
    // (An earlier test may have shut this endpoint's circuit already: then this run says so too.)
    // Until when, by the clock, and that a resume sooner fails them again (QA: a resume within the cooldown made no call, and nothing said until when).
    expect(run.stdout).toMatch(/^Models down: \d+ rows found their model and every fallback shut after repeated failures \(the circuit breaker\), and were not sent\.( This batch made no call: .*\.)? dead's circuit stays shut until \d\d:\d\d:\d\d UTC \(in [^)]+\), breaker\.cooldown_ms \(1 min 0 s\) after it shut; then one call tests the provider, and a resume sooner fails these rows again with no call\. Wait until then; once the provider is back: switchyard run --resume all-dead \(to have rows wait for the circuits instead of failing, set breaker\.max_wait_ms in the config and add --config <file> to the resume, which runs on the config saved with the batch unless given one\)\.$/m);
    // The next batch makes no call while the circuit is open: it says the breaker was shut before it.
    const next = await runCli(['run', input, '--config', cfg, '--out', join(dir, 'next'), '--batch-id', 'all-dead-next'], h.env({ SIM_KEY: 'right-key' }));
    expect(next.code).toBe(1);
    expect(next.stdout).toContain('were not sent. This batch made no call: earlier failures (another run on this Redis, or the one before this) shut them');
  });

  it("a model with no fallback whose provider is unreachable: the warning says its rows fail, not that they go on to fallbacks (docs review)", async () => {
    const dir = await tempDir('no-fallback');
    // A port nothing listens on: taken from the system, then let go.
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port: free } = server.address() as AddressInfo;
        server.close(() => resolve(free));
      });
    });
    const cfg = join(dir, 'down.yaml');
    await writeFile(cfg, `providers:\n  p: { base_url: "http://127.0.0.1:${port}/v1", timeout_ms: 2000 }\nmodels:\n  lonely: { provider: p, price: { input_per_mtok: 1, output_per_mtok: 2 } }\ndefault_model: lonely\nbreaker: { failure_threshold: 2, cooldown_ms: 60000 }\n`);
    const input = await writePromptsCsv(dir, 12);
    const run = await runCli(['run', input, '--config', cfg, '--out', join(dir, 'out'), '--batch-id', 'no-fallback', '--concurrency', '2'], h.env({ LOG_LEVEL: 'warn' }));
    expect(run.code).toBe(1);
    expect(run.stdout + run.stderr).toContain("lonely's circuit is open after repeated failures: rows with no fallback open fail (no_model_available; the summary says until when)");
    expect(run.stdout + run.stderr).not.toContain('rows go on to their fallbacks');
  });

  it('one outage is said as one: the rows that shut the circuit as the same cause, a single row not sent in the singular, and an example of each failed call code (QA)', async () => {
    const dir = await tempDir('one-outage');
    // A provider of its own: no earlier test has shut its circuit.
    const down = await startSimulator({ latency_ms: 1, models: { down: { fail_status: 500 } } });
    try {
      const cfg = join(dir, 'down.yaml');
      await writeFile(cfg, stringify({ providers: { sim: { base_url: down.url } }, models: { down: { provider: 'sim', price } }, default_model: 'down', retry: { max_attempts: 2, base_delay_ms: 5, max_delay_ms: 20 }, breaker: { failure_threshold: 1, cooldown_ms: 60_000 } }));
      const out = join(dir, 'out');
      // The first 500s shut the circuit: their rows fail server_error, the rows after them are not sent.
      const run = await runCli(['run', await writePromptsCsv(dir, 20), '--config', cfg, '--out', out, '--batch-id', 'one-outage', '--concurrency', '1'], h.env());
      expect(run.code, run.stderr).toBe(1);
      expect(run.stdout).toMatch(/^Models down: \d+ rows found their model and every fallback shut after repeated failures \(the circuit breaker\), and were not sent\./m);
      expect(run.stdout).toMatch(/^Failed: \d+ rows? \(server_error \d+\), the failures that shut the circuits above: the same resume runs (it|them) again\.$/m);

      // Which URL failed, and how: in each failed call's record, and one example per code in the report (QA: "connection_error | 43" alone).
      const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
      expect(calls.length).toBeGreaterThan(0);
      for (const call of calls) expect(call.error_message).toContain(`model "down" at ${down.url} failed with 500`);
      const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as Report;
      expect(report.call_errors).toEqual({ server_error: calls.length });
      expect(report.call_error_examples).toEqual({ server_error: calls[0]!.error_message });
      const markdown = await readFile(join(out, 'report.md'), 'utf8');
      expect(markdown).toMatch(/### Failed calls by code\n\n\| Code +\| Calls \| Example +\|\n.*\n\| server_error \| +\d+ \| model "down" at http:\S+ failed with 500/);

      // A batch of one row, while the circuit is shut: said in the singular (QA: "1 row ... and were not sent").
      const one = await runCli(['run', await writePromptsCsv(await tempDir('one-row'), 1), '--config', cfg, '--out', join(dir, 'one-out'), '--batch-id', 'one-row', '--concurrency', '1'], h.env());
      expect(one.code, one.stderr).toBe(1);
      expect(one.stdout).toMatch(/^Models down: 1 row found its model and every fallback shut after repeated failures \(the circuit breaker\), and was not sent\. This batch made no call: .* a resume sooner fails this row again with no call\. .*set breaker\.max_wait_ms in the config and add --config <file> to the resume/m);
    } finally {
      await down.close();
    }
  });

  it('a circuit opened for a model name at one endpoint does not stop the same name at another', async () => {
    const dir = await tempDir('two-endpoints');
    const healthy = await startSimulator({ latency_ms: 1 });
    try {
      const breaker = { failure_threshold: 3, cooldown_ms: 60_000 };
      // Batch one: "flash" on an endpoint that answers only 500s (the harness simulator's "dead").
      const deadCfg = join(dir, 'dead.yaml');
      await writeFile(deadCfg, stringify({ providers: { sim: { base_url: h.sim.url, api_key_env: 'SIM_KEY' } }, models: { flash: { provider: 'sim', upstream: 'dead' } }, default_model: 'flash', retry: { max_attempts: 1 }, breaker }));
      const input = await writePromptsCsv(dir, 20);
      const first = await runCli(['run', input, '--config', deadCfg, '--out', join(dir, 'one'), '--batch-id', 'endpoint-one', '--concurrency', '2'], h.env({ SIM_KEY: 'right-key' }));
      expect(first.code).toBe(1);
      const firstResults = await readJsonLines<RowResult>(join(dir, 'one', 'results.jsonl'));
      expect(firstResults.some((r) => r.error?.message.includes('circuit open'))).toBe(true);
      // Batch two: the same name on a healthy endpoint, while the first one's circuit is open.
      const healthyCfg = join(dir, 'healthy.yaml');
      await writeFile(healthyCfg, stringify({ providers: { other: { base_url: healthy.url } }, models: { flash: { provider: 'other' } }, default_model: 'flash', breaker }));
      const second = await runCli(['run', input, '--config', healthyCfg, '--out', join(dir, 'two'), '--batch-id', 'endpoint-two'], h.env());
      expect(second.code, second.stderr).toBe(0);
      expect((await readJsonLines<RowResult>(join(dir, 'two', 'results.jsonl'))).every((r) => r.status === 'succeeded')).toBe(true);
    } finally {
      await healthy.close();
    }
  });

  it('with breaker.max_wait_ms, an outage pauses the batch: rows wait for the circuit and finish once the provider is back', async () => {
    const dir = await tempDir('outage');
    const flaky = await startSimulator({ latency_ms: 1, models: { flash: { fail_status: 503 } } });
    try {
      const cfg = join(dir, 'outage.yaml');
      await writeFile(cfg, stringify({ providers: { sim: { base_url: flaky.url } }, models: { flash: { provider: 'sim', price } }, default_model: 'flash', retry: { max_attempts: 1 }, breaker: { failure_threshold: 2, cooldown_ms: 500, max_wait_ms: 60_000 } }));
      const input = await writePromptsCsv(dir, 20);
      const run = spawnCli(['run', input, '--config', cfg, '--out', join(dir, 'out'), '--concurrency', '1'], h.env({ LOG_LEVEL: 'warn' }));
      await waitForOutput(() => run.output().stdout + run.output().stderr, 'rows wait for the circuits of flash to close', 20_000);
      flaky.setOptions({ models: {} }); // the outage ends
      const result = await run.done;
      expect(result.code).toBe(1); // a row whose failure did not open the circuit failed
      const results = await readJsonLines<RowResult>(join(dir, 'out', 'results.jsonl'));
      const failed = results.filter((r) => r.status === 'failed');
      expect(results).toHaveLength(20);
      // Only rows that failed before the circuit opened (failure_threshold 2: the first, and the
      // others in hand then); the row whose failure opened it waited with the rest.
      expect(failed.length).toBeGreaterThanOrEqual(1);
      expect(failed.length).toBeLessThanOrEqual(3);
      expect(failed.every((r) => r.error?.code === 'server_error')).toBe(true);
      // An error that passes by itself: the summary says to run them again, no fix needed.
      expect(result.stdout).toMatch(/^Failed: \d rows? \(server_error \d\)\. Run them again: switchyard run --resume \S+ \(the rows that succeeded are kept, not paid for again\)\.$/m);
      expect(result.stdout).not.toContain('No row succeeded'); // most did
      // A row's calls after its wait for the circuit are repeat calls to the model: numbered on, and counted as retries (QA: all attempt 1, "Retries 0").
      const calls = await readJsonLines<CallRecord>(join(dir, 'out', 'costs.jsonl'));
      const byRow = Map.groupBy(calls, (call) => call.row);
      for (const rowCalls of byRow.values()) expect(rowCalls.map((call) => call.attempt)).toEqual(rowCalls.map((_, i) => i + 1));
      const repeated = calls.filter((call) => call.attempt > 1).length;
      expect(repeated).toBeGreaterThan(0);
      const report = JSON.parse(await readFile(join(dir, 'out', 'report.json'), 'utf8')) as Report;
      expect(report.extra_calls.retry_calls).toBe(repeated);
    } finally {
      await flaky.close();
    }
  });

  it('a 401 fails the row at once, naming the key variable, with no retries or fallback', async () => {
    const dir = await tempDir('auth');
    const cfg = await config(dir, {
      models: { flash: { provider: 'sim', price }, other: { provider: 'sim', price } },
      default_model: 'flash',
      routing: { routes: { simple: ['flash', 'other'], moderate: ['flash', 'other'] } },
    });
    const input = await writePromptsCsv(dir, 5);
    const out = join(dir, 'out');
    const started = Date.now();
    const run = await runCli(['run', input, '--config', cfg, '--out', out, '--batch-id', 'auth'], h.env({ SIM_KEY: 'wrong-key' }));
    expect(run.code).toBe(1);
    expect(Date.now() - started).toBeLessThan(15_000);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    for (const r of results) {
      // Sent and answered 401, or not sent because the key had just been rejected; never retried or fallen back.
      const sent = r.error?.http_status === 401;
      expect(r).toMatchObject({ status: 'failed', attempts: sent ? 1 : 0, models_tried: sent ? ['flash'] : [], error: { code: 'unauthorized', http_status: sent ? 401 : null } });
      expect(r.error!.message).toContain('$SIM_KEY');
    }
    expect(results.some((r) => r.error?.http_status === 401)).toBe(true);
    expect(run.stdout).toContain("Failed: 5 rows (unauthorized 5). Once what their errors say is fixed (results.jsonl's error, report.md's Errors), run them again: switchyard run --resume auth.\n");
    // Exit 1 is the same for a few failed rows: the summary's last line says plainly that none succeeded (QA: a nightly log read at a glance).
    expect(run.stdout.trimEnd().split('\n').at(-1)).toBe("No row succeeded: none of the 5 rows has an answer (5 failed). The lines above say why, and what to do before running them again. (Exit code 1, as when only some rows fail: report.json's totals.succeeded, 0, tells the two apart.)");

    // The key fixed, a resume finishes the rows; the refusals it reports were the first run's, and no row went elsewhere.
    const resumed = await runCli(['run', '--resume', 'auth'], h.env({ SIM_KEY: 'right-key' }));
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/^Refused by a provider: unauthorized \d+ calls? \(a key or account it would not take\)\. No row failed for it: they were refused in an earlier run of this batch, or before the key was taken again, and their rows have succeeded since\.$/m);
  });

  it('a 401 on one provider sends the rows to a model on another, and the summary says a provider refused, naming where to look', async () => {
    const dir = await tempDir('auth-elsewhere');
    const elsewhere = await startSimulator({ latency_ms: 1 });
    try {
      const cfg = await config(dir, {
        providers: { sim: { base_url: h.sim.url, api_key_env: 'SIM_KEY' }, good: { base_url: elsewhere.url } },
        models: { flash: { provider: 'sim', price, fallbacks: ['other'] }, other: { provider: 'good', price } },
        default_model: 'flash',
      });
      const input = await writePromptsCsv(dir, 4);
      const out = join(dir, 'out');
      const run = await runCli(['run', input, '--config', cfg, '--out', out, '--batch-id', 'auth-elsewhere', '--concurrency', '1'], h.env({ SIM_KEY: 'wrong-key' }));
      expect(run.code, await readFile(join(out, 'results.jsonl'), 'utf8')).toBe(0);
      expect(run.stdout).toMatch(/^Refused by a provider: unauthorized \d+ calls? \(a key or account it would not take\)\. Their rows went on to other models; results\.jsonl's fallback_reason names the model and what to check\.$/m);
      const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
      expect(results.every((r) => r.status === 'succeeded' && r.final_model === 'other')).toBe(true);
      expect(results.some((r) => r.fallback_reason?.includes('check the key in $SIM_KEY'))).toBe(true);
    } finally {
      await elsewhere.close();
    }
  });

  it('after a 401, the rows behind it fail without sending the rejected key again', async () => {
    const dir = await tempDir('auth-many');
    const cfg = await config(dir, { models: { flash: { provider: 'sim', price } }, default_model: 'flash' });
    const rows = 300;
    const input = await writePromptsCsv(dir, rows);
    const out = join(dir, 'out');
    const before = h.sim.stats().by_status['401'] ?? 0;
    const run = await runCli(['run', input, '--config', cfg, '--out', out, '--batch-id', 'auth-many', '--concurrency', '4'], h.env({ SIM_KEY: 'wrong-key' }));
    expect(run.code).toBe(1);
    const sent = (h.sim.stats().by_status['401'] ?? 0) - before;
    // The calls in flight when the first 401 came back, not one per row.
    expect(sent).toBeGreaterThanOrEqual(1);
    expect(sent).toBeLessThanOrEqual(8);
    const results = await readJsonLines<RowResult>(join(out, 'results.jsonl'));
    expect(results).toHaveLength(rows);
    expect(results.filter((r) => r.error?.http_status === 401)).toHaveLength(sent);
    const unsent = results.filter((r) => r.error?.http_status === null);
    expect(unsent).toHaveLength(rows - sent);
    // costs.jsonl holds the requests that went out, and only those.
    const calls = await readJsonLines<CallRecord>(join(out, 'costs.jsonl'));
    expect(calls).toHaveLength(sent);
    expect(unsent.every((r) => r.attempts === 0)).toBe(true);
    expect(unsent[0]!.error).toMatchObject({ code: 'unauthorized', message: expect.stringMatching(/^not sent, the key was just rejected: model "flash" at .* rejected the API key \(401: Incorrect API key provided\): check the key in \$SIM_KEY/) });
  });

  it('after a 402 (the account out of credit), the rows behind it do not call that provider again, and go on to a model on another (QA: every row paid a doomed request)', async () => {
    const dir = await tempDir('quota-many');
    const broke = await startSimulator({ latency_ms: 1, models: { paid: { fail_status: 402 } } });
    try {
      const cfg = join(dir, 'quota.yaml');
      const models = { paid: { provider: 'broke', price, fallbacks: ['flash'] }, flash: { provider: 'sim', price } };
      await writeFile(cfg, stringify({ providers: { broke: { base_url: broke.url }, sim: { base_url: h.sim.url, api_key_env: 'SIM_KEY' } }, models, default_model: 'paid' }));
      const rows = 60;
      const run = await runCli(['run', await writePromptsCsv(dir, rows), '--config', cfg, '--out', join(dir, 'out'), '--concurrency', '4'], h.env({ SIM_KEY: 'right-key' }));
      expect(run.code, run.stderr).toBe(0);
      const refused = broke.stats().by_status['402'] ?? 0;
      expect(refused).toBeGreaterThanOrEqual(1);
      expect(refused).toBeLessThanOrEqual(8); // the calls in flight when the first 402 came back
      const results = await readJsonLines<RowResult>(join(dir, 'out', 'results.jsonl'));
      expect(results.filter((r) => r.status === 'succeeded' && r.final_model === 'flash')).toHaveLength(rows);
      expect(results.filter((r) => r.fallback_reason?.includes('said just before that the account is out of quota')).length).toBe(rows - refused);
    } finally {
      await broke.close();
    }
  });
});
