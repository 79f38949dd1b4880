// The one way the app talks to the platform: same-origin fetches through the gateway, the
// bearer token from the session (refreshed silently), the shopper's language, and every
// failure turned into an ApiError (problem+json) or SessionExpired.

import { ApiError, SessionExpired, problemFromResponse } from './problem';
import { withToken } from './authorised';
import { SessionManager, type TokenResponse } from './session';
import { SseParser, type ServerEvent } from './sse';

export interface Money {
  amount: number;
  currency: string;
}

export interface Product {
  id: string;
  sku: string;
  name: string;
  description: string;
  lang?: string;
  translations?: Record<string, { name: string; description: string }>;
  category: string;
  tags: string[];
  price: Money;
  specs: Record<string, unknown>;
  images: { url: string; alt: string }[];
  stock: { available: number; reserved: number; sold: number };
  active: boolean;
  version: number;
  created_at: string;
  updated_at: string;
}

export interface FacetValue {
  value: string;
  count: number;
}

export interface ProductPage {
  items: Product[];
  next_cursor: string | null;
  total: number;
  facets: { category: FacetValue[]; brand: FacetValue[]; price?: { min: number; max: number | null; count: number }[] };
}

export type OrderStatus = 'PENDING' | 'REVIEW' | 'AWAITING_PAYMENT' | 'PAID' | 'REJECTED' | 'CANCELLED' | 'REFUNDED';

export interface ShippingAddress {
  name: string;
  line1: string;
  line2?: string;
  city: string;
  postal_code: string;
  country: string;
}

export interface Order {
  id: string;
  user_id: string;
  status: OrderStatus;
  status_reason?: string;
  items: { product_id: string; name: string; quantity: number; unit_price: Money; line_total: Money }[];
  total: Money;
  shipping_address: ShippingAddress;
  payment_id?: string;
  expires_at?: string;
  created_at: string;
  updated_at: string;
}

export interface StatusChange {
  order_id: string;
  status: OrderStatus;
  status_reason?: string;
  at: string;
}

export interface Payment {
  id: string;
  order_id: string;
  status: 'pending' | 'succeeded' | 'failed' | string;
  amount: Money;
  failure_reason?: string;
}

export interface User {
  id: string;
  email: string;
  name: string;
  phone: string | null;
  locale: string;
  role: string;
}

export interface Preferences {
  email: boolean;
  sms: boolean;
}

