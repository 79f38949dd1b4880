// The customer's path through the storefront in a real browser, through the gateway: register,
// search in both languages, a product page, a cart of two items, checkout with the live status
// reaching PAID without a reload, order history, a declined card then a retry, the admin area
// refused, an expired session sent to sign in and back, and switching language.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BASE, DECLINED_CARD, GOOD_CARD, api, checkOut, eventually, launch, newPage, pay, registerInBrowser, screenshot, seedCatalog, signInInBrowser, uniqueEmail } from './helpers.mjs';

describe('customer', { concurrency: false }, () => {
  let browser;
  let page;
  let catalog;
  const customer = { name: 'Li Lei', email: uniqueEmail('shopper'), password: 'shopper-password-1' };

  before(async () => {
    catalog = await seedCatalog();
    browser = await launch();
    page = await newPage(browser, 'en-US');
  });

  after(async () => {
    assert.deepEqual(page?.jsErrors.map(String) ?? [], [], 'no uncaught errors in the page');
    await browser?.close();
  });

  test('registers and is signed in', async () => {
    await page.goto(BASE);
    await page.getByRole('heading', { name: 'Welcome to ferroshop' }).waitFor();
    await registerInBrowser(page, customer);
    await page.getByRole('link', { name: 'Orders' }).waitFor();
    await screenshot(page, 'register');
  });

  test('a form error names the field', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.goto(`${BASE}/register`);
    await page.getByLabel('Name').fill('X');
    await page.getByLabel('E-mail').fill(uniqueEmail('short'));
    await page.getByLabel('Password').fill('short');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByRole('alert').filter({ hasText: 'password' }).first().waitFor();
    await page.goto(`${BASE}/signin`);
    await signInInBrowser(page, customer);
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
  });

  test('searches in Chinese and in English', async () => {
    await page.getByLabel('Search products').fill('kett');
    await page.getByTestId('search-suggestions').locator('option[value="Steel kettle"]').waitFor({ state: 'attached' });
    await page.getByLabel('Search products').fill('耳机');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByTestId('product-grid').getByText('Wireless headphones').waitFor();
    await screenshot(page, 'search-chinese');
    await page.getByLabel('Search products').fill('kettle');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByTestId('product-grid').getByText('Steel kettle').waitFor();
    assert.equal(await page.getByTestId('product-grid').getByText('Wireless headphones').count(), 0);
    await screenshot(page, 'search-english');
  });

  test('opens a product: price, specs table, images with alt text, stock', async () => {
    await page.getByTestId('product-grid').getByText('Steel kettle').click();
    await page.getByRole('heading', { name: 'Steel kettle' }).waitFor();
    assert.equal(await page.getByTestId('product-price').textContent(), 'CN¥199.00');
    assert.match(await page.getByTestId('stock-state').textContent(), /In stock \(50 available\)/);
    const specs = page.getByRole('table', { name: 'Specifications' });
    await specs.getByRole('row', { name: /Capacity › Litres\s*1\.7/ }).waitFor();
    await specs.getByRole('row', { name: /Colors\s*steel, black/ }).waitFor();
    await page.getByRole('img', { name: 'Steel kettle photo' }).waitFor();
    await screenshot(page, 'product');
  });

  test('adds two items to the cart', async () => {
    await page.getByRole('button', { name: 'Add to cart' }).click();
    await page.getByRole('status').getByText('Added to your cart.').waitFor();
    await page.goto(`${BASE}/products/${catalog.headphones.id}`);
    await page.getByRole('button', { name: 'Add to cart' }).click();
    await page.getByTestId('cart-link').getByText('Cart (2)').waitFor();
    await page.goto(`${BASE}/cart`);
    assert.match(await page.getByTestId('cart-total').textContent(), /CN¥798\.00/);
    await screenshot(page, 'cart');
  });

  let paidOrder;
  test('checks out with 4242… and sees PAID arrive without reloading', async (t) => {
    paidOrder = await checkOut(page);
    // Marks this document: a reload would lose the mark.
    await page.evaluate(() => {
      window.__sameDocument = true;
    });
    await pay(page, GOOD_CARD);
    await page.locator('[data-status="PAID"]').first().waitFor({ timeout: 30_000 });
    assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the page was not reloaded');
    await page.getByTestId('timeline').getByText('Paid').waitFor();
    const paid = page.getByTestId('timeline').locator('[data-step="PAID"]');
    const changedAt = Number(await paid.getAttribute('data-changed-at'));
    const receivedAt = Number(await paid.getAttribute('data-received-at'));
    assert.ok(changedAt > 0 && receivedAt > 0, 'PAID came over the live stream');
    t.diagnostic(`live update: PAID reached the page ${receivedAt - changedAt} ms after order-service changed the state`);
    assert.equal(await page.getByRole('form', { name: 'Payment' }).count(), 0);
    await screenshot(page, 'order-paid');
  });

  test('sees the order in the history', async () => {
    await page.getByRole('link', { name: 'Orders' }).click();
    const entry = page.getByTestId('order-list').getByRole('listitem').filter({ hasText: paidOrder.slice(0, 8) });
    await entry.getByText('Paid').waitFor();
    await screenshot(page, 'order-history');
  });

  test('a declined card shows why, and a retry pays', async () => {
    await page.goto(`${BASE}/products/${catalog.mug.id}`);
    await page.getByRole('button', { name: 'Add to cart' }).click();
    await checkOut(page);
    await pay(page, DECLINED_CARD);
    await page.getByTestId('payment-declined').waitFor();
    assert.match(await page.getByTestId('payment-declined').textContent(), /Payment declined/);
    await page.locator('[data-status="AWAITING_PAYMENT"]').first().waitFor();
    await screenshot(page, 'payment-declined');
    await pay(page, GOOD_CARD);
    await page.locator('[data-status="PAID"]').first().waitFor({ timeout: 30_000 });
    await screenshot(page, 'payment-retried');
  });

  test('cancels an unpaid order', async () => {
    await page.goto(`${BASE}/products/${catalog.mug.id}`);
    await page.getByRole('button', { name: 'Add to cart' }).click();
    await checkOut(page);
    await page.getByRole('form', { name: 'Payment' }).waitFor();
    page.once('dialog', (dialog) => dialog.accept());
    await page.getByRole('button', { name: 'Cancel order' }).click();
    await page.locator('[data-status="CANCELLED"]').first().waitFor();
    assert.equal(await page.getByRole('form', { name: 'Payment' }).count(), 0);
    await screenshot(page, 'order-cancelled');
  });

  test('edits the profile and notification preferences, a bad phone named', async () => {
    await page.getByRole('link', { name: 'Account' }).click();
    await page.getByText(customer.email).waitFor();
    const profile = page.getByRole('form', { name: 'Your account' });
    await profile.getByLabel(/^Phone/).fill('12');
    await profile.getByRole('button', { name: 'Save' }).click();
    await profile.locator('.field-error').first().waitFor();
    await profile.getByLabel(/^Phone/).fill('+8613800000000');
    await profile.getByRole('button', { name: 'Save' }).click();
    await profile.getByRole('status').getByText('Saved.').waitFor();
    const channels = page.getByRole('form', { name: 'Notifications' });
    await channels.getByLabel('By SMS').check();
    await channels.getByRole('button', { name: 'Save' }).click();
    await channels.getByRole('status').getByText('Saved.').waitFor();
    await page.reload();
    await page.getByRole('form', { name: 'Notifications' }).getByLabel('By SMS').waitFor();
    assert.equal(await page.getByRole('form', { name: 'Notifications' }).getByLabel('By SMS').isChecked(), true);
    assert.equal(await page.getByRole('form', { name: 'Your account' }).getByLabel(/^Phone/).inputValue(), '+8613800000000');
    await screenshot(page, 'account');
  });

  test('a customer cannot reach the admin pages', async () => {
    assert.equal(await page.getByRole('link', { name: 'Admin' }).count(), 0, 'no admin link for customers');
    await page.goto(`${BASE}/admin`);
    await page.getByTestId('admin-forbidden').waitFor();
    const token = await page.evaluate(() => JSON.parse(localStorage.getItem('ferroshop.session.v1')).accessToken);
    const refused = await api('POST', '/api/products', { token, body: { sku: 'NOPE-1', name: 'x', category: 'x', price: { amount: 1, currency: 'CNY' } } });
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    await screenshot(page, 'admin-refused');
  });

  test('an expired session goes to sign in and comes back', async () => {
    // A revoked session: neither token is accepted any more.
    await page.evaluate(() => {
      localStorage.setItem('ferroshop.session.v1', JSON.stringify({ accessToken: 'revoked', refreshToken: 'revoked', expiresAt: 0 }));
    });
    await page.goto(`${BASE}/orders`);
    await page.waitForURL(/\/signin\?expired=1&return_to=%2Forders/);
    await page.getByText('Your session has ended').waitFor();
    await signInInBrowser(page, customer);
    await page.waitForURL(`${BASE}/orders`);
    await page.getByRole('heading', { name: 'Your orders' }).waitFor();
  });

  test('switches language, and the choice is remembered', async () => {
    await page.goto(BASE);
    await page.getByLabel('Language').selectOption('zh-CN');
    await page.getByRole('heading', { name: '欢迎来到 ferroshop' }).waitFor();
    await page.getByTestId('product-grid').getByText('不锈钢电水壶').waitFor();
    await page.reload();
    await page.getByRole('heading', { name: '欢迎来到 ferroshop' }).waitFor();
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'zh-CN');
    await page.goto(`${BASE}/products/${catalog.kettle.id}`);
    assert.equal(await page.getByTestId('product-price').textContent(), '¥199.00');
    await screenshot(page, 'chinese');
  });
});

