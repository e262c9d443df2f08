import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Report } from '../../src/output/report-json.ts';
import { runCli, spawnCli, waitForOutput } from '../helpers/cli.ts';
import { tempDir, writePromptsCsv, writeSimConfig } from '../helpers/files.ts';
import { useSimulatorAndRedis } from '../helpers/harness.ts';

describe('switchyard (no command)', () => {
  it('prints its version with --version', async () => {
    const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    const result = await runCli(['--version'], {});
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe(version);
  });

  it('lists the commands with --help', async () => {
    const result = await runCli(['--help'], {});
    expect(result.code).toBe(0);
    for (const command of ['run', 'worker', 'status', 'collect', 'sim', 'demo']) expect(result.stdout).toContain(`  ${command}`);
  });

  it('refuses a LOG_LEVEL pino does not know with exit 2 and the levels, not a stack trace', async () => {
    const result = await runCli(['status'], { LOG_LEVEL: 'bogus' });
    expect(result.code).toBe(2);
    expect(result.stderr).toBe('switchyard: LOG_LEVEL "bogus" is not a log level: use one of fatal, error, warn, info, debug, trace, silent (or leave it unset for warn)\n');
  });

  it('refuses run --cache with --no-cache (commander would keep the last silently), before reading anything', async () => {
    const result = await runCli(['run', 'absent.csv', '--no-cache', '--cache'], {});
    expect(result.code).toBe(2);
    expect(result.stderr).toBe('switchyard: --cache and --no-cache were both given: give --no-cache to leave the answer cache out of this batch, or --cache to use it again\n');
  });

  it('refuses --resume and --batch-id naming two batches (QA: the --batch-id was dropped without a word), and takes them naming one', async () => {
    const result = await runCli(['run', 'absent.csv', '--resume', 'a', '--batch-id', 'b'], {});
    expect(result.code).toBe(2);
    expect(result.stderr).toBe('switchyard: --resume a and --batch-id b name two batches: give --resume <id> to go on with a batch, or --batch-id <id> to name a new one (running it again resumes it)\n');
    expect((await runCli(['run', 'absent.csv', '--resume', 'a', '--batch-id', 'a'], {})).stderr).not.toContain('name two batches');
  });

  it('refuses an option given empty (a script\'s unset variable) instead of running as if it were left out (QA: --ab "" ran a plain batch)', async () => {
    for (const option of ['--ab', '--judge', '--model', '--batch-id']) {
      const result = await runCli(['run', 'absent.csv', option, ''], {});
      expect(result.code, option).toBe(2);
      expect(result.stderr, option).toMatch(new RegExp(`^error: option '.*${option} <\\w+>' argument '' is invalid\\. expected a value, not an empty one`));
    }
  });

  it('sim: quotes a bad number as it was given, and states each default once in --help (QA: got "NaN"; "(default 0: at once) (default: 0)")', async () => {
    const result = await runCli(['sim', '--port', '0', '--latency-ms', 'abc'], {});
    expect(result.code).toBe(2);
    expect(result.stderr).toBe('switchyard: --latency-ms expects a number, got "abc"\n');
    const help = (await runCli(['sim', '--help'], {})).stdout.replace(/\s+/g, ' ');
    expect(help).toContain('word by word (0: at once) (default: 0)');
    expect(help).not.toContain('(default 0');
  });

  it('sim: shows the control characters of a model name a client sent in its summary, rather than run them (review: its lines bypassed writeLines)', async () => {
    const child = spawnCli(['sim', '--port', '0'], {});
    await waitForOutput(() => child.output().stdout, '/v1\n', 20_000);
    const url = /Simulator listening on (\S+)/.exec(child.output().stdout)![1]!;
    const body = { model: 'evil\x1b[31mRED\x07', messages: [{ role: 'user', content: 'hi' }] };
    expect((await fetch(`${url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).status).toBe(200);
    child.kill('SIGINT');
    const ended = await child.done;
    expect(ended.code).toBe(0);
    expect(ended.stdout).toContain('  evil\\x1b[31mRED\\x07: 1 request (1 x 200)');
    expect(ended.stdout).not.toMatch(/[\x00-\x09\x0b-\x1f]/);
  });
});

describe('switchyard serve beyond this machine', () => {
  it('refuses to start without SWITCHYARD_API_TOKEN (exit 2), naming the variable and --no-auth, before starting anything (QA: a warning, and anyone on the network could spend money)', async () => {
    const child = spawnCli(['serve', '--host', '0.0.0.0', '--port', '0'], { SWITCHYARD_API_TOKEN: '', REDIS_URL: 'redis://127.0.0.1:1' });
    // A server that starts anyway is stopped here, not left listening.
    const started = setTimeout(() => child.kill('SIGKILL'), 10_000);
    const result = await child.done.finally(() => clearTimeout(started));
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^switchyard: --host 0\.0\.0\.0 listens beyond this machine and SWITCHYARD_API_TOKEN is empty: .* Set SWITCHYARD_API_TOKEN in the server's environment .* Or, on a network you trust, give --no-auth to serve without a token\.\n$/);
    expect(result.stdout).toBe('');
    const help = (await runCli(['serve', '--help'], {})).stdout.replace(/\s+/g, ' ');
    expect(help).toContain('--no-auth serve beyond this machine without SWITCHYARD_API_TOKEN');
  });
});

describe('a signal while the CLI\'s own modules start (starting-stop.ts)', () => {
  /** Node preloads this: the signal named by SIGNAL_AT_START, sent to itself at the CLI's first read of LOG_LEVEL (its start, before any command runs). */
  async function signalAtStart(args: string[], signal: NodeJS.Signals) {
    const preload = join(await tempDir('signal-at-start'), 'signal-at-start.mjs');
    await writeFile(
      preload,
      `let sent = false;\nconst env = process.env;\nprocess.env = new Proxy(env, { get(target, key) { if (key === 'LOG_LEVEL' && !sent) { sent = true; process.kill(process.pid, ${JSON.stringify(signal)}); } return Reflect.get(target, key); } });\n`,
    );
    return runCli(args, { NODE_OPTIONS: `--import ${preload}`, REDIS_URL: 'redis://127.0.0.1:1' });
  }

  it('ends a run with one line and 130 (143), not by the signal, silently (QA: a Ctrl-C in its first 0.1 s said nothing)', async () => {
    // A file that is there: the run then waits on Redis (none at that URL), where a signal is answered.
    const input = join(await tempDir('signal-at-start-input'), 'in.csv');
    await writeFile(input, 'prompt\nhi\n');
    const term = await signalAtStart(['run', input], 'SIGTERM');
    expect(term.code).toBe(143);
    expect(term.stdout).toBe('\nInterrupted (SIGTERM) before anything was queued: nothing to resume.\n');
    const int = await signalAtStart(['run', input], 'SIGINT');
    expect(int.code).toBe(130);
    expect(int.stdout).toBe('\nInterrupted before anything was queued: nothing to resume.\n');
  });

  it('leaves a command without an early stop of its own (status) to end by the signal, as it did', async () => {
    const ended = await signalAtStart(['status'], 'SIGINT');
    // Ended by the signal: no exit code of its own.
    expect(ended.code).toBeNull();
    expect(ended.stdout).toBe('');
  });
});

describe('switchyard demo', () => {
  const h = useSimulatorAndRedis('demo');

  it('runs examples/prompts.csv on the built-in models into out/<batch id> and says where the report is', async () => {
    const cwd = await tempDir('demo');
    const result = await runCli(['demo'], h.env(), { cwd });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('No --config given: using the built-in models on the simulator');
    expect(result.stdout).toContain('Rows     24 of 24 succeeded, 0 failed');
    const reportPath = /Demo finished\. Open (\S+) for the report\./.exec(result.stdout)?.[1];
    expect(reportPath?.startsWith(join(cwd, 'out', 'demo-'))).toBe(true);
    expect(result.stdout.trimEnd().split('\n').at(-1)).toMatch(/^Next: your own prompts the same way, `npx switchyard run <file\.csv or \.jsonl>`/);
    const report = JSON.parse(await readFile(reportPath!.replace(/report\.md$/, 'report.json'), 'utf8')) as Report;
    expect(report.totals).toMatchObject({ rows: 24, succeeded: 24, invalid_rows: 0 });
    // The built-in simulator fails a few calls on purpose: the retries show in the report.
    expect(report.totals.calls).toBeGreaterThan(24);
    expect(await readFile(reportPath!, 'utf8')).toContain('# Batch report: demo-');
  });
});

describe('switchyard run with a mistyped input path', () => {
  const h = useSimulatorAndRedis('cli-no-file');

  it('stops with exit 2 and the path, before naming a batch or starting the built-in models', async () => {
    const cwd = await tempDir('no-file');
    const result = await runCli(['run', 'promts.csv'], h.env(), { cwd });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`input file not found: ${join(cwd, 'promts.csv')}`);
    expect(result.stdout).toBe('');
    expect(await h.redis.keys(`${h.prefix}:*`)).toEqual([]);
  });

  it('refuses a --model the built-in models lack by naming them, not a config the run was not given (QA)', async () => {
    const cwd = await tempDir('builtin-model');
    await writeFile(join(cwd, 'in.csv'), 'prompt\nhi\n');
    const result = await runCli(['run', 'in.csv', '--model', 'gpt-4o'], h.env(), { cwd });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^switchyard: --model\/--route "gpt-4o" is not a built-in model \(no --config was given: to call other models, give a config that names them\); built-in models and ensembles: deepseek-v4-flash, /m);
    expect(result.stderr).not.toContain('in the config');
  });

  it('refuses run with no file at all the same way (QA: it named a batch and started the simulator first)', async () => {
    const result = await runCli(['run'], h.env(), { cwd: await tempDir('no-file-at-all') });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('no input file: give one, e.g. "switchyard run prompts.csv"');
    expect(result.stdout).toBe('');
  });
});

describe('switchyard with its output piped to a reader that goes away (| head)', () => {
  const h = useSimulatorAndRedis('cli-pipe', { latency_ms: 20 });

  it('ends without a stack trace, and a run still finishes its batch and writes its files', async () => {
    const dir = await tempDir('cli-pipe');
    const config = await writeSimConfig(dir, h.sim.url, { concurrency: 8 });
    const input = await writePromptsCsv(dir, 40);
    const out = join(dir, 'out');
    const child = spawnCli(['run', input, '--config', config, '--out', out, '--batch-id', 'piped'], h.env());
    // As `head -1` does: read the first output, then close the pipe.
    child.stdout!.once('data', () => child.stdout!.destroy());
    const result = await child.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).not.toMatch(/EPIPE|Error:/);
    expect((await readFile(join(out, 'results.jsonl'), 'utf8')).trim().split('\n')).toHaveLength(40);
  });
});

describe('switchyard status --json', () => {
  const h = useSimulatorAndRedis('cli-status-json');

  it('stays valid JSON when a batch\'s text holds DEL or a C1 control (review: the CLI wrote it out as \\x7f, and JSON.parse refused the whole answer)', async () => {
    const dir = await tempDir('status-json');
    const config = await writeSimConfig(dir, h.sim.url);
    const input = await writePromptsCsv(dir, 2);
    const out = join(dir, 'out\x7f\x9b');
    const ran = await runCli(['run', input, '--config', config, '--out', out, '--batch-id', 'controls'], h.env());
    expect(ran.code, ran.stderr).toBe(0);
    for (const args of [['status', 'controls', '--json'], ['status', '--json']]) {
      const status = await runCli(args, h.env());
      expect(status.code, status.stderr).toBe(0);
      expect(status.stdout).not.toMatch(/[\x7f-\x9f]/);
      const parsed = JSON.parse(status.stdout) as { out_dir: string } | Array<{ out_dir: string }>;
      expect(Array.isArray(parsed) ? parsed[0]!.out_dir : parsed.out_dir).toBe(out);
    }
  });
});
