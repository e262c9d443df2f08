import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { routingSchema, type RoutingConfig } from '../../src/config/schema.ts';
import { DEFAULT_TASK_TYPES } from '../../src/routing/default-task-types.ts';
import { classificationInput, classifyByRules, compileTaskRules, RULES_READ_CHARS } from '../../src/routing/rule-classifier.ts';

const builtIn = compileTaskRules(undefined);
const classify = (text: string) => classifyByRules(text, builtIn);

function routing(input: unknown): RoutingConfig {
  return routingSchema.parse(input);
}

describe('built-in rules: the design source examples', () => {
  it('routes the three examples as the source says they should', () => {
    expect(classify("What's the capital of France?")).toEqual({ taskType: 'simple', reason: 'rules: no keyword matched -> simple' });
    expect(classify('Write a Python function to implement a binary search tree with insertion, deletion, and traversal methods.')).toEqual({
      taskType: 'coding',
      reason: 'rules: coding (python, function; score 2)',
    });
    expect(
      classify(
        'Analyze the competitive landscape of AI API providers in 2026 and recommend a strategy for a startup looking to enter the market. Consider pricing, model capabilities, and go-to-market approaches.',
      ),
    ).toEqual({ taskType: 'complex', reason: 'rules: complex (analyze, strategy; score 2)' });
  });

  it('matches whole words only: "read" is not an ad, "capital" is not an API', () => {
    expect(classify('Can you read this paragraph and summarize it?').taskType).toBe('simple');
    expect(classify('Is the capital gain taxed?').taskType).toBe('simple');
    expect(classify('Write an ad for our bakery').taskType).toBe('creative');
    expect(classify('The API returns 500 errors').taskType).toBe('coding');
  });

  it('finds Latin keywords written straight beside Chinese or Japanese characters (QA: "用Python写..." went to simple)', () => {
    expect(classify('用Python写一个快速排序函数。')).toEqual({ taskType: 'coding', reason: 'rules: coding (python; score 1)' });
    expect(classify('PythonでJSONを解析する関数を書いてください').reason).toBe('rules: coding (python, json; score 2)');
    expect(classify('请debug这段JavaScript代码').reason).toBe('rules: coding (debug, javascript; score 2)');
    expect(classify('用Pythonic的写法').taskType).toBe('simple'); // still whole words: "Pythonic" is not "python"
    expect(classify('这个function写得不好').reason).toBe('rules: coding (function; score 1)'); // a prefix ends where the Chinese starts
  });

  it('takes a proof or a derivation for reasoning, however short the prompt (QA: both went to the cheap model)', () => {
    expect(classify('Prove that there are infinitely many primes and explain each step rigorously.').taskType).toBe('complex');
    expect(classify('Derive the Black-Scholes equation from first principles with full mathematical rigor').taskType).toBe('complex');
    expect(classify('Prove that the square root of 2 is irrational.').taskType).toBe('moderate');
  });

  it('weighs signals: a strategy question that mentions an API is complex, not coding', () => {
    const result = classify('Evaluate our API pricing strategy against competitors.');
    expect(result.taskType).toBe('complex');
    expect(result.reason).toBe('rules: complex (evaluate, strategy; score 2)');
    // One complexity word against two coding words: coding wins.
    expect(classify('Compare two Python functions').taskType).toBe('coding');
  });

  it('matches prefix keywords and counts each keyword once', () => {
    expect(classify('What strategic options do we have?')).toEqual({ taskType: 'moderate', reason: 'rules: moderate (strategic; score 1)' });
    expect(classify('Strategy, strategies and more strategic thinking').reason).toBe('rules: moderate (strategy; score 1)');
    expect(classify('Help me debugging this').taskType).toBe('coding');
    expect(classify('Write a haiku').reason).toBe('rules: creative (write, haiku; score 2)');
  });

  it('counts a word of the prompt once even when two of a type\'s keywords match it', () => {
    // The design source's streaming example: a poem, not code.
    expect(classify('Write a haiku about programming.')).toEqual({ taskType: 'creative', reason: 'rules: creative (write, haiku; score 2)' });
    const overlapping = compileTaskRules(routing({ task_types: { coding: { keywords: ['programming', 'programm*', 'compile*', 'compiler*'] }, creative: { keywords: ['write', 'poem'] } } }));
    expect(classifyByRules('Write a poem about compilers', overlapping)).toEqual({ taskType: 'creative', reason: 'rules: creative (write, poem; score 2)' });
    expect(classifyByRules('Compilers and programming', overlapping)).toEqual({ taskType: 'coding', reason: 'rules: coding (compilers, programming; score 2)' });
  });

  it('uses length thresholds: 500+ chars moderate, 2000+ chars complex', () => {
    expect(classify('word '.repeat(99))).toMatchObject({ taskType: 'simple' }); // 495 chars
    expect(classify('x'.repeat(612))).toEqual({ taskType: 'moderate', reason: 'rules: moderate (612 chars)' });
    expect(classify('y'.repeat(2000))).toEqual({ taskType: 'complex', reason: 'rules: complex (2000 chars)' });
    // A long prompt with a single complexity word: complex (length gives min_score 2), reason shows both.
    expect(classify(`${'z'.repeat(2100)} research`).reason).toBe('rules: complex (2109 chars; research; score 2)');
    // Three coding words beat a long prompt's length-only complex score of 2.
    expect(classify(`${'a '.repeat(1100)} python sql debug`).taskType).toBe('coding');
  });

  it('breaks ties by type order: complex and moderate tie on shared words, coding beats creative', () => {
    expect(classify('analyze and compare').taskType).toBe('complex');
    expect(classify('Write a SQL query').taskType).toBe('coding');
  });

  it('matches multi-word and punctuated keywords', () => {
    expect(classify('Explain this stack\n trace').reason).toBe('rules: coding (stack trace; score 1)');
    expect(classify('Is C++ hard?').reason).toBe('rules: coding (c++; score 1)');
  });

  it('lists at most four matched words in a reason', () => {
    expect(classify('python sql json yaml html css').reason).toBe('rules: coding (python, sql, json, yaml +2 more; score 6)');
  });

  it('is fast enough to run for every row', () => {
    const prompts = Array.from({ length: 2000 }, (_, i) => `Question ${i}: how should I plan a week-long trip to city number ${i} on a budget?`);
    const started = performance.now();
    for (const prompt of prompts) classify(prompt);
    // Far below a real budget (about 1 µs each here); only catches a pathological regression.
    expect(performance.now() - started).toBeLessThan(2000);
  });
});

