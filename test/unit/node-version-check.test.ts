import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));
/** Preloaded, it makes the process report an older Node.js, as a machine with Node 20 would. */
const pretendNode20 = `data:text/javascript,${encodeURIComponent("Object.defineProperty(process.versions, 'node', { value: '20.20.2' }); Object.defineProperty(process, 'version', { value: 'v20.20.2' });")}`;

function run(args: string[]) {
  return spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 30_000 });
}

describe('an old Node.js', () => {
  it('stops npm install and build with the version needed and how to get it', () => {
    const old = run(['--import', pretendNode20, root('scripts/check-node.mjs')]);
    expect(old.status).toBe(1);
    expect(old.stderr).toBe('Switchyard needs Node.js 22.18 or newer, and this is v20.20.2. Install Node.js 24 (https://nodejs.org, or `nvm install 24`), then run the npm command again.\n');
    expect(run([root('scripts/check-node.mjs')]).status).toBe(0);
  });

  it('stops the CLI before any command, with exit code 2', () => {
    const old = run(['--import', pretendNode20, root('src/cli.ts'), '--help']);
    expect(old.status).toBe(2);
    expect(old.stdout).toBe('');
    expect(old.stderr).toContain('switchyard: needs Node.js 22.18 or newer, and this is v20.20.2.');
  });
});
