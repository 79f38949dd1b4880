// The signed-in session: the access JWT (short-lived) and the opaque refresh token, kept in
// localStorage so a reload stays signed in. Access tokens are refreshed silently shortly before
// they expire, or after a 401; concurrent callers share one refresh, because user-service
// rotates the refresh token on every use and treats a reused one as theft (it revokes the
// whole family). When refreshing fails the session is cleared and listeners hear "expired".

import { ApiError, SessionExpired } from './problem';

export interface TokenResponse {
  access_token: string;
  refresh_token: string;
  token_type: string;
  expires_in: number;
}

export interface StoredSession {
  accessToken: string;
  refreshToken: string;
  /** Epoch milliseconds. */
  expiresAt: number;
}

export interface Claims {
  sub: string;
  role?: string;
  email?: string;
  exp?: number;
}

/** Refresh this long before expiry, so a request never leaves with a token about to lapse. */
export const REFRESH_MARGIN_MS = 30_000;
const STORAGE_KEY = 'ferroshop.session.v1';

export type SessionEvent = 'changed' | 'expired';

export function decodeClaims(jwt: string): Claims | null {
  const part = jwt.split('.')[1];
  if (!part) return null;
  try {
    const base64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const claims: unknown = JSON.parse(new TextDecoder().decode(bytes));
    if (!claims || typeof claims !== 'object' || typeof (claims as Claims).sub !== 'string') return null;
    return claims as Claims;
  } catch {
    return null;
  }
}

export class SessionManager {
  private session: StoredSession | null;
  private refreshing: Promise<string> | null = null;
  /** The last session ended because the server refused it (not by signing out). */
  private endedByServer = false;
  private readonly listeners = new Set<(event: SessionEvent) => void>();

  constructor(
    private readonly storage: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>,
    private readonly exchange: (refreshToken: string) => Promise<TokenResponse>,
    private readonly now: () => number = Date.now,
  ) {
    this.session = this.load();
  }

  get current(): StoredSession | null {
    return this.session;
  }

  get claims(): Claims | null {
    return this.session ? decodeClaims(this.session.accessToken) : null;
  }

  /** True after the server refused the session, until the next sign-in or sign-out. */
  get expired(): boolean {
    return this.endedByServer;
  }

  get isAdmin(): boolean {
    return this.claims?.role === 'admin';
  }

  subscribe(listener: (event: SessionEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stores the tokens of a login, a registration's login, a refresh or an OIDC ticket. */
  signIn(tokens: TokenResponse): void {
    this.endedByServer = false;
    this.session = {
      accessToken: tokens.access_token,
      refreshToken: tokens.refresh_token,
      expiresAt: this.now() + tokens.expires_in * 1000,
    };
    this.storage.setItem(STORAGE_KEY, JSON.stringify(this.session));
    this.emit('changed');
  }

  signOut(): void {
    this.endedByServer = false;
    this.session = null;
    this.storage.removeItem(STORAGE_KEY);
    this.emit('changed');
  }

  /** A token valid for at least the margin, refreshed first if needed; null when signed out. */
  async accessToken(): Promise<string | null> {
    if (!this.session) return null;
    if (this.session.expiresAt - this.now() > REFRESH_MARGIN_MS) return this.session.accessToken;
    return this.refresh();
  }

  /** Exchanges the refresh token once, however many callers ask at the same moment. */
  refresh(): Promise<string> {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  private async doRefresh(): Promise<string> {
    const session = this.session;
    if (!session) throw new SessionExpired();
    try {
      const tokens = await this.exchange(session.refreshToken);
      this.signIn(tokens);
      return tokens.access_token;
    } catch (error) {
      // A refused refresh token (expired, revoked, reused) ends the session; a network error
      // or an overloaded server does not, the next call tries again.
      if (error instanceof ApiError && error.status >= 400 && error.status < 500 && error.status !== 429) {
        this.expire();
        throw new SessionExpired();
      }
      throw error;
    }
  }

  /** Called when the API refused a token the session still holds: it was revoked. */
  expire(): void {
    this.endedByServer = true;
    this.session = null;
    this.storage.removeItem(STORAGE_KEY);
    this.emit('changed');
    this.emit('expired');
  }

  private emit(event: SessionEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  private load(): StoredSession | null {
    try {
      const raw = JSON.parse(this.storage.getItem(STORAGE_KEY) ?? 'null') as StoredSession | null;
      if (raw && typeof raw.accessToken === 'string' && typeof raw.refreshToken === 'string' && typeof raw.expiresAt === 'number') {
        return raw;
      }
    } catch {
      // An unreadable session is no session.
    }
    return null;
  }
}
