import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ChatPlan } from '../../src/sim/chat.ts';
import { startSimulator, type Simulator } from '../../src/sim/server.ts';

// A bug in planning an answer, or in writing it once its latency has passed, stands in for any the simulator may have.
vi.mock('../../src/sim/chat.ts', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../src/sim/chat.ts')>();
  return {
    ...original,
    planChat: (env: Parameters<typeof original.planChat>[0], body: { model?: string }): ChatPlan => {
      if (body.model === 'bug-at-once') throw new TypeError('planned wrong');
      if (body.model === 'bug-later') return { ...(original.planChat(env, body) as ChatPlan & { kind: 'answer' }), answer: null as never, delayMs: 20 };
      return original.planChat(env, body);
    },
  };
});

const open: Simulator[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((sim) => sim.close()));
});

async function ask(sim: Simulator, model: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${sim.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }), signal: AbortSignal.timeout(5000) });
  return { status: response.status, body: await response.json() };
}

describe('simulator server: an unexpected error answering a request', () => {
  it("is that request's 500 server_error with the message, and the simulator goes on answering (it runs inside run and serve)", async () => {
    const sim = await startSimulator({ latency_ms: 0 });
    open.push(sim);
    const failures: unknown[] = [];
    const onUncaught = (error: unknown) => failures.push(error);
    process.on('uncaughtException', onUncaught);
    try {
      expect(await ask(sim, 'bug-at-once')).toEqual({ status: 500, body: { error: { message: 'The simulator failed on this request: planned wrong', type: 'server_error', param: null, code: 'internal_error' } } });
      const later = await ask(sim, 'bug-later');
      expect(later.status).toBe(500);
      expect((later.body as { error: { type: string; message: string } }).error).toMatchObject({ type: 'server_error', message: expect.stringContaining('The simulator failed on this request: ') });
      expect((await ask(sim, 'deepseek-v4-flash')).status).toBe(200);
      expect(sim.stats().by_status).toMatchObject({ 500: 2, 200: 1 });
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    expect(failures).toEqual([]);
  });
});
