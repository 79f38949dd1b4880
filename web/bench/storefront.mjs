// The storefront's budgets, measured in Debian's Chromium through the gateway for
// `cargo xtask bench` (never asserted): the JavaScript a first page ships, the time to a
// rendered home page and search results from a cold load, and how long a live status update
// takes to reach an open order page. Prints one JSON line; progress goes to stderr.
//
// STOREFRONT_URL: the gateway (default http://127.0.0.1:8080); BENCH_ROUNDS: live updates
// measured (default 10). Needs a seeded catalog (`cargo xtask seed`).
import { BASE, GOOD_CARD, api, checkOut, eventually, launch, newPage, pay, registerInBrowser, screenshot, uniqueEmail } from '../tests/browser/helpers.mjs';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);

/** A cold load of `path` in a fresh profile: ms from navigation start until `ready` shows, and
 *  the bytes of JavaScript on the wire (compressed bodies). */
async function coldLoad(browser, path, ready) {
  const page = await newPage(browser);
  try {
    await page.goto(`${BASE}${path}`);
    await ready(page).waitFor();
    const renderedMs = await page.evaluate(() => performance.now());
    const jsBytes = await page.evaluate(() =>
      performance
        .getEntriesByType('resource')
        .filter((entry) => new URL(entry.name).pathname.endsWith('.js'))
        .reduce((sum, entry) => sum + entry.encodedBodySize, 0),
    );
    return { renderedMs, jsBytes };
  } finally {
    await page.context().close();
  }
}

function quantile(values, q) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

const browser = await launch();
try {
  const firstItem = (page) => page.getByTestId('product-grid').locator('li').first();
  // One load first, so the gateway and the services have their code paths warm; the measured
  // loads are cold for the browser (fresh profile, empty cache), not for the servers.
  await coldLoad(browser, '/', firstItem);
  const home = await coldLoad(browser, '/', firstItem);
  const search = await coldLoad(browser, `/search?q=${encodeURIComponent('蓝牙耳机')}`, firstItem);
  process.stderr.write(`home ${home.renderedMs.toFixed(0)} ms, search ${search.renderedMs.toFixed(0)} ms\n`);

  const listing = await api('GET', '/api/products?in_stock=true&limit=50');
  const products = (listing.body?.items ?? []).filter((p) => p.stock?.available >= ROUNDS + 1);
  if (products.length === 0) throw new Error(`no product in stock: ${listing.status} ${JSON.stringify(listing.body)}`);
  const page = await newPage(browser);
  await registerInBrowser(page, { name: 'Bench Buyer', email: uniqueEmail('bench'), password: 'bench-password-123' });
  const liveMs = [];
  for (let round = 0; round < ROUNDS; round += 1) {
    try {
      await liveRound(page, products[round % products.length], round);
    } catch (error) {
      await screenshot(page, `bench-live-update-${round + 1}-failed`);
      throw error;
    }
  }
  async function liveRound(page, product, round) {
    await page.goto(`${BASE}/products/${product.id}`);
    await page.getByRole('button', { name: 'Add to cart' }).click();
    await page.getByRole('status').waitFor();
    await checkOut(page);
    await pay(page, GOOD_CARD);
    await page.locator('[data-status="PAID"]').first().waitFor({ timeout: 30_000 });
    const paid = page.getByTestId('timeline').locator('[data-step="PAID"]');
    const [changedAt, receivedAt] = await eventually(async () => {
      const changed = Number(await paid.getAttribute('data-changed-at'));
      const received = Number(await paid.getAttribute('data-received-at'));
      if (!(changed > 0 && received > 0)) throw new Error('PAID did not come over the live stream');
      return [changed, received];
    });
    liveMs.push(receivedAt - changedAt);
    process.stderr.write(`live update ${round + 1}/${ROUNDS}: ${receivedAt - changedAt} ms\n`);
  }
  console.log(
    JSON.stringify({
      first_page_js_bytes: home.jsBytes,
      home_ms: home.renderedMs,
      search_ms: search.renderedMs,
      live_update_p50_ms: quantile(liveMs, 0.5),
      live_update_max_ms: Math.max(...liveMs),
      live_updates: liveMs.length,
    }),
  );
} finally {
  await browser.close();
}
