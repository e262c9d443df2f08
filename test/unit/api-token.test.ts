import { describe, expect, it } from 'vitest';
import { apiToken } from '../../src/api/api-token.ts';
import { isLoopback } from '../../src/listen-address.ts';

describe('the API token serve requires (api-token.ts)', () => {
  it('refuses a server open beyond this machine without a token, naming the variable and --no-auth (QA: it only warned, and anyone on the network could spend money)', () => {
    for (const host of ['0.0.0.0', '::', '192.168.1.20', 'my-host']) {
      expect(() => apiToken({}, host, true), host).toThrow(`--host ${host} listens beyond this machine and no SWITCHYARD_API_TOKEN is set`);
    }
    const refusal = (() => {
      try {
        apiToken({ SWITCHYARD_API_TOKEN: ' ' }, '0.0.0.0', true);
      } catch (error) {
        return (error as Error).message;
      }
      return null;
    })();
    expect(refusal).toContain('SWITCHYARD_API_TOKEN is empty');
    expect(refusal).toContain('Set SWITCHYARD_API_TOKEN in the server\'s environment');
    expect(refusal).toContain('give --no-auth to serve without a token');
  });

  it('takes the token beyond this machine, no token on loopback, and none with --no-auth', () => {
    expect(apiToken({ SWITCHYARD_API_TOKEN: ' s3cret ' }, '0.0.0.0', true)).toBe('s3cret');
    for (const host of ['127.0.0.1', 'localhost', '::1', '127.0.1.1']) expect(apiToken({}, host, true), host).toBeNull();
    expect(apiToken({}, '0.0.0.0', false)).toBeNull();
    expect(apiToken({}, '127.0.0.1', false)).toBeNull();
  });

  it('refuses --no-auth beside a set token, which would leave the operator unsure which holds', () => {
    expect(() => apiToken({ SWITCHYARD_API_TOKEN: 's3cret' }, '0.0.0.0', false)).toThrow('--no-auth was given and SWITCHYARD_API_TOKEN is set: unset SWITCHYARD_API_TOKEN to serve without a token, or drop --no-auth to require it');
  });
});

describe('isLoopback', () => {
  it('is true for addresses only this machine reaches', () => {
    for (const host of ['127.0.0.1', '127.8.9.10', 'localhost', 'LocalHost', '::1', '::ffff:127.0.0.1']) expect(isLoopback(host), host).toBe(true);
    for (const host of ['0.0.0.0', '::', '10.0.0.1', '::ffff:10.0.0.1', 'example.com', '127.0.0.1.example.com', '1127.0.0.1']) expect(isLoopback(host), host).toBe(false);
  });
});
