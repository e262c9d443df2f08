// What a run checks in its config before it queues anything: API keys it can use, and what to warn of.
import type { SwitchyardConfig } from '../config/schema.ts';
import { UsageError } from '../errors.ts';
import { missingKeyFor } from '../models/provider-clients.ts';
import { callCostNanos, formatUsd, nanosToUsd, usdToNanos } from '../models/pricing.ts';
import { monthKey } from '../limits/budget.ts';
import type { Session } from '../queue/session.ts';
import { keyHolders } from '../queue/worker-registry.ts';
import { closestName } from '../config/closest-name.ts';
import { formatDuration } from '../figure-text.ts';
import { mayAnswer } from '../routing/may-answer.ts';
import { AUTO_ROUTE } from '../routing/pinned-model.ts';

/**
 * With workers in this process (a run's, or a server's) and no API key here for any model the rows
 * could be answered by, and no other worker process on record with one either, every row would fail with
 * missing_api_key: stop before enqueueing instead. (Some keys missing is only a warning; a row whose
 * key another worker has is left to it.) A server without workers of its own (--no-worker) does
 * not ask: workers that start later could take the rows. `answering`: the models or ensembles the
 * rows go to (--model, --ab's arms, --compare's models), undefined or with `auto` when they are
 * routed; the models asked are those and their fallbacks (an ensemble's members and synthesizer),
 * or with routing every model of the config. Says where the rows can be called: 'here'
 * (by some model), or only 'elsewhere', by the workers that have the keys (`keysElsewhere`: keysHeldElsewhere).
 */
export function refuseWithoutKeys(config: SwitchyardConfig, answering: readonly string[] | undefined, keysElsewhere: ReadonlySet<string>, where: 'run' | 'server'): 'here' | 'elsewhere' {
  const named = answering && !answering.includes(AUTO_ROUTE) ? answering : undefined;
  const chain = named ? [...mayAnswer(config, named)].filter((model) => config.models[model] !== undefined) : Object.keys(config.models);
  const names = keysAllMissing(config, chain);
  if (!names) return 'here';
  if (names.some((name) => keysElsewhere.has(name.slice(1)))) return 'elsewhere';
  const them = names.length === 1 ? 'it' : 'them';
  const whereSet = names.length === 1 ? 'it is' : 'they are';
  if (where === 'server') {
    throw new UsageError(
      `${names.join(', ')} ${notSetWords(names)} where this server runs, and no worker on this Redis has ${them}: every row would fail with missing_api_key. ` +
        `Set ${them} where the server runs (and start it again), or start "switchyard worker" where ${whereSet} set.`,
    );
  }
  const fallbacks = named !== undefined && chain.length > named.length;
  const needs = named
    ? `${named.length === 1 ? `model "${named[0]}"` : `the models the rows go to (${named.join(', ')})`}${fallbacks ? ` and ${named.length === 1 ? 'its' : 'their'} fallbacks need` : named.length === 1 ? ' needs' : ' need'} ${them}`
    : 'every model in the config needs one';
  const meant = names.flatMap((name) => similarSetVariable(name.slice(1), process.env) ?? []);
  const hint = meant.length > 0 ? ` (did you mean ${meant.map((name) => `$${name}`).join(', ')}, which ${meant.length === 1 ? 'is' : 'are'} set?)` : '';
  throw new UsageError(
    `${names.join(', ')} ${notSetWords(names)}${hint}, and ${needs}: no call could succeed (nor does a worker on this Redis have ${them}). ` +
      `Set ${them} (e.g. export ${names[0]!.slice(1)}=...) and run again, or use --detach and start "switchyard worker" where ${whereSet} set.`,
  );
}

/**
 * A judge whose model and fallbacks all lack their key would score nothing, and the answers would
 * be paid for and kept unscored until a resume with a judge that can be called: stop before that.
 */
