import { describe, expect, it, vi } from 'vitest';
import { withToken } from './authorised';
import { ApiError, SessionExpired } from './problem';
import { SessionManager, type TokenResponse } from './session';

function memoryStorage() {
  const data = new Map<string, string>();
  return { getItem: (k: string) => data.get(k) ?? null, setItem: (k: string, v: string) => void data.set(k, v), removeItem: (k: string) => void data.delete(k) };
}

const tokens = (n: number): TokenResponse => ({ access_token: `access-${n}`, refresh_token: `refresh-${n}`, token_type: 'Bearer', expires_in: 900 });
const status = (code: number) => new Response(null, { status: code });

describe('authorised requests', () => {
  it('a 401 is refreshed silently and the request retried with the new token', async () => {
    const session = new SessionManager(memoryStorage(), async () => tokens(2));
    session.signIn(tokens(1));
    const seen: string[] = [];
    const response = await withToken(session, async (token) => {
      seen.push(token);
      return status(token === 'access-1' ? 401 : 200);
    });
    expect(response.status).toBe(200);
    expect(seen).toEqual(['access-1', 'access-2']);
    expect(session.current?.refreshToken).toBe('refresh-2');
  });

  it('a token refused again after refreshing ends the session', async () => {
    const session = new SessionManager(memoryStorage(), async () => tokens(2));
    session.signIn(tokens(1));
    const expired = vi.fn();
    session.subscribe((event) => event === 'expired' && expired());
    await expect(withToken(session, async () => status(401))).rejects.toBeInstanceOf(SessionExpired);
    expect(session.current).toBeNull();
    expect(session.expired).toBe(true);
    expect(expired).toHaveBeenCalledOnce();
  });

  it('a revoked refresh token ends the session without retrying', async () => {
    const session = new SessionManager(memoryStorage(), async () => {
      throw new ApiError(401, { detail: 'refresh token revoked' });
    });
    session.signIn(tokens(1));
    const send = vi.fn(async () => status(401));
    await expect(withToken(session, send)).rejects.toBeInstanceOf(SessionExpired);
    expect(send).toHaveBeenCalledOnce();
    expect(session.expired).toBe(true);
  });

  it('without a session nothing is sent', async () => {
    const session = new SessionManager(memoryStorage(), async () => tokens(2));
    const send = vi.fn(async () => status(200));
    await expect(withToken(session, send)).rejects.toBeInstanceOf(SessionExpired);
    expect(send).not.toHaveBeenCalled();
  });

  it('other failures pass through untouched', async () => {
    const session = new SessionManager(memoryStorage(), async () => tokens(2));
    session.signIn(tokens(1));
    expect((await withToken(session, async () => status(403))).status).toBe(403);
    expect(session.current?.accessToken).toBe('access-1');
  });
});
