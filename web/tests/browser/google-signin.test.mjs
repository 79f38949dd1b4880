// "Sign in with Google" through the local OIDC stand-in (mock-oauth2-server on :8092), written
// against the contract agreed with the google-signin branch:
//   the button navigates to /api/users/oidc/google/authorize?return_to=<relative path>;
//   after the provider the browser lands on /signin/complete?ticket=<one-time>&return_to=<path>
//   (or /signin/complete?error=<code>&detail=<text> on refusal);
//   the SPA exchanges the ticket with POST /api/users/oidc/tickets {"ticket": "..."}, which
//   answers like POST /api/users/login, then goes to return_to.
//
// The system test that runs this suite starts the stand-in (testkit::oidc_standin) and points
// user-service at it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BASE, api, launch, newPage, screenshot, uniqueEmail } from './helpers.mjs';


/** Signs in on the stand-in's interactive login page as `email` (verified). */
async function signInAtProvider(page, email) {
  await page.getByTestId('google-signin').click();
  // mock-oauth2-server's login form: a username and the claims (JSON) of the ID token.
  await page.locator('input[name="username"]').waitFor();
  await page.locator('input[name="username"]').fill(email);
  await page.locator('textarea[name="claims"]').fill(JSON.stringify({ email, email_verified: true, name: 'Google User' }));
  await page.locator('input[type="submit"], button[type="submit"]').first().click();
}

describe('Google sign-in', () => {
  let browser;
  before(async () => {
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
  });

  test('a new Google user gets an account and lands where they started', async () => {
    const page = await newPage(browser);
    await page.goto(`${BASE}/signin?return_to=%2Fcart`);
    await signInAtProvider(page, uniqueEmail('google-new'));
    await page.waitForURL(`${BASE}/cart`);
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    await screenshot(page, 'google-new-user');
  });

  test('an existing e-mail user signs into the same account with Google', async () => {
    const email = uniqueEmail('google-existing');
    const registered = await api('POST', '/api/users/register', { body: { email, password: 'existing-password-1', name: 'Existing' } });
    assert.equal(registered.status, 201);
    const page = await newPage(browser);
    await page.goto(`${BASE}/signin?return_to=%2Faccount`);
    await signInAtProvider(page, email);
    await page.waitForURL(`${BASE}/account`);
    await page.getByText(email).waitFor();
    await screenshot(page, 'google-existing-user');
  });
});

// The SPA's side of refusals needs no provider, so it runs today.
describe('Google sign-in completion page', () => {
  let browser;
  before(async () => {
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
  });

  test('a refusal from the provider shows a clear page', async () => {
    const page = await newPage(browser);
    await page.goto(`${BASE}/signin/complete?error=access_denied&detail=${encodeURIComponent('The user cancelled')}`);
    await page.getByTestId('signin-refused').getByText('access_denied').waitFor();
    await page.getByText('The user cancelled').waitFor();
  });

  test('a ticket the server refuses shows a clear page and signs nobody in', async () => {
    const page = await newPage(browser);
    await page.goto(`${BASE}/signin/complete?ticket=not-a-real-ticket&return_to=%2F`);
    await page.getByTestId('signin-refused').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Sign out' }).count(), 0);
  });
});