export function refuseJudgeWithoutKey(config: SwitchyardConfig, keysElsewhere: ReadonlySet<string> = new Set(), mode: 'run' | 'server' = 'run'): void {
  if (!config.judge) return;
  const chain = [config.judge.model, ...(config.models[config.judge.model]?.fallbacks ?? [])];
  const names = keysAllMissing(config, chain);
  // A worker on this Redis with one of the keys can score the answers.
  if (!names || names.some((name) => keysElsewhere.has(name.slice(1)))) return;
  const them = names.length === 1 ? 'it' : 'them';
  const where = mode === 'server' ? "in the server's environment (or a worker's on its Redis)" : '';
  const fix = mode === 'server' ? `set ${them} there and restart it, or post the batch with another judge (judge=<model>)` : `set ${them} (e.g. export ${names[0]!.slice(1)}=...) and run again, or give another judge (--judge <model>)`;
  throw new UsageError(
    `${names.join(', ')} ${notSetWords(names)}${where ? ` ${where}` : ''}, and the judge (${chain.join(', then ')}) needs ${them}: no answer could be scored, and the answers would be paid for unscored. ` +
      `${fix[0]!.toUpperCase()}${fix.slice(1)}.`,
  );
}

/**
 * The models or ensembles a run's rows go to: --compare's models, --ab's arms or the pinned --model /
 * --route model; undefined when the rows are routed. What the key and month checks look at.
 */
export function modelsTheRowsGoTo(compare: readonly string[] | undefined, abSplit: readonly { model: string }[] | undefined, model: string | undefined): readonly string[] | undefined {
  return compare ?? (abSplit ? abSplit.map((arm) => arm.model) : model ? [model] : undefined);
}

/**
 * The models a run's rows may call: with a pinned model (--model), an A/B split of named arms or the
 * models --compare names, those (an ensemble's members and synthesizer) and their fallbacks, the judge's and the LLM
 * classifier's; otherwise every model of the config. A row that names its own model is not
 * foreseen: such rows are rare beside a pinned model, and what this decides is only said or refused.
 */
export function modelsTheRowsMayCall(config: SwitchyardConfig, pinned: readonly string[] | undefined): string[] {
  if (!pinned || pinned.includes(AUTO_ROUTE)) return Object.keys(config.models);
  const named = pinned.flatMap((name) => {
    const ensemble = config.ensembles[name];
    return ensemble ? [...ensemble.members, ensemble.synthesizer] : [name];
  });
  const helpers = [...(config.judge ? [config.judge.model] : []), ...(config.routing?.classifier === 'llm' && config.routing.llm_classifier ? [config.routing.llm_classifier.model] : [])];
  const chains = [...named, ...helpers].flatMap((model) => [model, ...(config.models[model]?.fallbacks ?? [])]);
  return [...new Set(chains)].filter((model) => config.models[model] !== undefined);
}

/**
 * The least a call of these models reserves from a budget: a one-token prompt and the config's
 * max_tokens (capped by the model's) at its price; null when none of them has a price.
 */
function smallestReservationNanos(config: SwitchyardConfig, models: readonly string[]): { nanos: number; model: string } | null {
  let smallest: { nanos: number; model: string } | null = null;
  for (const model of models) {
    const { price, max_output_tokens } = config.models[model]!;
    const nanos = callCostNanos(price, { input_tokens: 1, output_tokens: Math.min(config.max_tokens, max_output_tokens ?? Number.MAX_SAFE_INTEGER) });
    if (nanos !== null && (smallest === null || nanos < smallest.nanos)) smallest = { nanos, model };
  }
  return smallest;
}

/**
 * A month whose cap (budget.monthly_usd) is spent already, or whose rest is less than any call the
 * rows could make reserves (a batch stopped by the cap leaves it just short of the cap): every row
 * that needs a priced call would end budget_exceeded at once, each a line in the outputs. Refused
 * before anything is queued, unless some rows may still run (a model they may call with no price,
 * which the cap cannot count, or the answer cache): then said.
 */