describe('cold loads (measured and reported, not asserted)', () => {
  test('home page and search results', async (t) => {
    const browser = await launch();
    try {
      for (const [what, path, ready] of [
        ['home', '/', (page) => page.getByTestId('product-grid').locator('li').first()],
        ['search', '/search?q=kettle', (page) => page.getByTestId('product-grid').locator('li').first()],
      ]) {
        const page = await newPage(browser);
        await page.goto(`${BASE}${path}`);
        await ready(page).waitFor();
        const rendered = await page.evaluate(() => performance.now());
        const js = await page.evaluate(() =>
          performance
            .getEntriesByType('resource')
            .filter((entry) => entry.name.endsWith('.js'))
            .reduce((sum, entry) => sum + entry.transferSize, 0),
        );
        t.diagnostic(`${what}: rendered ${rendered.toFixed(0)} ms after navigation start, ${js} bytes of JavaScript transferred`);
        await page.context().close();
      }
    } finally {
      await browser.close();
    }
  });
});

describe('languages by default', () => {
  test('a Chinese browser gets the Chinese storefront', async () => {
    const browser = await launch();
    try {
      const page = await newPage(browser, 'zh-CN');
      await page.goto(BASE);
      await page.getByRole('heading', { name: '欢迎来到 ferroshop' }).waitFor();
      await eventually(async () => assert.equal(await page.evaluate(() => document.documentElement.lang), 'zh-CN'));
    } finally {
      await browser.close();
    }
  });
});
