// Shared set-up of the browser tests: Debian's Chromium driven by playwright-core (no browser
// download), the platform reached only through the gateway, a seeded bilingual catalog, and
// polling with a deadline for anything asynchronous.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const BASE = (process.env.STOREFRONT_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const OUTPUT = process.env.BROWSER_TEST_OUTPUT ?? fileURLToPath(new URL('../../test-output/', import.meta.url));
export const ADMIN = {
  email: process.env.ADMIN_EMAIL ?? 'admin@example.com',
  password: process.env.ADMIN_PASSWORD ?? 'admin-dev-password',
};
export const GOOD_CARD = '4242 4242 4242 4242';
export const DECLINED_CARD = '4000 0000 0000 0002';
const DEADLINE_MS = 30_000;

mkdirSync(OUTPUT, { recursive: true });

/** Retries `check` until it passes or the deadline passes (then its last error is thrown). */
export async function eventually(check, deadlineMs = DEADLINE_MS) {
  const end = Date.now() + deadlineMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > end) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

export async function api(method, path, { token, body, headers = {} } = {}) {
  const response = await fetch(`${BASE}${path}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = text;
  }
  return { status: response.status, body: json };
}

export async function login(email, password) {
  const reply = await api('POST', '/api/users/login', { body: { email, password } });
  if (reply.status !== 200) throw new Error(`login of ${email}: ${reply.status} ${JSON.stringify(reply.body)}`);
  return reply.body.access_token;
}

export function uniqueEmail(what) {
  return `${what}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}@example.com`;
}

const CATALOG = [
  {
    key: 'headphones',
    name: 'Wireless headphones',
    zh: { name: '无线蓝牙耳机', description: '降噪头戴式耳机，续航 30 小时。' },
    description: 'Noise-cancelling over-ear headphones, 30 hours of battery.',
    category: 'audio',
    tags: ['audio', 'bluetooth'],
    amount: 59900,
    specs: { brand: 'Acme', bluetooth: '5.3', battery: { hours: 30, charging: 'USB-C' }, noise_cancelling: true },
  },
  {
    key: 'kettle',
    name: 'Steel kettle',
    zh: { name: '不锈钢电水壶', description: '1.7 升快速烧水壶。' },
    description: 'A 1.7 litre fast-boil kettle in brushed steel.',
    category: 'kitchen',
    tags: ['kitchen'],
    amount: 19900,
    specs: { brand: 'Boilwell', capacity: { litres: 1.7 }, power_w: 2200, colors: ['steel', 'black'] },
  },
  {
    key: 'mug',
    name: 'Ceramic mug',
    zh: { name: '陶瓷马克杯', description: '350 毫升手工陶瓷杯。' },
    description: 'A 350 ml hand-glazed ceramic mug.',
    category: 'kitchen',
    tags: ['kitchen', 'gift'],
    amount: 4900,
    specs: { brand: 'Claywork', volume_ml: 350, dishwasher_safe: true },
  },
];

/**
 * Creates the catalog (fresh SKUs per run) and waits until order-service's product replica
 * knows every product: it places and cancels an order of all of them as a throwaway customer.
 */
export async function seedCatalog() {
  const admin = await login(ADMIN.email, ADMIN.password);
  const run = Date.now().toString(36).toUpperCase();
  const products = {};
  for (const item of CATALOG) {
    const reply = await api('POST', '/api/products', {
      token: admin,
      body: {
        sku: `WEB-${item.key.toUpperCase()}-${run}`,
        name: item.name,
        description: item.description,
        translations: { 'zh-CN': item.zh },
        category: item.category,
        tags: item.tags,
        price: { amount: item.amount, currency: 'CNY' },
        specs: item.specs,
        images: [{ url: `${BASE}/img/${item.key}.svg`, alt: `${item.name} photo` }],
        initial_stock: 50,
      },
    });
    if (reply.status !== 201) throw new Error(`seeding ${item.key}: ${reply.status} ${JSON.stringify(reply.body)}`);
    products[item.key] = reply.body;
  }
  const email = uniqueEmail('seed');
  const registered = await api('POST', '/api/users/register', { body: { email, password: 'seed-password-123', name: 'Seed' } });
  if (registered.status !== 201) throw new Error(`seed customer: ${registered.status} ${JSON.stringify(registered.body)}`);
  const customer = await login(email, 'seed-password-123');
  const order = await eventually(async () => {
    const placed = await api('POST', '/api/orders', {
      token: customer,
      body: {
        items: Object.values(products).map((p) => ({ product_id: p.id, quantity: 1 })),
        shipping_address: { name: 'Seed', line1: '1 Road', city: 'Shanghai', postal_code: '200000', country: 'CN' },
      },
    });
    if (placed.status !== 201) throw new Error(`order-service does not know the catalog yet: ${placed.status} ${JSON.stringify(placed.body)}`);
    return placed.body;
  });
  await eventually(async () => {
    const cancelled = await api('POST', `/api/orders/${order.id}/cancel`, { token: customer });
    if (cancelled.status !== 200) throw new Error(`cancel seed order: ${cancelled.status} ${JSON.stringify(cancelled.body)}`);
  });
  return products;
}

export async function launch() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

/** A fresh browser profile (own localStorage) in `locale`. */
export async function newPage(browser, locale = 'en-US') {
  const context = await browser.newContext({ locale, viewport: { width: 1200, height: 860 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  const errors = [];
  page.on('pageerror', (error) => errors.push(error));
  page.jsErrors = errors;
  return page;
}

export async function screenshot(page, name) {
  await page.screenshot({ path: join(OUTPUT, `${name}.png`), fullPage: true });
}

export async function registerInBrowser(page, { name, email, password }) {
  await page.goto(`${BASE}/register`);
  await page.getByLabel('Name').fill(name);
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

export async function signInInBrowser(page, { email, password }) {
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('main').getByRole('button', { name: 'Sign in' }).click();
}

/** Fills the shipping address and places the order; returns the order id from the URL. */
export async function checkOut(page) {
  await page.goto(`${BASE}/cart`);
  await page.getByRole('link', { name: 'Check out' }).click();
  await page.getByLabel('Full name').fill('Li Lei');
  await page.getByLabel('Address', { exact: true }).fill('88 Century Avenue');
  await page.getByLabel('City').fill('Shanghai');
  await page.getByLabel('Postal code').fill('200120');
  await page.getByLabel(/^Country/).fill('CN');
  await page.getByRole('button', { name: 'Place order' }).click();
  await page.waitForURL(/\/orders\/[0-9a-f-]{36}$/);
  return page.url().split('/').pop();
}

export async function pay(page, card) {
  const form = page.getByRole('form', { name: 'Payment' });
  await form.waitFor();
  await form.getByLabel('Card number').fill(card);
  await form.getByLabel('CVC').fill('123');
  await form.getByRole('button', { name: /^Pay / }).click();
}