interface RequestOptions {
  body?: unknown;
  auth?: boolean;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

let language = 'en';

/** The language asked of the API (names and descriptions of products). */
export function setApiLanguage(lang: string): void {
  language = lang;
}

async function send(method: string, path: string, options: RequestOptions, token: string | null): Promise<Response> {
  const headers: Record<string, string> = { Accept: 'application/json', 'Accept-Language': language, ...options.headers };
  if (options.body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  return fetch(path, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: options.signal,
  });
}

async function exchangeRefreshToken(refreshToken: string): Promise<TokenResponse> {
  const response = await send('POST', '/api/users/refresh', { body: { refresh_token: refreshToken } }, null);
  if (!response.ok) throw await problemFromResponse(response);
  return (await response.json()) as TokenResponse;
}

export const session = new SessionManager(window.localStorage, exchangeRefreshToken);

/** A response with a token, retried once with a refreshed token after a 401. */
async function authorised(method: string, path: string, options: RequestOptions): Promise<Response> {
  if (!options.auth) return send(method, path, options, null);
  return withToken(session, (token) => send(method, path, options, token));
}

export async function request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const response = await authorised(method, path, options);
  if (!response.ok) throw await problemFromResponse(response);
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export function query(params: Record<string, string | number | boolean | undefined | null>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

export function newIdempotencyKey(): string {
  return crypto.randomUUID();
}

export const api = {
  login: (email: string, password: string) => request<TokenResponse>('POST', '/api/users/login', { body: { email, password } }),
  register: (body: { email: string; password: string; name: string; phone?: string; locale?: string }) =>
    request<User>('POST', '/api/users/register', { body }),
  exchangeTicket: (ticket: string) => request<TokenResponse>('POST', '/api/users/oidc/tickets', { body: { ticket } }),
  logout: (refreshToken: string) => request<void>('POST', '/api/users/logout', { body: { refresh_token: refreshToken } }),
  me: () => request<User>('GET', '/api/users/me', { auth: true }),
  updateMe: (patch: Partial<Pick<User, 'name' | 'phone' | 'locale'>>) => request<User>('PATCH', '/api/users/me', { body: patch, auth: true }),
  products: (params: Record<string, string | number | boolean | undefined>, signal?: AbortSignal) =>
    request<ProductPage>('GET', `/api/products${query(params)}`, { signal }),
  suggest: (q: string, signal?: AbortSignal) =>
    request<{ suggestions: { id: string; name: string; category: string }[] }>('GET', `/api/products/suggest${query({ q, limit: 6 })}`, { signal }),
  product: (id: string) => request<Product>('GET', `/api/products/${encodeURIComponent(id)}`),
  createProduct: (body: unknown) => request<Product>('POST', '/api/products', { body, auth: true }),
  updateProduct: (id: string, body: unknown) => request<Product>('PATCH', `/api/products/${encodeURIComponent(id)}`, { body, auth: true }),
  adjustStock: (id: string, delta: number, reason: string) =>
    request<Product>('POST', `/api/products/${encodeURIComponent(id)}/stock`, { body: { delta, reason }, auth: true }),
  placeOrder: (body: { items: { product_id: string; quantity: number }[]; shipping_address: ShippingAddress }, key: string) =>
    request<Order>('POST', '/api/orders', { body, auth: true, headers: { 'Idempotency-Key': key } }),
  order: (id: string) => request<Order>('GET', `/api/orders/${encodeURIComponent(id)}`, { auth: true }),
  orders: (cursor?: string) => request<{ items: Order[]; next_cursor?: string }>('GET', `/api/orders${query({ cursor, limit: 20 })}`, { auth: true }),
  adminOrders: (status?: string, cursor?: string) =>
    request<{ items: Order[]; next_cursor?: string }>('GET', `/api/admin/orders${query({ status, cursor, limit: 50 })}`, { auth: true }),
  cancelOrder: (id: string) => request<Order>('POST', `/api/orders/${encodeURIComponent(id)}/cancel`, { auth: true }),
  pay: (orderId: string, card: { number: string; exp_month: number; exp_year: number; cvc: string }, key: string) =>
    request<Payment>('POST', '/api/payments', { body: { order_id: orderId, card }, auth: true, headers: { 'Idempotency-Key': key } }),
  preferences: () => request<Preferences>('GET', '/api/notifications/preferences', { auth: true }),
  savePreferences: (body: Preferences) => request<Preferences>('PUT', '/api/notifications/preferences', { body, auth: true }),
};

/**
 * Follows the order's status stream until it ends or `signal` aborts, reconnecting after a
 * dropped connection (the server closes a stream after a few minutes).
 */
export async function followOrder(orderId: string, onChange: (change: StatusChange) => void, signal: AbortSignal): Promise<void> {
  const terminal = new Set<OrderStatus>(['PAID', 'REJECTED', 'CANCELLED', 'REFUNDED']);
  let last: OrderStatus | undefined;
  let failures = 0;
  while (!signal.aborted && !(last && terminal.has(last))) {
    try {
      const response = await authorised('GET', `/api/orders/${encodeURIComponent(orderId)}/events`, {
        auth: true,
        headers: { Accept: 'text/event-stream' },
        signal,
      });
      if (!response.ok || !response.body) throw await problemFromResponse(response);
      failures = 0;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      const parser = new SseParser();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const event of parser.push(value) as ServerEvent[]) {
          if (event.event !== 'status') continue;
          const change = JSON.parse(event.data) as StatusChange;
          last = change.status;
          onChange(change);
        }
      }
    } catch (error) {
      if (signal.aborted || error instanceof SessionExpired) return;
      if (error instanceof ApiError && error.status === 404) throw error;
      failures += 1;
      // Back off after failures; a clean end of stream reconnects at once.
      await new Promise((resolve) => setTimeout(resolve, Math.min(10_000, 500 * 2 ** failures)));
    }
  }
}
