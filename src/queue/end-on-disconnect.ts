import type { Redis } from 'ioredis';

/** The parts of ioredis' Redis that its own close uses, private in its types. */
interface RedisInternals {
  setStatus(status: string): void;
  flushQueue(error: Error): void;
}

/**
 * Makes an ioredis client end when disconnected while it waits to reconnect. ioredis 6 then only
 * cancels the reconnect: no socket is left to close, so it never says 'end' (redis/ioredis#1247),
 * and BullMQ's Worker.close(), which disconnects its blocking connection and waits for that 'end',
 * never returned: a Ctrl-C or SIGTERM while Redis was down hung the run for good, even once Redis
 * was back. Here the client ends as ioredis ends any other closed connection: status 'end', and the
 * commands waiting for the connection fail "Connection is closed." instead of waiting for ever.
 * Its duplicates (BullMQ's blocking connection, the collector's reader) get the same.
 */
export function endOnDisconnect<R extends Redis>(redis: R): R {
  const disconnect = redis.disconnect.bind(redis);
  redis.disconnect = (reconnect = false) => {
    const waitingToReconnect = !reconnect && redis.status === 'reconnecting';
    disconnect(reconnect);
    if (waitingToReconnect && redis.status === 'reconnecting') endNow(redis);
  };
  const duplicate = redis.duplicate.bind(redis);
  redis.duplicate = ((override?: Parameters<R['duplicate']>[0]) => endOnDisconnect(duplicate(override))) as R['duplicate'];
  return redis;
}

function endNow(redis: Redis): void {
  const internals = redis as unknown as Partial<RedisInternals>;
  if (typeof internals.setStatus !== 'function' || typeof internals.flushQueue !== 'function') {
    redis.emit('end'); // another ioredis: at least what BullMQ waits for
    return;
  }
  internals.setStatus('end');
  internals.flushQueue(new Error('Connection is closed.'));
}
