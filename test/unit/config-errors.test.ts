import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { closestName, meantHint } from '../../src/config/closest-name.ts';
import { configKeysAt } from '../../src/config/key-suggestion.ts';
import { UsageError } from '../../src/errors.ts';

/** The message parseConfig stops with. */
function problems(raw: unknown): string {
  try {
    parseConfig(raw, 'switchyard.yaml');
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as Error).message;
  }
  throw new Error('the config was accepted');
}

const valid = {
  providers: { local: { base_url: 'http://127.0.0.1:8787/v1' } },
  models: { flash: { provider: 'local', price: { input_per_mtok: 0.14, output_per_mtok: 0.28 } } },
  default_model: 'flash',
};

describe('a config with mistakes', () => {
  it('refuses what could not work or do anything (QA): an endpoint path in base_url, a key where its variable goes, a backoff above its cap, a model twice in a chain, a task type no prompt can get', () => {
    const provider = (extra: Record<string, unknown>) => ({ ...valid, providers: { local: { base_url: 'http://127.0.0.1:8787/v1', ...extra } } });
    expect(problems(provider({ base_url: 'https://api.example.com/v1/chat/completions' }))).toContain("providers.local.base_url: expected the API's root, e.g. https://api.example.com/v1: the SDK adds /chat/completions itself");
    // An environment variable in the URL, as in a docker compose file: nothing expands it (QA).
    expect(problems(provider({ base_url: '${VLLM_URL}' })).match(/is not filled in/g)).toHaveLength(1);
    expect(problems(provider({ base_url: '${VLLM_URL}' }))).toContain('providers.local.base_url: ${VLLM_URL} is not filled in: the config is read as written');
    expect(problems(provider({ base_url: 'http://${VLLM_HOST}:8000/v1' }))).toContain('providers.local.base_url: ${VLLM_HOST} is not filled in');
    expect(problems(provider({ base_url: '$BASE/v1' }))).toContain('providers.local.base_url: $BASE is not filled in');
    expect(() => parseConfig(provider({ base_url: 'https://api.example.com/v1?tag=$x' }), 'switchyard.yaml')).not.toThrow();
    // One message for a key pasted in, not a second that it is no variable name; an empty section and a bare price say what goes there (QA).
    expect(problems(provider({ api_key_env: 'sk-proj-abc123def456' })).match(/providers\.local\.api_key_env:/g)).toHaveLength(1);
    expect(problems({ ...valid, budget: { monthly_usd: 1e7 } })).toContain('budget.monthly_usd: at most 9000000 (costs are counted in whole nano-dollars); for no limit, set none');
    expect(problems({ ...valid, cache: null })).toContain('cache: expected an object (key: value fields), got nothing: `cache: {}` takes the defaults, or remove the key');
    expect(problems({ ...valid, models: { flash: { provider: 'local', price: 0.5 } } })).toContain('models.flash.price: expected { input_per_mtok: 0.14, output_per_mtok: 0.28 } (USD per million input and output tokens), got 0.5');
    expect(problems(provider({ api_key_env: 'sk-proj-abc123def456' }))).toContain('providers.local.api_key_env: this looks like an API key itself: put the key in an environment variable');
    expect(() => parseConfig(provider({ api_key_env: 'OPENAI_API_KEY' }), 'switchyard.yaml')).not.toThrow();
    expect(problems({ ...valid, retry: { base_delay_ms: 50_000, max_delay_ms: 100 } })).toContain('retry.base_delay_ms: 50000 is above max_delay_ms (100), which caps every backoff');
    expect(problems({ ...valid, routing: { routes: { simple: ['flash', 'flash'] } } })).toContain('routing.routes.simple.1: "flash" is in this route already');
    expect(problems({ ...valid, routing: { task_types: { foo: { keywords: [] } }, routes: { foo: ['flash'] } } })).toContain('routing.task_types.foo: no prompt can get this type: give it keywords, or min_chars');
    expect(problems({ ...valid, ensembles: { team: { members: ['flash'], synthesizer: 'flash', min_answers: 1 } }, judge: { model: 'team' } })).toMatch(/judge\.model: "team" is an ensemble, and only a model can go here\n/);
  });

  it('names every wrong key by its path and says what was expected, typos with the key meant', () => {
    const message = problems({
      providers: { local: { base_url: '127.0.0.1:8787/v1', timeout_ms: 'fast' } },
      models: {
        flash: { provider: 'local', price: { input_per_mtok: 0.14 }, max_output_token: 8192 },
        pro: { price: { input_per_mtok: -1, output_per_mtok: 1 } },
      },
      default_model: 'flash',
      concurency: 64,
      retry: { max_attempt: 3 },
      breaker: { max_wait: 60_000, trip_after: 3 },
      colour: 'blue',
    });
    expect(message.split('\n')).toEqual([
      'Config switchyard.yaml is not valid:',
      '  providers.local.base_url: expected an http(s) URL such as http://127.0.0.1:8787/v1',
      '  providers.local.timeout_ms: expected a number, got "fast"',
      '  models.flash.price.output_per_mtok: missing (expected a number)',
      '  models.flash: unknown key "max_output_token" (did you mean "max_output_tokens"?)',
      '  models.pro.provider: missing (expected a string)',
      '  models.pro.price.input_per_mtok: must be 0 or more',
      '  retry: unknown key "max_attempt" (did you mean "max_attempts"?)',
      '  breaker: unknown key "max_wait" (did you mean "max_wait_ms"?), unknown key "trip_after" (allowed here: failure_threshold, cooldown_ms, max_wait_ms)',
      '  (top level): unknown key "concurency" (did you mean "concurrency"?), unknown key "colour" (a top-level key of your own, for YAML anchors say, must start with x-: x-colour)',
      'See docs/config.md for every key.',
    ]);
  });

  it('refuses a timeout_ms longer than a timer Node.js sets (review: it fired at once, and every call was a timeout)', () => {
    const message = problems({ providers: { p: { base_url: 'http://127.0.0.1:8787/v1', timeout_ms: 3_000_000_000 } }, models: { m: { provider: 'p' } }, default_model: 'm' });
    expect(message).toContain('  providers.p.timeout_ms: at most 2147483647 (24.8 days), the longest timer Node.js sets: a longer one would fire at once, and every call would time out');
    expect(() => parseConfig({ providers: { p: { base_url: 'http://127.0.0.1:8787/v1', timeout_ms: 2_147_483_647 } }, models: { m: { provider: 'p' } }, default_model: 'm' }, 'switchyard.yaml')).not.toThrow();
  });

  it('refuses a model or an ensemble named "auto": --route and --ab use that word for routing by task type', () => {
    const message = problems({ ...valid, models: { flash: { provider: 'local' }, auto: { provider: 'local' } }, ensembles: { auto: { members: ['flash', 'flash'], synthesizer: 'flash' } } });
    expect(message).toContain('models.auto: "auto" is the word --route and --ab use for routing by task type: give it another name (its upstream can stay "auto")');
    expect(message).toMatch(/^ {2}ensembles\.auto: "auto" is the word --route and --ab use for routing by task type: give it another name$/m);
  });

  it('refuses a base_url whose scheme is not http or https (a typo fails every call later)', () => {
    expect(problems({ ...valid, providers: { local: { base_url: 'htp://127.0.0.1:8787/v1' } } })).toContain('providers.local.base_url: expected an http(s) URL such as http://127.0.0.1:8787/v1');
    expect(() => parseConfig({ ...valid, providers: { local: { base_url: 'https://api.deepseek.com/v1' } } }, 'c.yaml')).not.toThrow();
  });

  it('says which model was meant, that an ensemble is no link of a chain, and that a model cannot fall back to itself', () => {
    const message = problems({
      ...valid,
      models: { flash: { provider: 'local', fallbacks: ['flash', 'flsh'] } },
      default_model: 'flas',
      ensembles: { council: { members: ['flash', 'flash'], synthesizer: 'flash' } },
      routing: { routes: { simple: ['council'] } },
    });
    expect(message).toContain('models.flash.fallbacks.0: "flash" falls back to itself: a fallback is another model (retries of the same one are retry.max_attempts)');
    expect(message).toContain('models.flash.fallbacks.1: unknown model "flsh" (did you mean "flash"?); models: flash');
    expect(message).toContain('routing.routes.simple.0: "council" is an ensemble, and only a model can go here (name the ensemble as a row\'s model, or with --model or --ab)');
    expect(message).toContain('default_model: unknown model "flas" (did you mean "flash"?); models: flash');
    expect(problems({ ...valid, models: {} })).toContain('default_model: unknown model "flash"; no model is defined under models');
  });

  it('refuses a context window that max_tokens fills, and says a run flag is no config key', () => {
    expect(problems({ ...valid, models: { flash: { provider: 'local', context_window: 500 } } })).toContain(
      'models.flash.context_window: 500 leaves no room for a prompt beside max_tokens (1024): every row would skip the model; raise it, or lower max_tokens (or set models.flash.max_output_tokens)',
    );
    expect(() => parseConfig({ ...valid, max_tokens: 100, models: { flash: { provider: 'local', context_window: 500 } } }, 'c.yaml')).not.toThrow();
    expect(problems({ ...valid, ab: 'flash,pro' })).toContain('(top level): unknown key "ab" (--ab is a flag of switchyard run, not a config key)');
    expect(problems({ ...valid, model: 'flash' })).toContain('unknown key "model" (--model is a flag of switchyard run, not a config key; models are defined under "models", and "default_model" names the one rows go to)');
    // QA: a key pasted into the config was met with the list of allowed keys.
    expect(problems({ ...valid, providers: { local: { base_url: 'http://127.0.0.1:8787/v1', api_key: 'sk-x' } } })).toContain('unknown key "api_key" (the key itself never goes in the config: put it in an environment variable');
    const council = (synthesis_max_tokens: number) => ({ ...valid, models: { flash: { provider: 'local' }, pro: { provider: 'local', context_window: 128_000 } }, ensembles: { council: { members: ['flash', 'flash'], synthesizer: 'pro', synthesis_max_tokens } } });
    expect(problems(council(200_000))).toContain('ensembles.council.synthesis_max_tokens: 200000 leaves no room for the synthesis prompt in its synthesizer\'s context_window of 128000 (models.pro): every row would pay its members and then fail');
    expect(() => parseConfig(council(2000), 'c.yaml')).not.toThrow();
  });

  it('names a model or provider that the config does not define', () => {
    expect(problems({ ...valid, default_model: 'flsh' })).toMatch(/default_model/);
    expect(problems({ ...valid, models: { flash: { provider: 'lokal' } } })).toMatch(/lokal/);
  });

  it('names a route or default task type that no prompt could get, which would send rows to default_model unseen', () => {
    expect(problems({ ...valid, routing: { routes: { simpel: ['flash'], coding: ['flash'] } } }).split('\n')[1]).toBe(
      '  routing.routes.simpel: no prompt gets task type "simpel" (did you mean "simple"?): the task types are complex, coding, moderate, creative, simple (the built-in ones, and default_task_type)',
    );
    expect(problems({ ...valid, routing: { default_task_type: 'simpel', routes: { simple: ['flash'] } } })).toContain('routing.default_task_type: "simpel" is no task type and no route names it (did you mean "simple"?)');
    // Own task types replace the built-in ones: a route for a built-in one would never be taken.
    const own = { task_types: { legal: { keywords: ['contract'] } }, routes: { legal: ['flash'], complex: ['flash'] } };
    expect(problems({ ...valid, routing: own })).toContain('routing.routes.complex: no prompt gets task type "complex": the task types are legal, simple (routing.task_types, and default_task_type)');
    // A default type of one's own, routed or not, is no typo.
    expect(() => parseConfig({ ...valid, routing: { default_task_type: 'general', routes: { general: ['flash'], coding: ['flash'] } } }, 'c.yaml')).not.toThrow();
    expect(() => parseConfig({ ...valid, routing: { default_task_type: 'general' } }, 'c.yaml')).not.toThrow();
    // A temperature for a type no prompt gets would never be used either.
    expect(problems({ ...valid, routing: { temperatures: { creativ: 1 } } })).toContain('routing.temperatures.creativ: no prompt gets task type "creativ" (did you mean "creative"?)');
  });

  it('shows the wrong value of a choice or a whole number, with the choice meant', () => {
    const message = problems({ ...valid, models: { flash: { ...valid.models.flash, context_window: 2000.5 } }, limits: { on_limit: 'fallbak' }, routing: { classifier: 'LLM' } });
    expect(message.split('\n').slice(1, 4)).toEqual([
      '  models.flash.context_window: expected a whole number, got 2000.5',
      '  routing.classifier: expected one of "rules", "llm", got "LLM" (did you mean "llm"?)',
      '  limits.on_limit: expected one of "wait", "fallback", got "fallbak" (did you mean "fallback"?)',
    ]);
  });

  it('refuses a model whose max_output_tokens leaves no room in its context window', () => {
    expect(problems({ ...valid, models: { flash: { ...valid.models.flash, context_window: 4096, max_output_tokens: 8192 } } })).toContain(
      'models.flash.max_output_tokens: 8192 leaves no room for a prompt in its context_window of 4096: every row would skip the model',
    );
  });

  it('offers the model name meant for a typo or another case, never another version', () => {
    const names = ['deepseek-v4-flash', 'deepseek-v4-pro', 'gpt-a', 'qwen2.5-7b'];
    expect(meantHint('deepseek-v4-flsh', names)).toBe(' (did you mean "deepseek-v4-flash"?)');
    expect(meantHint('DeepSeek-V4-Pro', names)).toBe(' (did you mean "deepseek-v4-pro"?)');
    expect(meantHint('gpt-9', names)).toBe('');
    expect(meantHint('qwen2.5-72b', names)).toBe('');
  });

  it('refuses a claim lock too short for a busy worker to renew', () => {
    expect(problems({ ...valid, queue: { lock_ms: 10 } })).toContain('queue.lock_ms: must be at least 5000 ms: a shorter claim is lost whenever its worker is busy for a moment, and a row whose claim is lost 4 times is given up');
  });

  it('says why an ensemble with too few members cannot reach its min_answers', () => {
    expect(problems({ ...valid, ensembles: { duo: { members: ['flash'], synthesizer: 'flash' } } })).toContain('ensembles.duo.min_answers: 2 (the default) is more than its 1 member: give it more members, or a lower min_answers');
  });
});

describe('key suggestions', () => {
  it('come from the keys allowed where the unknown one stands', () => {
    expect(configKeysAt([])).toContain('concurrency');
    expect(configKeysAt(['models', 'any-name'])).toEqual(expect.arrayContaining(['provider', 'upstream', 'price', 'rpm', 'tpm']));
    expect(configKeysAt(['providers', 'p'])).toEqual(expect.arrayContaining(['base_url', 'api_key_env', 'timeout_ms']));
  });

  it('are made only for near misses, and short keys need a closer match', () => {
    expect(closestName('modles', ['models', 'default_model'])).toBe('models');
    expect(closestName('Concurrency', ['concurrency'])).toBe('concurrency');
    expect(closestName('rpn', ['rpm', 'tpm'])).toBe('rpm');
    expect(closestName('xyz', ['rpm', 'tpm'])).toBeNull();
    expect(closestName('colour', ['concurrency', 'models'])).toBeNull();
  });
});
