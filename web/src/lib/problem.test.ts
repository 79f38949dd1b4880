import { describe, expect, it } from 'vitest';
import { ApiError, describe as describeError, parseRetryAfter, problemFromResponse } from './problem';

const words = { retryIn: (n: number) => `try again in ${n} s`, busy: 'busy', offline: 'offline', unexpected: 'unexpected' };

describe('problems', () => {
  it('names each invalid field', async () => {
    const response = new Response(
      JSON.stringify({ type: 'about:blank', title: 'Unprocessable', status: 422, detail: 'invalid fields', errors: [{ field: 'email', message: 'is not an e-mail address' }, { field: 'password', message: 'is too short' }] }),
      { status: 422, headers: { 'content-type': 'application/problem+json' } },
    );
    const error = await problemFromResponse(response);
    expect(error.status).toBe(422);
    expect(error.fieldError('email')).toBe('is not an e-mail address');
    expect(describeError(error, words)).toBe('email: is not an e-mail address; password: is too short');
  });

  it('uses the detail when no field is named, and survives a non-JSON body', async () => {
    expect(describeError(await problemFromResponse(new Response(JSON.stringify({ status: 409, detail: 'already paid' }), { status: 409 })), words)).toBe('already paid');
    expect(describeError(await problemFromResponse(new Response('<html>bad gateway</html>', { status: 502 })), words)).toBe('<html>bad gateway</html>');
    expect(describeError(await problemFromResponse(new Response('', { status: 500 })), words)).toBe('HTTP 500');
  });

  it('turns 429 and 503 into a wait', async () => {
    const limited = await problemFromResponse(new Response('{}', { status: 429, headers: { 'retry-after': '7' } }));
    expect(describeError(limited, words)).toBe('try again in 7 s');
    expect(describeError(new ApiError(503, {}), words)).toBe('busy');
  });

  it('reads Retry-After as seconds or as a date', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('12', now)).toBe(12);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });

  it('says offline for network failures', () => {
    expect(describeError(new TypeError('Failed to fetch'), words)).toBe('offline');
    expect(describeError(new Error('x'), words)).toBe('unexpected');
  });
});
