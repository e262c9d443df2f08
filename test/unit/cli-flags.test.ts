import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { optionsFor } from '../../src/cli-flags.ts';

interface Flags {
  batchId?: string;
  concurrency?: number;
  cache?: boolean;
}

const option = optionsFor<Flags>();

describe("a command's options typed against its action's flags (review: a flag renamed on one side was dropped unsaid)", () => {
  it('gives commander the option under the field its flags name, parsed as given', () => {
    const command = new Command('run')
      .exitOverride()
      .addOption(option('-b, --batch-id <id>', 'the batch', (value) => value.trim()))
      .addOption(option('--concurrency <n>', 'calls in flight', Number))
      .addOption(option('--no-cache', 'no answer cache'));
    command.parse(['--batch-id', ' b1 ', '--concurrency', '8', '--no-cache'], { from: 'user' });
    expect(command.opts<Flags>()).toEqual({ batchId: 'b1', concurrency: 8, cache: false });
  });

  it('refuses at compile time flags that name no field, take no value for a field that is not a boolean, or parse to another type (npm run typecheck)', () => {
    const mistakes = () => [
      // @ts-expect-error --batch is stored as `batch`, which Flags does not have
      option('--batch <id>', 'the batch', String),
      // @ts-expect-error --concurrency's field is a number, not a flag's boolean
      option('--concurrency', 'calls in flight'),
      // @ts-expect-error batchId holds text, not a number
      option('--batch-id <id>', 'the batch', Number),
      // @ts-expect-error an option that takes a value needs its parser
      option('--batch-id <id>', 'the batch'),
    ];
    expect(typeof mistakes).toBe('function');
  });
});
