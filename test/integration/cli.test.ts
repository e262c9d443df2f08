import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';

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
});
