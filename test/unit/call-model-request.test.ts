import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.ts';
import { callModel } from '../../src/models/call-model.ts';
import { createProviderClients } from '../../src/models/provider-clients.ts';

/** What the SDK puts on the wire for a model call, read by a server that answers every call alike. */
describe('the request callModel sends', () => {
  const bodies: Array<Record<string, unknown>> = [];
  const server = createServer(async (request: IncomingMessage, response) => {
    let text = '';
    for await (const chunk of request) text += String(chunk);
    bodies.push(JSON.parse(text) as Record<string, unknown>);
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 0, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: '{}' }, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 1 } }));
  });
  beforeAll(() => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)));
  afterAll(() => server.close());

  it("carries a Batch line's other body fields, under the request's own model, messages and limits", async () => {
    const { port } = server.address() as AddressInfo;
    const config = parseConfig({ providers: { p: { base_url: `http://127.0.0.1:${port}/v1` } }, models: { m: { provider: 'p', upstream: 'm-upstream' } }, default_model: 'm' }, 'test');
    const provider = createProviderClients(config).get('p')!;
    const messages = [{ role: 'user' as const, content: 'hi' }];
    // A row routed or fallen back to another model keeps its fields but not the line's model.
    await callModel(provider, { model: 'm', upstream: 'm-upstream', messages, temperature: 0.2, maxTokens: 50, params: { response_format: { type: 'json_object' }, seed: 7, model: 'gpt-4o' } });
    await callModel(provider, { model: 'm', upstream: 'm-upstream', messages, temperature: 0.2, maxTokens: 50 });
    expect(bodies).toEqual([
      { response_format: { type: 'json_object' }, seed: 7, model: 'm-upstream', messages, temperature: 0.2, max_tokens: 50 },
      { model: 'm-upstream', messages, temperature: 0.2, max_tokens: 50 },
    ]);
  });
});
