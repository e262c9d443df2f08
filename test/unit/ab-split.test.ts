import { describe, expect, it } from 'vitest';
import { abArmFor, armTarget, autoArmUnroutedNote, formatAbSplit, parseAbSplit } from '../../src/routing/ab-split.ts';

const NAMES = ['flash', 'pro', 'glm', 'council'];

describe('A/B split', () => {
  it('reads equal shares or weights, scaled to sum to 1', () => {
    expect(parseAbSplit('flash, pro', NAMES)).toEqual([{ model: 'flash', weight: 0.5 }, { model: 'pro', weight: 0.5 }]);
    expect(formatAbSplit(parseAbSplit('flash=3,council=1', NAMES))).toBe('flash 75%, council 25%');
  });

  it('takes "auto" as an arm routed by task type, pinning its rows to no model', () => {
    const arms = parseAbSplit('auto=3,pro=1', NAMES);
    expect(arms).toEqual([{ model: 'auto', weight: 0.75 }, { model: 'pro', weight: 0.25 }]);
    expect(formatAbSplit(arms)).toBe('auto (routed by task type) 75%, pro 25%');
    expect(armTarget('auto')).toBeUndefined();
    expect(armTarget('pro')).toBe('pro');
    expect(() => parseAbSplit('flash,aut', NAMES)).toThrow('--ab: "aut" is not in the config (did you mean "auto"?); models and ensembles: flash, pro, glm, council (or auto, to route the arm\'s rows by task type)');
  });

  it('says what is wrong with a split', () => {
    expect(() => parseAbSplit('flash,nope', NAMES)).toThrow('--ab: "nope" is not in the config; models and ensembles: flash, pro, glm, council');
    // No --config: the names are the built-in models', and the refusal says so.
    expect(() => parseAbSplit('flash,nope', NAMES, true)).toThrow(
      '--ab: "nope" is not a built-in model (no --config was given: to call other models, give a config that names them); built-in models and ensembles: flash, pro, glm, council',
    );
    expect(() => parseAbSplit('flash', NAMES)).toThrow('--ab needs two arms or more (models, ensembles, or auto for the routing), e.g. deepseek-v4-flash,glm-4, auto,deepseek-v4-pro, or with weights a=0.8,b=0.2 (to send every row to flash, give --model flash)');
    expect(() => parseAbSplit('auto', NAMES)).toThrow('(to route every row by task type, give --route auto; to test the routing against a model, auto,<model>)');
    expect(() => parseAbSplit('flash=0.8,pro', NAMES)).toThrow('give every model a weight');
    expect(() => parseAbSplit('flash=0,pro=1', NAMES)).toThrow('the weight of "flash" must be a positive number, not "0"');
    expect(() => parseAbSplit('flash,pro,flash', NAMES)).toThrow('--ab: "flash" is named twice; each arm may appear once');
  });

  it('sends each id to the same arm every time, and spreads ids by the weights', () => {
    const arms = parseAbSplit('flash=0.8,pro=0.2', NAMES);
    expect(abArmFor('q17', arms)).toBe(abArmFor('q17', arms));
    const counts = { flash: 0, pro: 0 } as Record<string, number>;
    for (let i = 1; i <= 10_000; i++) counts[abArmFor(String(i), arms)]! += 1;
    expect(counts.flash! / 10_000).toBeGreaterThan(0.78);
    expect(counts.flash! / 10_000).toBeLessThan(0.82);
    const even = parseAbSplit('flash,pro,glm', NAMES);
    const thirds = { flash: 0, pro: 0, glm: 0 } as Record<string, number>;
    for (let i = 1; i <= 9_000; i++) thirds[abArmFor(`r${i}`, even)]! += 1;
    for (const n of Object.values(thirds)) expect(Math.abs(n - 3000)).toBeLessThan(200);
  });
});

describe('an arm auto without routing', () => {
  it('is said to go to default_model, and only then', () => {
    const arms = parseAbSplit('auto,pro', ['flash', 'pro']);
    expect(autoArmUnroutedNote(arms, { default_model: 'flash' })).toBe('Note: the config has no routing, so the arm "auto" sends its rows to default_model flash, as a batch without --ab would.');
    expect(autoArmUnroutedNote(arms, { default_model: 'flash', routing: {} })).toBeNull();
    expect(autoArmUnroutedNote(parseAbSplit('flash,pro', ['flash', 'pro']), { default_model: 'flash' })).toBeNull();
    expect(autoArmUnroutedNote(undefined, { default_model: 'flash' })).toBeNull();
  });
});