export async function refuseSpentMonth(session: Pick<Session, 'redis' | 'space'>, config: SwitchyardConfig, pinned: readonly string[] | undefined, say: (line: string) => void, now = new Date()): Promise<void> {
  if (config.budget.monthly_usd === undefined) return;
  const spentNanos = Number((await session.redis.hget(monthKey(session.space.prefix, now), 'spent')) ?? 0);
  const check = spentMonthCheck(config, pinned, spentNanos, now);
  if (check?.kind === 'refuse') throw new UsageError(check.message);
  if (check) say(check.message);
}

/**
 * What `refuseSpentMonth` does with the month's spend read (a dry run reads it too): refuse the run,
 * warn that only some rows can run, or nothing (null; also when the config sets no monthly cap).
 */
export function spentMonthCheck(config: SwitchyardConfig, pinned: readonly string[] | undefined, spentNanos: number, now = new Date()): { kind: 'refuse' | 'warn'; message: string } | null {
  const cap = config.budget.monthly_usd;
  if (cap === undefined) return null;
  const leftNanos = usdToNanos(cap) - spentNanos;
  const models = modelsTheRowsMayCall(config, pinned);
  const smallest = smallestReservationNanos(config, models);
  if (leftNanos > 0 && (smallest === null || leftNanos >= smallest.nanos)) return null;
  // Figures that round alike are given to the nano-dollar: "$0.000287 is less than $0.000287" says nothing.
  const [left, least] = [leftNanos, smallest?.nanos ?? 0].map((nanos) => formatUsd(nanosToUsd(nanos)));
  const exact = (nanos: number) => (left === least ? `$${(nanos / 1e9).toFixed(9)}` : formatUsd(nanosToUsd(nanos)));
  const short = leftNanos > 0 && smallest ? ` (the ${exact(leftNanos)} left is less than the least a call reserves: ${exact(smallest.nanos)} on ${smallest.model}, max_tokens ${config.max_tokens} at its output price)` : '';
  const spent = `the month's budget is spent: calls on this Redis cost ${formatUsd(nanosToUsd(spentNanos))} in ${now.toISOString().slice(0, 7)} (UTC), and budget.monthly_usd is ${formatUsd(cap)}${short}`;
  const raise = 'Raise budget.monthly_usd in the config and run again, or run it next month.';
  const unpriced = models.some((model) => !config.models[model]!.price);
  if (!unpriced && !config.cache) return { kind: 'refuse', message: `${spent}, so every row that needs a call would end budget_exceeded. ${raise}` };
  return { kind: 'warn', message: `Warning: ${spent}: only rows answered ${[...(config.cache ? ['from the answer cache'] : []), ...(unpriced ? ['by a model with no price'] : [])].join(' or ')} can run, the others end budget_exceeded. ${raise}` };
}

/** The key variables ("$NAME") these models need, when not one of them can be called here; null when one can. */
function keysAllMissing(config: SwitchyardConfig, models: readonly string[]): string[] | null {
  const missing = models.map((model) => missingKeyFor(config, model));
  if (missing.some((name) => name === null)) return null;
  return [...new Set(missing)].map((name) => `$${name}`);
}

/** Each key variable missing here, with the models it holds back, so a warning says what will fail. */
export function missingKeys(config: SwitchyardConfig, models: Iterable<string>, env: NodeJS.ProcessEnv = process.env): Map<string, string[]> {
  const byKey = new Map<string, string[]>();
  for (const model of models) {
    const key = missingKeyFor(config, model, env);
    if (key !== null) byKey.set(key, [...(byKey.get(key) ?? []), model]);
  }
  return byKey;
}

/** Whether `model` falls back to a model on another provider (whose key may be set). */
function hasFallbackElsewhere(config: SwitchyardConfig, model: string): boolean {
  const provider = config.models[model]?.provider;
  return (config.models[model]?.fallbacks ?? []).some((fallback) => config.models[fallback]?.provider !== provider);
}

