import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { CappedMaxTokens } from '../../src/batch/capped-max-tokens.ts';
import { firstModel, rowTarget } from '../../src/routing/row-target.ts';

const models = { small: { provider: 'sim', max_output_tokens: 30 }, mid: { provider: 'sim', max_output_tokens: 300 }, big: { provider: 'sim' } };
const config = parseConfig({ providers: { sim: { base_url: 'http://127.0.0.1:9/v1' } }, models, default_model: 'small', ensembles: { council: { members: ['small', 'mid'], synthesizer: 'big' } } }, 'test');

describe('rows asking for more than their model max_output_tokens', () => {
  it('are said in one note, once per model, with how many and the most asked (QA: a max_tokens of 5000 went out as 30, unsaid)', () => {
    const capped = new CappedMaxTokens(config);
    capped.add('small', 5000);
    capped.add('small', 200);
    capped.add('small', 30); // at the cap: sent as asked
    capped.add('big', 100_000); // no cap
    capped.add(undefined, 5000); // routed: its model is not known yet
    capped.add('small', undefined); // the config's max_tokens
    expect(capped.text()).toBe("Note: rows ask for a max_tokens above their model's max_output_tokens, which caps it: small 30 (2 rows asking up to 5000). Their answers stop there at most; raise models.small.max_output_tokens if small can write more.");
    capped.add('mid', 1000);
    expect(capped.text()).toMatch(/: small 30 \(2 rows asking up to 5000\), mid 300 \(1 row asking up to 1000\)\. Their answers stop there at most; raise models\.<name>\.max_output_tokens where the model can write more\.$/);
    expect(new CappedMaxTokens(config).text()).toBeNull();
  });

  it("takes a row's model from the row, its pinned model or the default one without routing; none for an ensemble's", () => {
    expect(firstModel(rowTarget({ id: '1', model: 'mid' }, config, undefined, 'big'), config)).toBe('mid');
    expect(firstModel(rowTarget({ id: '1' }, config, undefined, 'big'), config)).toBe('big');
    expect(firstModel(rowTarget({ id: '1' }, config, undefined, undefined), config)).toBe('small');
    expect(firstModel(rowTarget({ id: '1', model: 'council' }, config, undefined, undefined), config)).toBeUndefined();
    const routed = parseConfig({ providers: { sim: { base_url: 'http://127.0.0.1:9/v1' } }, models, default_model: 'small', routing: { routes: { complex: ['mid'] } } }, 'test');
    expect(firstModel(rowTarget({ id: '1' }, routed, undefined, undefined), routed)).toBeUndefined();
  });
});
