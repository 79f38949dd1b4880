import { describe, expect, it, vi } from 'vitest';
import { ApiError, SessionExpired } from './problem';
import { REFRESH_MARGIN_MS, SessionManager, decodeClaims, type TokenResponse } from './session';

function memoryStorage() {
  const data = new Map<string, string>();
  return { getItem: (k: string) => data.get(k) ?? null, setItem: (k: string, v: string) => void data.set(k, v), removeItem: (k: string) => void data.delete(k) };
}

function jwt(claims: object): string {
  const encode = (o: object) => btoa(JSON.stringify(o)).replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
  return `${encode({ alg: 'EdDSA' })}.${encode(claims)}.sig`;
}

const tokens = (n: number): TokenResponse => ({ access_token: jwt({ sub: 'u1', role: 'customer', n }), refresh_token: `r${n}`, token_type: 'Bearer', expires_in: 900 });

describe('session', () => {
  it('hands out the stored token while it is fresh', async () => {
    let now = 0;
    const exchange = vi.fn();
    const manager = new SessionManager(memoryStorage(), exchange, () => now);
    manager.signIn(tokens(1));
    now = 900_000 - REFRESH_MARGIN_MS - 1;
    expect(await manager.accessToken()).toBe(tokens(1).access_token);
    expect(exchange).not.toHaveBeenCalled();
  });

  it('refreshes silently near expiry, once for concurrent callers, and stores the rotated token', async () => {
    let now = 0;
    const storage = memoryStorage();
    const exchange = vi.fn(async (refresh: string) => {
      expect(refresh).toBe('r1');
      return tokens(2);
    });
    const manager = new SessionManager(storage, exchange, () => now);
    manager.signIn(tokens(1));
    now = 900_000 - 1_000;
    const [a, b] = await Promise.all([manager.accessToken(), manager.accessToken()]);
    expect(a).toBe(tokens(2).access_token);
    expect(b).toBe(a);
    expect(exchange).toHaveBeenCalledTimes(1);
    expect(new SessionManager(storage, exchange, () => now).current?.refreshToken).toBe('r2');
  });

  it('a refused refresh token ends the session and announces it', async () => {
    const manager = new SessionManager(memoryStorage(), async () => {
      throw new ApiError(401, { detail: 'revoked' });
    });
    manager.signIn(tokens(1));
    const events: string[] = [];
    manager.subscribe((e) => events.push(e));
    await expect(manager.refresh()).rejects.toBeInstanceOf(SessionExpired);
    expect(manager.current).toBeNull();
    expect(events).toContain('expired');
    expect(manager.expired).toBe(true);
    manager.signIn(tokens(2));
    expect(manager.expired).toBe(false);
  });

  it('a network failure during refresh keeps the session for the next try', async () => {
    const manager = new SessionManager(memoryStorage(), async () => {
      throw new TypeError('Failed to fetch');
    });
    manager.signIn(tokens(1));
    await expect(manager.refresh()).rejects.toBeInstanceOf(TypeError);
    expect(manager.current?.refreshToken).toBe('r1');
  });

  it('reads the role from the token', () => {
    expect(decodeClaims(jwt({ sub: 'u', role: 'admin' }))?.role).toBe('admin');
    expect(decodeClaims('not-a-jwt')).toBeNull();
    const manager = new SessionManager(memoryStorage(), vi.fn());
    manager.signIn({ ...tokens(1), access_token: jwt({ sub: 'u', role: 'admin' }) });
    expect(manager.isAdmin).toBe(true);
  });
});
