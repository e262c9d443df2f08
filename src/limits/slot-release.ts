import type { Redis } from 'ioredis';
import type { SwitchyardConfig } from '../config/schema.ts';
import { ModelLimiter } from './model-limiter.ts';
import { modelEndpoint } from './model-endpoint.ts';

/** A rate-limit slot a parked row booked: the model (a config name), its start (Redis clock, ms) and tokens. */
export interface BookedSlot {
  model: string;
  slotAt: number;
  tokens: number;
}

/**
 * Gives back the slots booked by rows of batch `batchId` that will not use them (a stopped run's
 * parked rows, taken off the queue), and the turns told to its deferred rows. Without this, a
 * model's limiter stays booked ahead for as long as those rows would have taken, and a resume's
 * first calls wait behind nobody. Returns how many slots came back.
 */
export async function releaseSlots(redis: Redis, prefix: string, config: SwitchyardConfig, batchId: string, slots: readonly BookedSlot[]): Promise<number> {
  const byModel = new Map<string, BookedSlot[]>();
  // A row deferred past the book-ahead (model-limiter.ts) holds a turn, not a slot: the batch's turns are forgotten even where none of its rows held a slot.
  for (const [model, limits] of Object.entries(config.models)) if (limits.tpm !== undefined || limits.rpm !== undefined) byModel.set(model, []);
  for (const slot of slots) {
    const list = byModel.get(slot.model);
    if (list) list.push(slot);
    else byModel.set(slot.model, [slot]);
  }
  const limiter = new ModelLimiter(redis, { prefix });
  const released = await Promise.all(
    [...byModel].map(([model, booked]) => {
      const limits = config.models[model];
      // A stop: the turns its deferred rows were told go as well (they hold no booking to give back).
      return limiter.release({ model: modelEndpoint(config, model), rpm: limits?.rpm, tpm: limits?.tpm, headroom: config.limits.headroom, reservations: booked, forgetTurns: { line: batchId } });
    }),
  );
  return released.reduce((sum, n) => sum + n, 0);
}
