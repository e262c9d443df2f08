import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { reachableModels } from '../../src/batch/shut-circuits.ts';

const price = { input_per_mtok: 1, output_per_mtok: 2 };
const config = parseConfig(
  {
    providers: { p: { base_url: 'http://127.0.0.1:9/v1' } },
    models: {
      a: { provider: 'p', price, fallbacks: ['b'] },
      b: { provider: 'p', price, fallbacks: ['c'] },
      c: { provider: 'p', price },
      r1: { provider: 'p', price },
      r2: { provider: 'p', price },
      m1: { provider: 'p', price },
      m2: { provider: 'p', price },
      s: { provider: 'p', price },
      elsewhere: { provider: 'p', price },
    },
    ensembles: { council: { members: ['m1', 'm2'], synthesizer: 's' } },
    routing: { routes: { coding: ['r1', 'r2'] } },
    default_model: 'a',
  },
  'test',
);

describe('reachableModels (which circuits a batch\'s summary may name)', () => {
  it('follows fallbacks all the way down, the rest of a route, and an ensemble\'s members and synthesizer', () => {
    expect(reachableModels(['a'], config)).toEqual(['a', 'b', 'c']);
    expect(reachableModels(['r1'], config)).toEqual(['r1', 'r2']);
    expect(reachableModels(['council'], config)).toEqual(['m1', 'm2', 's']);
  });

  it('leaves out models the batch never reaches, and names the config does not have', () => {
    expect(reachableModels(['c', 'gone'], config)).toEqual(['c']);
    expect(reachableModels([], config)).toEqual([]);
  });
});
