// Logs in to the dashboard of a running `make demo` with the key it
// printed, in headless Chromium (playwright-core driving Debian's
// chromium), and checks that the page shows the demo's data: events in the
// funnel and the demo's webhook receiver with successful deliveries.
// `test/browser/run --demo` runs it with the URL and key from
// .services/demo/demo.env; with --screenshots it saves
// docs/screenshots/demo.png, the dashboard as the demo leaves it.
//
//   node test/browser/demo.mjs CONFIG.json
//   CONFIG: {"baseURL": "http://127.0.0.1:PORT", "apiKey": "SG...", "chromium": "/usr/lib/chromium/chromium", "screenshots": "docs/screenshots" or ""}
import { createRequire } from 'node:module';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const failures = [];
const check = (ok, msg) => { if (!ok) failures.push(msg); };

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--font-render-hinting=none'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, deviceScaleFactor: 1, timezoneId: 'UTC' });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // The page asks for a session before login: that 401 is expected.
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 401/.test(m.text())) errors.push(m.text()); });

  console.log(`- open ${cfg.baseURL}/ui and log in with the demo key`);
  await page.goto(cfg.baseURL + '/ui');
  await page.waitForSelector('#login-view:not([hidden])');
  await page.fill('#api-key', cfg.apiKey);
  await page.click('#login-submit');
  await page.waitForSelector('#dashboard[data-state="ready"]', { timeout: 60000 });
  const account = await page.getAttribute('#account', 'data-account');
  console.log(`  logged in as account ${account}`);

  const kpi = async (k) => Number(await page.getAttribute(`[data-kpi="${k}"]`, 'data-value'));
  const requests = await kpi('requests');
  const delivered = await kpi('delivered');
  const bounces = await kpi('bounces');
  console.log(`- last 30 days: ${requests} requests, ${delivered} delivered, ${bounces} bounces`);
  check(requests > 0 && delivered > 0 && bounces > 0, `the funnel is empty: ${requests} requests, ${delivered} delivered, ${bounces} bounces`);
  const days = await page.locator('#funnel-table tbody tr[data-period]').evaluateAll(
    (rs) => rs.filter((r) => Number(r.querySelector('td[data-metric="requests"]')?.dataset.value) > 0).length);
  console.log(`  ${days} days with events`);
  check(days >= 10, `events on only ${days} days: the demo spreads them over two weeks`);

  console.log('- webhook delivery health');
  await page.waitForSelector('#webhook-health[data-state="ready"]', { timeout: 30000 });
  const row = page.locator('#webhooks-table tbody tr[data-webhook]').filter({ hasText: 'demo receiver' });
  check((await row.count()) === 1, `webhook rows named "demo receiver": ${await row.count()}, want 1`);
  if ((await row.count()) === 1) {
    const state = await row.locator('td[data-metric="state"]').getAttribute('data-value');
    const ok = Number(await row.locator('td[data-metric="deliveries"] [data-result="ok"]').getAttribute('data-value'));
    const failed = Number(await row.locator('td[data-metric="failed"]').getAttribute('data-value'));
    console.log(`  demo receiver: ${state}, ${ok} successful attempts, ${failed} failed batches`);
    check(state === 'active', `the demo receiver is ${state}, want active`);
    check(ok > 0, 'the demo receiver shows no successful deliveries');
    check(failed === 0, `the demo receiver has ${failed} failed batches`);
  }
  check(errors.length === 0, `errors in the page's console: ${errors.join(' | ')}`);

  if (cfg.screenshots) {
    mkdirSync(cfg.screenshots, { recursive: true });
    const file = join(cfg.screenshots, 'demo.png');
    await page.screenshot({ path: file, fullPage: true });
    console.log(`- saved ${file}`);
  }
} catch (e) {
  failures.push(`stopped: ${e.stack || e}`);
} finally {
  await browser.close();
}
if (failures.length) {
  console.log(`FAIL: ${failures.length} checks failed:`);
  for (const f of failures) console.log(`  ${f}`);
  process.exit(1);
}
console.log('ok: the demo key logs in and the dashboard shows the demo');
