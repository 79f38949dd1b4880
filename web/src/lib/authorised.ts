// One authorised request: the session's token (refreshed first when about to expire), and after
// a 401 one silent refresh and retry; a second 401 means the session was revoked server-side.

import { SessionExpired } from './problem';
import type { SessionManager } from './session';

export async function withToken(
  session: Pick<SessionManager, 'accessToken' | 'refresh' | 'expire'>,
  send: (token: string) => Promise<Response>,
): Promise<Response> {
  const token = await session.accessToken();
  if (!token) throw new SessionExpired();
  const response = await send(token);
  if (response.status !== 401) return response;
  const fresh = await session.refresh();
  const retried = await send(fresh);
  if (retried.status === 401) {
    session.expire();
    throw new SessionExpired();
  }
  return retried;
}
