import type { SwitchyardConfig } from '../config/schema.ts';
import { formatClockTime, formatDuration } from '../figure-text.ts';
import { CircuitBreaker } from '../limits/circuit-breaker.ts';
import { modelEndpoint } from '../limits/model-endpoint.ts';
import { mayAnswer } from '../routing/may-answer.ts';
import type { RedisClient } from '../queue/lua-script.ts';
import type { Report } from '../output/report-json.ts';

/** A summary does not wait on Redis for this: past it, it says what it knew without the circuits. */
const ASK_LIMIT_MS = 2000;

interface ShutCircuit {
  model: string;
  /** When (epoch ms) its circuit lets a call through again: the one that tests the provider. */
  opensAt: number;
}

/** The names a report counts rows or calls under: models and ensembles. */
export const reportedNames = (report: Pick<Report, 'models' | 'ensembles'>): string[] => [...Object.keys(report.models), ...Object.keys(report.ensembles)];

/**
 * The models a batch's rows went to or could have gone on to: those its report counts (`used`: rows
 * or calls, an ensemble's under its name), an ensemble's members and synthesizer, the rest of a route
 * that holds one of them, and their fallbacks, all the way down. A circuit another batch shut on a
 * model this one never reaches is not this batch's to mention (review).
 */
export function reachableModels(used: Iterable<string>, config: SwitchyardConfig): string[] {
  const names = [...used];
  // An empty list would mean "routing" to mayAnswer: every routed model.
  if (names.length === 0) return [];
  const routes = Object.values(config.routing?.routes ?? {});
  const withRoutes = names.flatMap((name) => [name, ...routes.filter((chain) => chain.includes(name)).flat()]);
  return [...mayAnswer(config, withRoutes)].filter((model) => config.models[model] !== undefined).sort();
}

/**
 * The batch's models whose circuit is shut now (breakers are kept in Redis, per endpoint, for every
 * batch: a resume within breaker.cooldown_ms finds the one its run's failures opened), soonest to
 * open first; none when Redis does not answer within ASK_LIMIT_MS.
 */
export async function shutCircuits(redis: RedisClient, prefix: string, config: SwitchyardConfig, models: Iterable<string> = Object.keys(config.models), now = Date.now()): Promise<ShutCircuit[]> {
  const breaker = new CircuitBreaker(redis, { prefix, breaker: config.breaker });
  const asked = Promise.all([...models].map(async (model) => ({ model, opensAt: now + (await breaker.shutForMs(modelEndpoint(config, model))) })));
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ASK_LIMIT_MS)));
  const circuits = await Promise.race([asked.catch(() => null), late]).finally(() => clearTimeout(timer));
  return (circuits ?? []).filter((circuit) => circuit.opensAt > now).sort((a, b) => a.opensAt - b.opensAt);
}

/** "m1's circuit stays shut until 06:30:25 UTC (in 29.0 s)", or for several, each with its time. */
export function shutCircuitsText(shut: readonly ShutCircuit[], now = Date.now()): string {
  const until = (circuit: ShutCircuit) => `${formatClockTime(circuit.opensAt)} (in ${formatDuration(circuit.opensAt - now)})`;
  if (shut.length === 1) return `${shut[0]!.model}'s circuit stays shut until ${until(shut[0]!)}`;
  return `Their circuits stay shut: ${shut.map((circuit) => `${circuit.model} until ${until(circuit)}`).join(', ')}`;
}
