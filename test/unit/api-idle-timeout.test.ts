import { once } from 'node:events';
import { mkdtemp } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { startApiServer } from '../../src/api/api-server.ts';
import type { BatchService } from '../../src/api/batch-service.ts';

describe('switchyard serve: a stalled upload', () => {
  it('is cut off once the connection sends nothing for the idle time, so its batch id is free again (it held it for as long as the client kept the connection)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sy-idle-'));
    const { promise: saved, resolve } = Promise.withResolvers<string>();
    const service = {
      unavailable: () => null,
      unhealthy: async () => null,
      submit: async (submission) => {
        // As the real submission does: the batch's lease is held while its file comes in.
        await submission.saveInput(join(dir, 'input.csv')).then(
          () => resolve('saved'),
          (error: unknown) => resolve(`refused: ${(error as Error).message}`),
        );
        throw new Error('not reached');
      },
    } as Partial<BatchService> as BatchService;
    const server = await startApiServer({ host: '127.0.0.1', port: 0, token: null, maxUploadBytes: 1024 * 1024, service, logger: pino({ level: 'silent' }), idleTimeoutMs: 300 });
    try {
      const socket = connect(Number(new URL(server.url).port), '127.0.0.1');
      await once(socket, 'connect');
      socket.on('error', () => undefined);
      const closed = once(socket, 'close');
      socket.write('POST /v1/batches?batch_id=stalled HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 1000\r\n\r\nprompt\nhi');
      const started = Date.now();
      expect(await saved).toMatch(/^refused: the upload broke off after \d+ bytes/);
      await closed;
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      await server.close();
    }
  });
});
