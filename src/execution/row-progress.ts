import { z } from 'zod';
import type { CallRecord } from '../output/records.ts';

/**
 * How far a row has got, saved in its job's data whenever the job is parked (waiting for a rate
 * limit slot or a backoff), so the row resumes where it stopped: same route, same attempt count,
 * the calls already made (their cost records go out with the row's result).
 */
export const routePlanSchema = z.object({
  taskType: z.string(),
  routeReason: z.string(),
  chain: z.array(z.string()),
  skipped: z.array(z.object({ model: z.string(), reason: z.string() })),
  promptTokens: z.number().int().nonnegative(),
  promptTokensCounted: z.boolean().default(false),
});
export type RoutePlan = z.infer<typeof routePlanSchema>;

const callRecordSchema = z.custom<CallRecord>((value) => typeof value === 'object' && value !== null && 'model' in value && 'attempt' in value);

export const rowProgressSchema = z.object({
  plan: routePlanSchema.optional(),
  /** Index into plan.chain of the model being tried. */
  chainIndex: z.number().int().nonnegative().default(0),
  /** Calls made to the current model so far. */
  attempt: z.number().int().nonnegative().default(0),
  calls: z.array(callRecordSchema).default([]),
  fallbackReasons: z.array(z.string()).default([]),
  /** The model whose rate-limit slot this job holds while parked. */
  reservedModel: z.string().optional(),
  /** That slot's start (Redis clock); the call's tokens are settled against it. */
  slotAt: z.number().default(0),
  /** The same start on the parking worker's clock (epoch ms), for the last stretch of the wait. */
  wakeAt: z.number().default(0),
  lastError: z.object({ code: z.string(), message: z.string(), status: z.number().nullable() }).optional(),
  /** Parked while budget held by calls in flight comes back (it has had its wait in the worker). */
  waitingForBudget: z.boolean().optional(),
});
export type RowProgress = z.infer<typeof rowProgressSchema>;

export function freshProgress(): RowProgress {
  return { chainIndex: 0, attempt: 0, calls: [], fallbackReasons: [], slotAt: 0, wakeAt: 0 };
}
