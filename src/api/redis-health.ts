import type { Session } from '../queue/session.ts';

/** Why requests cannot be served now (Redis is away), or null: said at once rather than after the client's retries. */
export function redisUnavailable(session: Pick<Session, 'redis' | 'redisLabel'>): string | null {
  // 'connect': the server took the connection and its ready check is under way (commands wait for it): not away.
  if (session.redis.status === 'ready' || session.redis.status === 'connect') return null;
  return `Redis at ${session.redisLabel} is not answering (${session.redis.status}), and every batch's state lives there: the server goes on by itself once it is back; send the request again then`;
}

/** Why the server is not healthy: Redis away, or not answering a PING within `timeoutMs` (a frozen server keeps its connections); null when healthy. */
export async function redisUnhealthy(session: Pick<Session, 'redis' | 'redisLabel'>, timeoutMs: number): Promise<string | null> {
  const away = redisUnavailable(session);
  if (away) return away;
  let timer: NodeJS.Timeout | undefined;
  // Called late only after one more turn of the event loop: when this process was busy past the
  // deadline (loading modules as its worker starts, say), the timer would fire before the reply
  // that came meanwhile is read, and a Redis that answered in time would be called hung.
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => setImmediate(() => resolve('late')), timeoutMs)));
  const answer = await Promise.race([session.redis.ping().catch(() => 'failed'), late]).finally(() => clearTimeout(timer));
  return answer === 'PONG' ? null : `Redis at ${session.redisLabel} did not answer a PING within ${timeoutMs} ms (it hangs, or is overloaded), and every batch's state lives there`;
}