/** "is not set", "are set but empty" ...: said of key variables (`$NAME`s) none of which holds a key. */
function notSetWords(names: readonly string[], env: NodeJS.ProcessEnv = process.env): string {
  const empty = names.filter((name) => env[name.slice(1)] !== undefined).length;
  const verb = names.length === 1 ? 'is' : 'are';
  if (empty === 0) return `${verb} not set`;
  return empty === names.length ? `${verb} set but empty` : `${verb} not set or empty`;
}

/** "$NAME is not set", or "is set but empty": an empty key is as good as none. */
export function notSet(key: string, env: NodeJS.ProcessEnv = process.env): string {
  const meant = similarSetVariable(key, env);
  const hint = meant ? ` (did you mean $${meant}, which is set? api_key_env names the variable)` : '';
  return env[key] === undefined ? `$${key} is not set${hint}` : `$${key} is set but empty${env[key] === '' ? '' : ' (spaces only)'}${hint}`;
}

/** A set variable that `key` was likely meant to name: a typo of it, or one holding all its words (OPENAI_KEY for OPENAI_API_KEY). */
function similarSetVariable(key: string, env: NodeJS.ProcessEnv): string | null {
  const words = key.toUpperCase().split('_').filter(Boolean);
  const set = Object.keys(env).filter((name) => name !== key && /KEY|TOKEN|SECRET/i.test(name) && env[name]?.trim());
  return closestName(key, set) ?? set.find((name) => words.every((word) => name.toUpperCase().split('_').includes(word))) ?? null;
}

/** The key variables missing here that another worker process on this Redis has set (their rows are left to it). */
export async function keysHeldElsewhere(session: Session, config: SwitchyardConfig): Promise<Set<string>> {
  const heldElsewhere = keyHolders(session.redis, session.space);
  const held = new Set<string>();
  for (const key of missingKeys(config, Object.keys(config.models)).keys()) if (await heldElsewhere(key)) held.add(key);
  return held;
}

/**
 * A synthesis_max_tokens or judge.max_tokens set (not a default) above its model's max_output_tokens: each call is
 * sent the model's cap (model-request.ts), so the key asks for room no answer gets (QA: a synthesis of
 * 2000 went out as 512, unsaid). Not refused: the calls run, shorter. Only the ensembles the rows
 * may reach, as for the unpriced models; the synthesizer's and the judge's own model, not their fallbacks.
 */
function cutMaxTokensWarnings(config: SwitchyardConfig, pinned: readonly string[] | undefined): string[] {
  const everyEnsemble = !pinned || pinned.includes('auto');
  const keys = [
    ...Object.entries(config.ensembles).flatMap(([name, ensemble]) =>
      (everyEnsemble || pinned.includes(name)) && ensemble.synthesis_max_tokens !== undefined
        ? [{ key: `ensembles.${name}.synthesis_max_tokens`, value: ensemble.synthesis_max_tokens, model: ensemble.synthesizer, whose: "its synthesizer's", call: 'synthesis' }]
        : [],
    ),
    // Unset, its default is cut to the model's cap unsaid: the config asked for nothing more.
    ...(config.judge?.max_tokens !== undefined ? [{ key: 'judge.max_tokens', value: config.judge.max_tokens, model: config.judge.model, whose: "the judge's", call: 'judge' }] : []),
  ];
  return keys.flatMap(({ key, value, model, whose, call }) => {
    const cap = config.models[model]?.max_output_tokens;
    if (cap === undefined || value <= cap) return [];
    return [
      `Warning: ${key} (${value}) is above ${whose} models.${model}.max_output_tokens (${cap}): each ${call} call asks ${model} for ${cap} tokens at most. ` +
        `Raise models.${model}.max_output_tokens if ${model} can write more, or lower ${key} to ${cap}.`,
    ];
  });
}

/**
 * A warning per provider whose key, set here, would go over plain http beyond the user's own
 * network, where anyone on the way reads it (the key is sent as `Authorization: Bearer ...`).
 */
