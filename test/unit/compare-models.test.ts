import { describe, expect, it } from 'vitest';
import { chooseCompareModels, parseCompareModels } from '../../src/routing/compare-models.ts';

const NAMES = ['deepseek-v4-flash', 'deepseek-v4-pro', 'glm-4', 'council'];

describe('--compare models', () => {
  it('reads two models or more, ensembles among them', () => {
    expect(parseCompareModels('deepseek-v4-flash, deepseek-v4-pro,council', NAMES)).toEqual(['deepseek-v4-flash', 'deepseek-v4-pro', 'council']);
  });

  it('refuses an unknown name with the one meant, as --ab does', () => {
    expect(() => parseCompareModels('deepseek-v4-flash,deepseek-v4-prp', NAMES)).toThrow(
      '--compare: "deepseek-v4-prp" is not in the config (did you mean "deepseek-v4-pro"?); models and ensembles: deepseek-v4-flash, deepseek-v4-pro, glm-4, council',
    );
    expect(() => parseCompareModels('deepseek-v4-flash,nope', NAMES, true)).toThrow('--compare: "nope" is not a built-in model (no --config was given');
  });

  it('refuses fewer than two models, a name given twice, auto and weights', () => {
    expect(() => parseCompareModels('glm-4', NAMES)).toThrow('--compare needs two models or more (models or ensembles), e.g. deepseek-v4-flash,deepseek-v4-pro (to send every row to glm-4, give --model glm-4)');
    expect(() => parseCompareModels(' , ', NAMES)).toThrow('--compare needs two models or more');
    expect(() => parseCompareModels('glm-4,council,glm-4', NAMES)).toThrow('--compare: "glm-4" is named twice; each model is compared once');
    expect(() => parseCompareModels('auto,glm-4', NAMES)).toThrow('--compare: auto (routing by task type) is not a model to compare');
    expect(() => parseCompareModels('glm-4=0.5,council=0.5', NAMES)).toThrow('--compare: "glm-4=0.5" has a weight, which --compare does not take');
  });

  it('refuses --ab, --model and --route beside it', () => {
    for (const other of [{ ab: 'glm-4,council' }, { model: 'glm-4' }, { route: 'auto' }, { route: 'glm-4' }]) {
      expect(() => chooseCompareModels({ compare: 'glm-4,council', ...other }, null, NAMES, false)).toThrow('give --compare alone, without --ab, --model or --route');
    }
  });

  it('keeps the batch\'s list on a resume, and refuses another one', () => {
    const batch = { id: 'b1', compare: ['glm-4', 'council'] };
    expect(chooseCompareModels({}, batch, NAMES, false)).toEqual(['glm-4', 'council']);
    expect(chooseCompareModels({ compare: 'glm-4,council' }, batch, NAMES, false)).toEqual(['glm-4', 'council']);
    expect(() => chooseCompareModels({ compare: 'council,glm-4' }, batch, NAMES, false)).toThrow("batch b1 compares glm-4,council, not council,glm-4: its rows' numbers say which model answers each");
    expect(() => chooseCompareModels({ model: 'glm-4' }, batch, NAMES, false)).toThrow('batch b1 compares glm-4,council (--compare): --ab, --model and --route cannot go on with it');
    expect(() => chooseCompareModels({}, batch, ['glm-4'], false)).toThrow('"council" is not in this run\'s config');
  });

  it('refuses to take up a comparison in a batch run without one', () => {
    expect(chooseCompareModels({}, { id: 'b2', compare: undefined }, NAMES, false)).toBeUndefined();
    expect(() => chooseCompareModels({ compare: 'glm-4,council' }, { id: 'b2', compare: undefined }, NAMES, false)).toThrow('batch b2 was run without --compare');
  });
});