describe('configured task types', () => {
  it('judges word boundaries by whole code points, also outside the Basic Multilingual Plane', () => {
    const rules = compileTaskRules(routing({ task_types: { maths: { keywords: ['𝒜lgebra*'] }, rare: { keywords: ['𠀀字'] }, tags: { keywords: ['#urgent', 'c#'] } } }));
    expect(classifyByRules('Explain 𝒜lgebraic tricks', rules).reason).toBe('rules: maths (𝒜lgebraic; score 1)');
    expect(classifyByRules('x𝒜lgebra', rules).taskType).toBe('simple'); // inside a word
    expect(classifyByRules('𝒜𝒜lgebra', rules).taskType).toBe('simple'); // after a letter that takes two UTF-16 units
    expect(classifyByRules('请看𠀀字这里', rules).taskType).toBe('rare'); // no word boundaries in Chinese
    expect(classifyByRules('Mark it #urgent please', rules).taskType).toBe('tags');
    expect(classifyByRules('Is C# like Java?', rules).reason).toBe('rules: tags (c#; score 1)');
    expect(classifyByRules('abc# is not C#-like', rules).reason).toBe('rules: tags (c#; score 1)');
  });

  it('replaces the built-in set, keeps config order for ties and uses the configured default', () => {
    const rules = compileTaskRules(
      routing({
        task_types: {
          legal: { keywords: ['contract*', 'clause', 'liability'], min_score: 1 },
          finance: { keywords: ['invoice', 'contract*'], weight: 2, min_score: 2 },
          translate: { keywords: ['translate', '翻译'] },
        },
        default_task_type: 'general',
      }),
    );
    expect(rules.labels).toEqual(['legal', 'finance', 'translate', 'general']);
    expect(classifyByRules('Review this contract', rules)).toEqual({ taskType: 'finance', reason: 'rules: finance (contract; score 2)' });
    expect(classifyByRules('Review this clause', rules).taskType).toBe('legal');
    expect(classifyByRules('What is the liability in these contracts?', rules).taskType).toBe('legal'); // 2 vs 2: legal is first
    expect(classifyByRules('请翻译这段话', rules).taskType).toBe('translate'); // no word boundaries in Chinese
    expect(classifyByRules('What time is it?', rules)).toEqual({ taskType: 'general', reason: 'rules: no keyword matched -> general' });
    expect(classifyByRules('Write a Python function', rules).taskType).toBe('general'); // built-ins are gone
  });

  it('says when keywords matched but no type reached its min_score', () => {
    const rules = compileTaskRules(routing({ task_types: { deep: { keywords: ['why', 'how'], min_score: 2 } } }));
    expect(classifyByRules('why?', rules)).toEqual({ taskType: 'simple', reason: 'rules: no type reached its min_score -> simple' });
    expect(classifyByRules('why and how?', rules).taskType).toBe('deep');
  });

  it('uses the built-in types when routing has no task_types', () => {
    const rules = compileTaskRules(routing({ routes: {} }));
    expect(rules.labels).toEqual([...Object.keys(DEFAULT_TASK_TYPES), 'simple']);
  });

  it('rejects a keyword with a * anywhere but the end, at config load', () => {
    const config = {
      providers: { p: { base_url: 'http://127.0.0.1:1/v1' } },
      models: { m: { provider: 'p' } },
      default_model: 'm',
      routing: { task_types: { odd: { keywords: ['a*b'] } } },
    };
    expect(() => parseConfig(config, 'test')).toThrow(/routing\.task_types\.odd\.keywords\.0: expected a word or phrase/);
    expect(() => compileTaskRules({ ...routing({}), task_types: { odd: { keywords: ['*'], weight: 1, min_score: 1 } } })).toThrow(/is not a keyword/);
  });
});