function keysSentInTheClear(config: SwitchyardConfig, env: NodeJS.ProcessEnv = process.env): string[] {
  const used = new Set(Object.values(config.models).map((model) => model.provider));
  return Object.entries(config.providers).flatMap(([name, provider]) => {
    const url = new URL(provider.base_url);
    const key = provider.api_key_env;
    if (!used.has(name) || url.protocol !== 'http:' || !key || !env[key]?.trim() || ownNetwork(url.hostname)) return [];
    return [`Warning: providers.${name}.base_url is plain http to ${url.host}: $${key} goes there unencrypted, readable by anyone on the way; use https:// (a key is only safe over http on a network of your own).`];
  });
}

/**
 * Whether a host is this machine or a network of the user's own: loopback, a private or link-local
 * address, a name of one label (a docker compose service, a LAN host) or under .local / .internal.
 */
function ownNetwork(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host.includes(':')) return host === '::1' || /^(f[cd][0-9a-f]{2}|fe80):/.test(host);
  if (!host.includes('.')) return true;
  return /^(127\.|10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|169\.254\.)/.test(host) || /\.(localhost|local|internal)$/.test(host);
}

/** `keysElsewhere`: keys missing here that other workers have (keysHeldElsewhere). */
export function warnAboutConfig(config: SwitchyardConfig, pinned: readonly string[] | undefined, budgeted: boolean, detached: boolean, keysElsewhere: ReadonlySet<string>, say: (line: string) => void): void {
  // Only the models the rows may call: an unpriced model no row reaches costs nothing unknown.
  const unpriced = modelsTheRowsMayCall(config, pinned).filter((name) => !config.models[name]!.price);
  // A budget counts priced calls only: an unpriced model's calls would run past it unnoticed.
  const unbounded = budgeted ? ', and no budget limits them' : '';
  if (unpriced.length > 0) say(`Warning: no price for ${unpriced.join(', ')}: their calls get cost_usd null in costs.jsonl and the report${unbounded}.`);
  // A detached batch's calls are made by the workers, with their own environment. Only the models
  // the rows may call: a key missing for a model no row goes to holds nothing back.
  for (const [key, models] of missingKeys(config, modelsTheRowsMayCall(config, pinned))) {
    if (keysElsewhere.has(key)) {
      say(`Note: ${notSet(key)} here: rows for ${models.join(', ')} are left to the workers on this Redis that have it.`);
      continue;
    }
    // Nothing is sent for a model without its key: a row whose chain goes on to another provider is answered there.
    const fallingBack = models.filter((model) => hasFallbackElsewhere(config, model));
    const failing = models.filter((model) => !fallingBack.includes(model));
    const outcomes = [
      ...(fallingBack.length > 0 ? [`rows for ${fallingBack.join(', ')} go on to their fallbacks`] : []),
      // Said whether or not rows reach them: the rules and the classifier decide that row by row.
      ...(failing.length > 0 ? [`${failing.join(', ')} cannot be called (missing_api_key): a row that reaches ${failing.length === 1 ? 'it' : 'one'} with no other model to go on to fails`] : []),
    ];
    say(`Warning: ${notSet(key)}${detached ? ' here: the workers that take its rows need it, or' : ':'} ${outcomes.join('; ')}.`);
  }
  for (const line of keysSentInTheClear(config)) say(line);
  // The opposite mistake (classifier: llm without it) is refused by the schema; this one would just never call it.
  if (config.routing?.llm_classifier && config.routing.classifier !== 'llm') {
    say(`Warning: routing.llm_classifier (${config.routing.llm_classifier.model}) is not used: routing.classifier is "rules"; set routing.classifier: llm to have it label the rows.`);
  }
  for (const line of cutMaxTokensWarnings(config, pinned)) say(line);
  // Said each run: answers that are not asked for again may be a surprise at a temperature that varies them.
  if (config.cache) say(`Note: the answer cache is on: a request made before (same endpoint and upstream model, messages, temperature, max_tokens and body fields), in the last ${formatDuration(config.cache.ttl_hours * 3_600_000)}, gets the answer it had, with no call (cache in the config).`);
}
