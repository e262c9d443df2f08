import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Budget, batchBudgetKey, holdsKey, monthKey, monthKeyExpiresAt, type BudgetHold, type BudgetReservation } from '../../src/limits/budget.ts';
import { cleanupPrefix, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';

const prefix = uniquePrefix('limits-budget');
const clients: Redis[] = [];
let budgets: Budget[] = [];

beforeAll(() => {
  for (let i = 0; i < 5; i++) clients.push(new Redis(testRedisUrl()));
  budgets = clients.map((redis) => new Budget(redis));
});

afterAll(async () => {
  const first = clients[0];
  if (first) await cleanupPrefix(first, prefix);
  await Promise.all(clients.map((redis) => redis.quit()));
});

function budget(i = 0): Budget {
  const found = budgets[i % budgets.length];
  if (!found) throw new Error('no budget');
  return found;
}

const admitted = (results: BudgetReservation[]) => results.filter((result) => result.ok).length;
const holdsOf = (results: BudgetReservation[]): BudgetHold[] => results.flatMap((result) => (result.ok ? [result.hold] : []));

function holdOf(result: BudgetReservation): BudgetHold {
  if (!result.ok) throw new Error(`refused: ${JSON.stringify(result)}`);
  return result.hold;
}

describe('Budget', () => {
  it('admits exactly the concurrent reservations that fit a batch cap', async () => {
    const batchKey = batchBudgetKey(prefix, 'fifty');
    expect(batchKey).toBe(`${prefix}:batch:{fifty}:budget`);
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => budget(i).reserve({ batchKey, batchLimitNanos: 2550, estimateNanos: 100 })));
    expect(admitted(results)).toBe(25);
    expect(results.find((result) => !result.ok)).toEqual({ ok: false, scope: 'batch', limitNanos: 2550, spentNanos: 0, reservedNanos: 2500 });
    expect(await budget().usage(batchKey)).toEqual({ spentNanos: 0, reservedNanos: 2500 });
  });

  it('settle moves the estimate out of reserved and the actual cost into spent', async () => {
    const batchKey = batchBudgetKey(prefix, 'settle');
    const reserve = (i: number) => budget(i).reserve({ batchKey, batchLimitNanos: 1000, estimateNanos: 100 });
    const first = await Promise.all(Array.from({ length: 12 }, (_, i) => reserve(i)));
    expect(admitted(first)).toBe(10);
    await Promise.all(holdsOf(first).map((hold, i) => budget(i).settle(hold, 70)));
    expect(await budget().usage(batchKey)).toEqual({ spentNanos: 700, reservedNanos: 0 });
    expect(await budget().spent(batchKey)).toBe(700);
    // 300 left: three more fit.
    const second = await Promise.all(Array.from({ length: 5 }, (_, i) => reserve(i)));
    expect(admitted(second)).toBe(3);
    // A call that cost more than its estimate may take spent past the cap; later reservations are refused.
    for (const hold of holdsOf(second)) await budget().settle(hold, 150);
    expect(await budget().usage(batchKey)).toEqual({ spentNanos: 1150, reservedNanos: 0 });
    expect(await reserve(0)).toMatchObject({ ok: false, scope: 'batch', spentNanos: 1150 });
    // Settling the same hold twice books the cost twice but releases its estimate once.
    const other = batchBudgetKey(prefix, 'release');
    const hold = holdOf(await budget().reserve({ batchKey: other, estimateNanos: 500 }));
    await budget().reserve({ batchKey: other, estimateNanos: 300 });
    await budget().settle(hold, 0);
    await budget().settle(hold, 0);
    expect(await budget().usage(other)).toEqual({ spentNanos: 0, reservedNanos: 300 });
  });

  it("frees the holds of calls that never settle (a killed worker) once they pass their deadline", async () => {
    const batchKey = batchBudgetKey(prefix, 'killed');
    const redis = clients[0] as Redis;
    const dying = new Budget(redis, { holdTtlMs: 300 });
    const living = new Budget(clients[1] as Redis, { holdTtlMs: 60_000 });
    // The dying worker takes most of the cap and never settles.
    expect(admitted(await Promise.all(Array.from({ length: 8 }, () => dying.reserve({ batchKey, batchLimitNanos: 1000, estimateNanos: 100 }))))).toBe(8);
    const kept = holdOf(await living.reserve({ batchKey, batchLimitNanos: 1000, estimateNanos: 150 }));
    expect(await living.reserve({ batchKey, batchLimitNanos: 1000, estimateNanos: 100 })).toMatchObject({ ok: false, reservedNanos: 950 });
    expect(await redis.zcard(holdsKey(batchKey))).toBe(9);
    await new Promise((resolve) => setTimeout(resolve, 400));
    // Past their deadline the dead holds are freed by the next reservation; the living one stays.
    const after = holdOf(await living.reserve({ batchKey, batchLimitNanos: 1000, estimateNanos: 100 }));
    expect(await living.usage(batchKey)).toEqual({ spentNanos: 0, reservedNanos: 250 });
    expect(await redis.zcard(holdsKey(batchKey))).toBe(2);
    // A call that outlived its hold still books its cost, and frees nothing that is not its own.
    const late = holdOf(await dying.reserve({ batchKey, batchLimitNanos: 1000, estimateNanos: 200 }));
    await new Promise((resolve) => setTimeout(resolve, 400));
    await living.reserve({ batchKey, batchLimitNanos: 1000, estimateNanos: 1 }); // frees the late hold
    await dying.settle(late, 40);
    await Promise.all([living.settle(kept, 120), living.settle(after, 90)]);
    expect(await living.usage(batchKey)).toEqual({ spentNanos: 250, reservedNanos: 1 });
  });

  it('reserves several holds together or none, each settled on its own; renew moves a live hold on, grows it if there is room, and releases a lapsed one', async () => {
    const batchKey = batchBudgetKey(prefix, 'together');
    const monthScope = monthKey(`${prefix}-together`, new Date());
    const limits = { batchLimitNanos: 1000, monthLimitNanos: 5000 };
    const quick = new Budget(clients[0] as Redis, { holdTtlMs: 300 });
    const row = await quick.reserveTogether({ batchKey, monthKey: monthScope, ...limits, estimatesNanos: [100, 100, 500] });
    if (!row.ok) throw new Error('refused');
    expect(row.holds.map((hold) => hold.estimateNanos)).toEqual([100, 100, 500]);
    // All or nothing: 700 held, so a row of 400 more is refused whole, and takes nothing.
    expect(await budget().reserveTogether({ batchKey, monthKey: monthScope, ...limits, estimatesNanos: [100, 300] })).toMatchObject({ ok: false, scope: 'batch', reservedNanos: 700 });
    expect(await budget().usage(batchKey)).toEqual({ spentNanos: 0, reservedNanos: 700 });
    await quick.settle(row.holds[0]!, 60);
    // Grown from 500 to 700: 100 + 700 held and 60 spent fit 1000; to 900 they would not (the hold stays as it was, then released).
    const grown = await quick.renew(row.holds[2]!, { ...limits, estimateNanos: 700 });
    expect(grown?.estimateNanos).toBe(700);
    expect(await budget().usage(batchKey)).toEqual({ spentNanos: 60, reservedNanos: 800 });
    expect(await budget().usage(monthScope)).toEqual({ spentNanos: 60, reservedNanos: 800 });
    expect(await quick.renew(grown!, { ...limits, estimateNanos: 900 })).toBeNull();
    expect(await budget().usage(batchKey)).toEqual({ spentNanos: 60, reservedNanos: 100 });
    expect(await budget().usage(monthScope)).toEqual({ spentNanos: 60, reservedNanos: 100 });
    // A hold past its deadline is not renewed; whatever a later reservation has not freed of it is released.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(await quick.renew(row.holds[1]!, { ...limits, estimateNanos: 100 })).toBeNull();
    expect(await budget().usage(batchKey)).toEqual({ spentNanos: 60, reservedNanos: 0 });
    expect(await budget().usage(monthScope)).toEqual({ spentNanos: 60, reservedNanos: 0 });
    await clients[0]!.del(monthScope, holdsKey(monthScope));
  });

  it('settles calls with no estimate (an unpriced model) and amounts too large for Lua to print plainly', async () => {
    const batchKey = batchBudgetKey(prefix, 'amounts');
    // Lua writes 0 negated as "-0" and 1e15 as "1e+15"; Redis' HINCRBY refuses both.
    const free = holdOf(await budget().reserve({ batchKey, batchLimitNanos: 10, estimateNanos: 0 }));
    await budget().settle(free, 0);
    const big = 3_000_000_000_000_000; // $3M in nano-dollars
    const large = holdOf(await budget().reserve({ batchKey, estimateNanos: big }));
    expect(await budget().usage(batchKey)).toEqual({ spentNanos: 0, reservedNanos: big });
    await budget().settle(large, big - 1);
    expect(await budget().usage(batchKey)).toEqual({ spentNanos: big - 1, reservedNanos: 0 });
    const lapsing = new Budget(clients[0] as Redis, { holdTtlMs: 50 });
    await lapsing.reserve({ batchKey, estimateNanos: big });
    await new Promise((resolve) => setTimeout(resolve, 100));
    await budget().reserve({ batchKey, estimateNanos: 0 }); // frees the lapsed $3M hold
    expect(await budget().usage(batchKey)).toEqual({ spentNanos: big - 1, reservedNanos: 0 });
  });

  it("keeps each scope's holds in its own Cluster slot", () => {
    expect(holdsKey('p:batch:{b1}:budget')).toBe('p:batch:{b1}:budget:holds');
    // A key without a hash tag is hashed whole, and so is a tag holding the whole key.
    expect(holdsKey('p:budget:month:2026-12')).toBe('{p:budget:month:2026-12}:holds');
  });

  it('holds a month cap across two batches, and releases the batch hold when the month refuses', async () => {
    const month = monthKey(prefix, new Date());
    const batches = [batchBudgetKey(prefix, 'month-a'), batchBudgetKey(prefix, 'month-b')];
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => budget(i).reserve({ batchKey: batches[i % 2] ?? '', monthKey: month, monthLimitNanos: 1000, estimateNanos: 100 })),
    );
    expect(admitted(results)).toBe(10);
    expect(results.find((result) => !result.ok)).toMatchObject({ ok: false, scope: 'month', limitNanos: 1000 });
    expect(await budget().usage(month)).toEqual({ spentNanos: 0, reservedNanos: 1000 });
    const [a, b] = await Promise.all(batches.map((key) => budget().usage(key)));
    expect((a?.reservedNanos ?? 0) + (b?.reservedNanos ?? 0)).toBe(1000); // refused ones left nothing behind
    // Both caps set: the batch cap refuses first here, and the month keeps nothing of it.
    const tight = batchBudgetKey(prefix, 'month-tight');
    const both = { batchKey: tight, monthKey: monthKey(prefix, new Date(Date.UTC(2030, 0, 15))), batchLimitNanos: 150, monthLimitNanos: 10_000, estimateNanos: 100 };
    const hold = holdOf(await budget().reserve(both));
    expect(hold.scopes).toEqual([{ scope: 'batch', key: tight }, { scope: 'month', key: both.monthKey }]);
    expect(await budget().reserve(both)).toMatchObject({ ok: false, scope: 'batch', limitNanos: 150, reservedNanos: 100 });
    expect(await budget().usage(both.monthKey)).toEqual({ spentNanos: 0, reservedNanos: 100 });
    // The hold settles in the month it was reserved in, whenever the call ends.
    await budget().settle(hold, 90);
    expect(await budget().usage(both.monthKey)).toEqual({ spentNanos: 90, reservedNanos: 0 });
    expect(await budget().usage(tight)).toEqual({ spentNanos: 90, reservedNanos: 0 });
  });

  it("names months in UTC and expires month keys 40 days after they end; a batch's keys last as long as the batch", async () => {
    expect(monthKey('p', new Date('2026-11-30T23:59:59Z'))).toBe('p:budget:month:2026-11');
    expect(monthKey('p', new Date('2026-12-01T00:00:00Z'))).toBe('p:budget:month:2026-12');
    expect(monthKeyExpiresAt('p:budget:month:2026-11')).toBe(Date.UTC(2026, 11, 1) + 40 * 86_400_000);
    expect(monthKeyExpiresAt('p:budget:month:2026-12')).toBe(Date.UTC(2027, 0, 1) + 40 * 86_400_000);
    expect(monthKeyExpiresAt('p:whatever')).toBeNull();

    const now = new Date();
    const month = monthKey(prefix, now);
    const batchKey = batchBudgetKey(prefix, 'ttl');
    await budget().reserve({ batchKey, monthKey: month, estimateNanos: 1 });
    const redis = clients[0] as Redis;
    const monthTtl = await redis.pttl(month);
    expect(monthTtl).toBeGreaterThan(40 * 86_400_000 - 60_000);
    expect(monthTtl).toBeLessThanOrEqual(72 * 86_400_000);
    // A batch's spend lives until `switchyard forget` deletes the batch (QA: with a 30-day expiry, a
    // --resume after 30 idle days found it spent at $0 and could spend its --budget again in full).
    expect(await redis.pttl(batchKey)).toBe(-1);
    expect(await redis.pttl(holdsKey(batchKey))).toBe(-1);
    // A key an earlier version left with an expiry loses it at the batch's next reservation.
    await redis.pexpire(batchKey, 86_400_000);
    const hold = holdOf(await budget().reserve({ batchKey, estimateNanos: 5 }));
    expect(await redis.pttl(batchKey)).toBe(-1);
    await budget().settle(hold, 5);
    expect(await redis.pttl(batchKey)).toBe(-1);
    expect(await budget().usage(batchKey)).toEqual({ spentNanos: 5, reservedNanos: 1 });
  });

  it('rejects amounts that are not whole nano-dollars', async () => {
    await expect(budget().reserve({ batchKey: batchBudgetKey(prefix, 'bad'), estimateNanos: 1.5 })).rejects.toThrow(RangeError);
    const hold = holdOf(await budget().reserve({ batchKey: batchBudgetKey(prefix, 'bad'), estimateNanos: 1 }));
    await expect(budget().settle(hold, -1)).rejects.toThrow(RangeError);
  });
});
