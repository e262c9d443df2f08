import { describe, expect, it } from 'vitest';
import { KeyRejection } from '../../src/models/key-rejection.ts';

describe('KeyRejection', () => {
  it('holds a 401 for its hold time, then lets a call try again', () => {
    let now = 1_000;
    const rejection = new KeyRejection(30_000, () => now);
    expect(rejection.current()).toBeNull();
    rejection.record('rejected the API key (401): check $KEY');
    expect(rejection.current()).toEqual({ code: 'unauthorized', message: 'rejected the API key (401): check $KEY' });
    now += 29_999;
    expect(rejection.current()).not.toBeNull();
    now += 1;
    expect(rejection.current()).toBeNull();
  });

  it('holds an account out of quota the same way, with its code', () => {
    let now = 0;
    const rejection = new KeyRejection(30_000, () => now);
    rejection.record('asks for payment (402)', 'quota_exceeded');
    expect(rejection.current()).toEqual({ code: 'quota_exceeded', message: 'asks for payment (402)' });
    now += 30_000;
    expect(rejection.current()).toBeNull();
  });
});