describe('what the rules read from a row', () => {
  it('reads system messages and the last user message; length counts only the last user message', () => {
    const input = classificationInput([
      { role: 'system', content: 'You are a Python expert.' },
      { role: 'user', content: 'Write me a poem' },
      { role: 'assistant', content: 'Roses are red' },
      { role: 'user', content: 'How do I reverse a list?' },
    ]);
    expect(input).toEqual({ text: 'You are a Python expert.\nHow do I reverse a list?', chars: 24 });
    expect(classifyByRules(input.text, builtIn, input.chars).taskType).toBe('coding');
  });

  it("reads each message's first RULES_READ_CHARS characters only, cut at whitespace, while min_chars counts the whole message (QA: a 50 MB document held `serve` 2.8 s, most of it in the rules)", () => {
    const rules = compileTaskRules(routing({ task_types: { legal: { keywords: ['indemnification'] }, huge: { keywords: [], min_chars: 150_000 } } }));
    const filler = 'Die Vertragsparteien vereinbaren Folgendes über Schäden. '; // 57 characters
    const body = filler.repeat(Math.ceil(RULES_READ_CHARS / filler.length));
    const early = classificationInput([{ role: 'user', content: `indemnification ${body}${body}` }]);
    expect(early.text.length).toBeLessThanOrEqual(RULES_READ_CHARS);
    expect(early.chars).toBe(`indemnification ${body}${body}`.length);
    expect(classifyByRules(early.text, rules, early.chars).reason).toBe('rules: legal (indemnification; score 1)');
    // A keyword only past the first RULES_READ_CHARS is not read; the length still counts for min_chars.
    const late = classificationInput([{ role: 'user', content: `${body}${body} indemnification` }]);
    expect(classifyByRules(late.text, rules, late.chars).taskType).toBe('huge');
    // Cut at a space, not inside a word that a keyword could then match half of.
    expect(filler.split(' ')).toContain(late.text.split(' ').at(-1));
    // A system prompt and the question each get their own share.
    const both = classificationInput([{ role: 'system', content: body + body }, { role: 'user', content: 'Check the indemnification clause' }]);
    expect(classifyByRules(both.text, rules, both.chars).taskType).toBe('legal');
  });

  it('does not let a long shared system prompt make every row complex', () => {
    const input = classificationInput([
      { role: 'system', content: 'Be helpful. '.repeat(300) },
      { role: 'user', content: 'Hi there' },
    ]);
    expect(classifyByRules(input.text, builtIn, input.chars).taskType).toBe('simple');
  });
});
