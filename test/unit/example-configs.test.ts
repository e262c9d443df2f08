import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { builtInConfig } from '../../src/config/defaults.ts';
import { loadConfigFile, parseConfig } from '../../src/config/load.ts';

const repoFile = (path: string): string => new URL(`../../${path}`, import.meta.url).pathname;

/** The configs a newcomer copies from must stay valid as the schema changes. */
describe('the configs in the docs', () => {
  it('examples/switchyard.yaml loads, on the simulator port its comment starts', async () => {
    const config = await loadConfigFile(repoFile('examples/switchyard.yaml'));
    expect(config.providers['local']?.base_url).toBe('http://127.0.0.1:8787/v1');
    expect(config.routing?.routes['complex']).toEqual(['deepseek-v4-pro', 'deepseek-v4-flash']);
    expect(config.budget.batch_usd).toBe(1);
  });

  it('takes YAML merge keys, with the anchors under a top-level x- key (QA: "<<" was an unknown key)', async () => {
    const path = join(await mkdtemp(join(tmpdir(), 'sy-merge-')), 'switchyard.yaml');
    await writeFile(
      path,
      ['x-local: &local', '  provider: local', '  context_window: 64000', 'providers:', '  local: { base_url: "http://127.0.0.1:8787/v1" }', 'models:', '  flash:', '    <<: *local', '    price: { input_per_mtok: 1, output_per_mtok: 2 }', 'default_model: flash', ''].join('\n'),
    );
    const config = await loadConfigFile(path);
    expect(config.models['flash']).toMatchObject({ provider: 'local', context_window: 64000, price: { input_per_mtok: 1, output_per_mtok: 2 } });
    // A misspelt anchor is named with its line (QA: "Merge sources must be maps or map aliases", no line, no name).
    await writeFile(path, (await readFile(path, 'utf8')).replace('<<: *local', '<<: *locl'));
    await expect(loadConfigFile(path)).rejects.toThrow(`Config file ${path} is not valid YAML: line 8: *locl names no anchor (the anchors are &local): an anchor is set with &locl before its first use`);
  });

  it("config.md's table of the built-in models is the built-in config", async () => {
    const doc = await readFile(repoFile('docs/config.md'), 'utf8');
    const section = doc.slice(doc.indexOf('## The built-in models'));
    const rows = [...section.matchAll(/^\| `([^`]+)`[^|]* \| ([\d.]+) \/ ([\d.]+) \| ([\d,]+) \| ([\d,]+) \|$/gm)].map((m) => ({
      name: m[1] ?? '',
      price: { input_per_mtok: Number(m[2]), output_per_mtok: Number(m[3]) },
      context_window: Number(m[4]?.replaceAll(',', '')),
      max_output_tokens: Number(m[5]?.replaceAll(',', '')),
    }));
    const config = builtInConfig('http://127.0.0.1:1/v1');
    expect(rows.map((row) => row.name)).toEqual(Object.keys(config.models));
    for (const row of rows) expect(config.models[row.name]).toMatchObject({ price: row.price, context_window: row.context_window, max_output_tokens: row.max_output_tokens });
    expect(section).toContain(`\`${config.default_model}\` (\`default_model\`)`);
  });

  it("README's config block is valid", async () => {
    const readme = await readFile(repoFile('README.md'), 'utf8');
    const block = /## Config[\s\S]*?```yaml\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const config = parseConfig(parseYaml(block!), 'README.md');
    expect(Object.keys(config.models)).toEqual(['deepseek-v4-flash', 'deepseek-v4-pro', 'glm-4']);
    expect(config.providers['deepseek']?.api_key_env).toBe('DEEPSEEK_API_KEY');
  });
});
