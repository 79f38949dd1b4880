// The admin area in a real browser: an admin creates a product with nested specs and an image,
// finds it in the shop's search, adjusts its stock with a reason, and lists orders by status.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ADMIN, BASE, api, eventually, launch, login, newPage, screenshot, signInInBrowser } from './helpers.mjs';

describe('admin', { concurrency: false }, () => {
  let browser;
  let page;
  const run = Date.now().toString(36);
  const name = `Desk lamp ${run}`;
  let productId;

  before(async () => {
    browser = await launch();
    page = await newPage(browser, 'en-US');
  });

  after(async () => {
    assert.deepEqual(page?.jsErrors.map(String) ?? [], [], 'no uncaught errors in the page');
    await browser?.close();
  });

  test('signs in and sees the admin area', async () => {
    await page.goto(`${BASE}/signin?return_to=%2Fadmin`);
    await signInInBrowser(page, ADMIN);
    await page.waitForURL(`${BASE}/admin`);
    await page.getByRole('heading', { name: 'Administration' }).waitFor();
    await page.getByTestId('admin-products').waitFor();
    await screenshot(page, 'admin-products');
  });

  test('creates a product and finds it in search', async () => {
    await page.getByRole('link', { name: 'New product' }).click();
    await page.getByLabel('SKU').fill(`LAMP-${run}`.toUpperCase());
    await page.getByLabel('Name (English)').fill(name);
    await page.getByLabel('Name (Chinese)').fill(`台灯 ${run}`);
    await page.getByLabel('Description (English)').fill('An adjustable LED desk lamp.');
    await page.getByLabel('Category (slug)').fill('lighting');
    await page.getByLabel('Price').fill('129.50');
    await page.getByLabel('Currency').fill('CNY');
    await page.getByLabel('Initial stock').fill('12');
    await page.getByLabel(/^Specs/).fill(JSON.stringify({ brand: 'Lumo', light: { lumens: 800, colour_temperature_k: [2700, 6500] } }));
    await page.getByRole('button', { name: 'Add image' }).click();
    await page.getByLabel('Image URL').fill(`${BASE}/img/lamp.svg`);
    await page.getByLabel('Alt text').fill('Desk lamp photo');
    await page.getByRole('button', { name: 'Save product' }).click();
    await page.getByRole('status').getByText('Product saved.').waitFor();
    await page.waitForURL(/\/admin\/products\/[0-9a-f-]{36}$/);
    productId = page.url().split('/').pop();
    await screenshot(page, 'admin-product-created');

    await eventually(async () => {
      await page.goto(`${BASE}/search?q=${encodeURIComponent(name)}`);
      await page.getByTestId('product-grid').getByText(name).waitFor({ timeout: 2_000 });
    });
    await page.getByTestId('product-grid').getByText(name).click();
    await page.getByRole('table', { name: 'Specifications' }).getByRole('row', { name: /Light › Lumens\s*800/ }).waitFor();
    assert.equal(await page.getByTestId('product-price').textContent(), 'CN¥129.50');
  });

  test('a bad field is named, then stock is adjusted with a reason', async () => {
    await page.goBack();
    await page.getByTestId('product-grid').getByText(name).waitFor();
    await page.goto(`${BASE}/admin`);
    await page.getByRole('row').filter({ hasText: name }).getByRole('link', { name: 'Edit' }).click();
    await page.getByLabel('Change (+ or −)').fill('-100');
    await page.getByLabel('Reason').fill('stocktake');
    await page.getByRole('button', { name: 'Adjust stock' }).click();
    await page.getByRole('alert').first().waitFor();
    await page.getByLabel('Change (+ or −)').fill('5');
    await page.getByRole('button', { name: 'Adjust stock' }).click();
    await page.getByRole('status').getByText('Stock is now 17.').waitFor();
    await page.goto(`${BASE}/admin`);
    await page.getByRole('row').filter({ hasText: name }).getByRole('cell', { name: '17', exact: true }).waitFor();
    await screenshot(page, 'admin-product-list');
  });

  test('lists orders by status', async () => {
    // One cancelled order of the new product, placed through the API once order-service's
    // replica knows the product.
    const token = await login(ADMIN.email, ADMIN.password);
    const order = await eventually(async () => {
      const placed = await api('POST', '/api/orders', {
        token,
        body: {
          items: [{ product_id: productId, quantity: 1 }],
          shipping_address: { name: 'Admin Buyer', line1: '1 Road', city: 'Beijing', postal_code: '100000', country: 'CN' },
        },
      });
      assert.equal(placed.status, 201, JSON.stringify(placed.body));
      return placed.body;
    });
    await eventually(async () => {
      const cancelled = await api('POST', `/api/orders/${order.id}/cancel`, { token });
      assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
    });

    await page.getByRole('navigation', { name: 'Administration' }).getByRole('link', { name: 'Orders' }).click();
    await page.getByTestId('admin-orders').waitFor();
    await page.getByLabel('Status').selectOption('CANCELLED');
    await page.waitForURL(/status=CANCELLED/);
    const row = page.getByTestId('admin-orders').getByRole('row').filter({ hasText: order.id.slice(0, 8) });
    await row.getByText('Cancelled').waitFor();
    const statuses = await page.getByTestId('admin-orders').locator('[data-status]').evaluateAll((nodes) => nodes.map((n) => n.dataset.status));
    assert.ok(statuses.length > 0 && statuses.every((s) => s === 'CANCELLED'), String(statuses));
    await page.getByLabel('Status').selectOption('PAID');
    await page.waitForURL(/status=PAID/);
    await eventually(async () => assert.equal(await row.count(), 0));
    await page.getByLabel('Status').selectOption('CANCELLED');
    await row.waitFor();
    await screenshot(page, 'admin-orders');
  });
});
