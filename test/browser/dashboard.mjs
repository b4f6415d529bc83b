// The browser half of the dashboard test (browser_test.go starts the
// servers, seeds the data and computes the expected numbers, then runs
// `node dashboard.mjs CONFIG.json`). It drives Debian's chromium through
// playwright-core (no browser download) and exits non-zero with the list
// of what the page got wrong.
import { createRequire } from 'node:module';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const X = cfg.expect;
X.hooks = Object.fromEntries(cfg.webhooks.map((h) => [h.ID, h]));
const failures = [];
let checks = 0;
const check = (ok, msg) => { checks++; if (!ok) failures.push(msg); };
const eq = (got, want, what) => check(got === want, `${what}: page shows ${got}, want ${want}`);
const step = (s) => console.log(`- ${s}`);

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--font-render-hinting=none'],
});
try {
  await main();
} catch (e) {
  failures.push(`stopped: ${e.stack || e}`);
} finally {
  await browser.close();
}
if (failures.length) {
  console.log(`FAIL: ${failures.length} of ${checks} checks failed:`);
  for (const f of failures) console.log(`  ${f}`);
  process.exit(1);
}
console.log(`ok: ${checks} checks passed`);

async function main() {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, deviceScaleFactor: 1, timezoneId: 'UTC' });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 40[13]/.test(m.text())) errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('request', (r) => check(r.url().startsWith(cfg.baseURL), `the page requested another origin: ${r.url()}`));
  const shots = cfg.screenshots;
  if (shots) mkdirSync(shots, { recursive: true });
  const shot = async (name, target) => {
    if (!shots) return;
    await (target || page).screenshot({ path: join(shots, name + '.png'), ...(target ? {} : { fullPage: true }) });
  };

  step('log in with a wrong key');
  await page.goto(cfg.baseURL + '/ui');
  await page.waitForSelector('#login-view:not([hidden])');
  await shot('login');
  await page.fill('#api-key', cfg.wrongKey);
  await page.click('#login-submit');
  await page.waitForSelector('#login-error:not([hidden])');
  check(await page.isHidden('#dashboard'), 'a wrong key opened the dashboard');
  check(!(await context.cookies()).some((c) => c.name === 'bouncer_session'), 'a wrong key got a session cookie');

  step('log in with the key');
  await page.fill('#api-key', cfg.apiKey);
  await page.click('#login-submit');
  await page.waitForSelector('#dashboard[data-state="ready"]', { timeout: 30000 });
  const cookie = (await context.cookies()).find((c) => c.name === 'bouncer_session');
  check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', `session cookie ${JSON.stringify(cookie)}: want HttpOnly, SameSite=Strict`);
  eq(await page.getAttribute('#account', 'data-account'), 'acme', 'account');

  step(`range ${X.Start} to ${X.End}, by day`);
  await setRange(page, X.Start, X.End, 'day');
  for (const k of ['requests', 'delivered', 'bounces', 'deferred', 'drops']) {
    eq(Number(await page.getAttribute(`[data-kpi="${k}"]`, 'data-value')), X.Total[k], `total ${k}`);
  }
  await checkPeriods(page, X.Days, 'day');
  eq(await page.locator('#funnel-table tbody tr').count(), 30, 'days in the funnel table');
  // The charts draw the same numbers: one point per day, in order.
  const days = Object.keys(X.Days).sort();
  const funnel = await series(page, '#funnel-chart');
  eq(funnel.labels.length, 30, 'points of the funnel chart');
  const firstDay = 30 - Math.round((Date.parse(X.End) - Date.parse(days[0])) / 86400000) - 1;
  for (const [label, key] of [['Requests', 'requests'], ['Delivered', 'delivered'], ['Bounces', 'bounces'], ['Blocks', 'blocks'], ['Drops', 'drops']]) {
    eq(JSON.stringify(funnel.series[label].slice(firstDay, firstDay + days.length)), JSON.stringify(days.map((d) => X.Days[d][key])), `funnel chart ${label}`);
  }
  const classes = await series(page, '#classes-chart');
  for (const [c, values] of Object.entries(classes.series)) {
    const want = days.map((d) => (X.Classes[d] && X.Classes[d][c]) || 0);
    eq(JSON.stringify(values.slice(firstDay, firstDay + days.length)), JSON.stringify(want), `classification chart ${c}`);
  }
  const provs = await series(page, '#providers-chart');
  for (const [i, p] of provs.labels.entries()) {
    const c = X.Providers[p];
    check(c && Math.abs(provs.series.Bounces[i] - (100 * c.bounces) / c.processed) < 1e-9, `provider chart ${p}: bounces ${provs.series.Bounces[i]}%`);
  }
  await checkRates(page, 'providers', X.Providers);
  await checkRates(page, 'domains', X.Domains);
  for (const [day, classes] of Object.entries(X.Classes)) {
    for (const [c, n] of Object.entries(classes)) {
      eq(await value(page, `#classes-table tr[data-period="${day}"] td[data-class="${c}"]`), n, `${c} bounces on ${day}`);
    }
  }
  eq(await page.locator('#classes-table tbody tr[data-period]').count(), Object.keys(X.Classes).length, 'days with bounces');
  for (const [code, r] of Object.entries(X.Reasons)) {
    eq(await value(page, `#reasons-table tr[data-reason="${code}"] td[data-metric="bounces"]`), r.bounces, `bounces of reason ${code}`);
    eq(await value(page, `#reasons-table tr[data-reason="${code}"] td[data-metric="blocks"]`), r.blocks, `blocks of reason ${code}`);
  }
  await checkWebhooks(page);
  await shot('dashboard');
  for (const id of ['kpis', 'funnel', 'providers', 'domains', 'classifications', 'reasons', 'webhook-health']) {
    await shot(id, page.locator('#' + id));
  }

  step('replay a failed batch of the broken webhook');
  const failedRow = page.locator(`#failed-table tr[data-endpoint="${cfg.replayEndpoint}"][data-replayed-at="0"]`).first();
  const batch = await failedRow.getAttribute('data-webhook-id');
  await failedRow.locator('button.replay').click();
  await page.waitForSelector('#confirm[open]');
  check(/Send this batch again/.test(await page.textContent('#confirm-title')), `replay confirm: ${await page.textContent('#confirm-title')}`);
  await shot('replay-confirm', page.locator('#confirm'));
  await page.click('#confirm-ok');
  const replayed = `#failed-table tr[data-webhook-id="${batch}"]:not([data-replayed-at="0"])`;
  await page.waitForSelector(replayed, { timeout: 15000 });
  const replayID = await page.getAttribute(replayed, 'data-replay-id');
  check(/\S/.test(replayID || ''), `batch ${batch} replayed without a replay id`);
  eq(await page.getAttribute('#webhook-note', 'data-replay-ids'), replayID, 'replay id in the note');
  eq(await page.locator(`#webhooks-table tr[data-webhook="${cfg.replayEndpoint}"] td[data-metric="failed"]`).getAttribute('data-unreplayed'),
    String(X.hooks[cfg.replayEndpoint].Failed - 1), 'unreplayed batches after the replay');
  check(await page.isHidden('#banner'), `an error after the replay: ${await page.textContent('#banner')}`);
  await shot('webhook-replayed', page.locator('#webhook-health'));

  step('by week');
  await setRange(page, X.Start, X.End, 'week');
  await checkPeriods(page, X.Weeks, 'week');

  step(`search the bounces list for ${cfg.victimPrefix} and delete ${cfg.victim}`);
  await page.fill('#search', cfg.victimPrefix);
  await page.click('#search-form button[type="submit"]');
  await page.waitForSelector('#supp-table[data-state="ready"]');
  const row = page.locator(`#supp-table tr[data-email="${cfg.victim}"]`);
  eq(await row.count(), 1, `rows for ${cfg.victim}`);
  const emails = await page.locator('#supp-table tbody tr[data-email]').evaluateAll((rs) => rs.map((r) => r.dataset.email));
  check(emails.every((e) => e.toLowerCase().startsWith(cfg.victimPrefix)), `search ${cfg.victimPrefix} shows ${emails}`);
  await shot('suppressions', page.locator('#suppressions'));
  await row.locator('button.delete').click();
  await page.waitForSelector('#confirm[open]');
  await shot('delete-confirm', page.locator('#confirm'));
  await page.click('#confirm-ok');
  await page.waitForSelector(`#supp-table tr[data-email="${cfg.victim}"]`, { state: 'detached', timeout: 10000 });
  check(await page.isHidden('#banner'), `an error after the delete: ${await page.textContent('#banner')}`);

  step('a request with the session cookie but no CSRF token');
  const fromPage = await page.evaluate(async () => {
    const res = await fetch('/v3/suppression/bounces/nobody%40example.com', { method: 'DELETE', credentials: 'same-origin' });
    return { status: res.status, body: await res.json() };
  });
  eq(fromPage.status, 403, 'DELETE with the cookie and no token, from the page');
  check(Array.isArray(fromPage.body.errors) && fromPage.body.errors[0].field === null && /CSRF/.test(fromPage.body.errors[0].message),
    `403 body ${JSON.stringify(fromPage.body)}: want SendGrid's error shape naming the CSRF token`);
  const headers = { Cookie: `bouncer_session=${cookie.value}` };
  const outside = await fetch(cfg.baseURL + '/v3/suppression/bounces/nobody%40example.com', { method: 'DELETE', headers });
  eq(outside.status, 403, 'DELETE with the cookie and no token, from outside the browser');
  const wrong = await fetch(cfg.baseURL + '/v3/suppression/bounces/nobody%40example.com', { method: 'DELETE', headers: { ...headers, 'X-CSRF-Token': 'nope' } });
  eq(wrong.status, 403, 'DELETE with the cookie and a wrong token');
  const read = await fetch(cfg.baseURL + '/v3/suppression/bounces?limit=1', { headers });
  eq(read.status, 200, 'GET with the cookie');

  step('log out');
  await page.click('#logout');
  await page.waitForSelector('#login-view:not([hidden])');
  const after = await page.evaluate(async () => (await fetch('/ui/session')).status);
  eq(after, 401, 'GET /ui/session after logout');
  const stale = await fetch(cfg.baseURL + '/v3/suppression/bounces?limit=1', { headers });
  eq(stale.status, 401, 'the old cookie after logout');

  step('log in with a key that may only read the lists');
  await page.fill('#api-key', cfg.readOnlyKey);
  await page.click('#login-submit');
  await page.waitForSelector('#dashboard[data-state="partial"]', { timeout: 30000 });
  for (const view of ['funnel', 'providers', 'domains', 'reasons', 'unmatched']) {
    check(/scope/.test((await page.getAttribute('#' + view, 'data-error')) || ''), `${view} with a suppression.read key: no error about the scope`);
  }
  check((await page.getAttribute('#classifications', 'data-error')) === null, 'classifications (suppression.read) failed for a suppression.read key');
  // Nothing of the previous session's numbers is left where this key may not read.
  eq(await page.getAttribute('#funnel-chart', 'data-series'), null, 'the funnel chart for a key that may not read stats');
  eq(await page.locator('#kpis [data-kpi], #funnel-table tr, #providers-table tr, #domains-table tr, #reasons-table tr, #unmatched-table tr').count(), 0, 'numbers left for a key that may not read stats');
  await page.waitForSelector('#supp-table[data-state="ready"]');
  const listed = await page.locator('#supp-table tbody tr[data-email]').count();
  check(listed > 0, 'a suppression.read key sees no bounces');
  const first = await page.locator('#supp-table tbody tr[data-email]').first().getAttribute('data-email');
  await page.locator(`#supp-table tr[data-email="${first}"] button.delete`).click();
  await page.click('#confirm-ok');
  await page.waitForSelector('#banner:not([hidden])');
  check(/access forbidden.*suppression\.delete/.test(await page.textContent('#banner')), `deleting with a suppression.read key: ${await page.textContent('#banner')}`);
  eq(await page.locator(`#supp-table tr[data-email="${first}"]`).count(), 1, `${first} after a forbidden delete`);
  check(/user\.webhooks\.event\.settings\.read/.test((await page.getAttribute('#webhook-health', 'data-error')) || ''),
    'webhooks with a suppression.read key: no error naming user.webhooks.event.settings.read');
  eq(await page.locator('#webhooks-table tr, #failed-table tr').count(), 0, 'webhook rows for a key that may not read webhooks');
  check(await page.isHidden('#webhooks-empty'), 'the empty state shown to a key that may not read webhooks');
  await shot('read-only-key');
  await page.click('#logout');
  await page.waitForSelector('#login-view:not([hidden])');

  step('log in with a key that may read webhooks but not replay');
  await page.fill('#api-key', cfg.hooksReadOnlyKey);
  await page.click('#login-submit');
  await page.waitForSelector('#dashboard[data-state="partial"]', { timeout: 30000 });
  eq(await page.locator('#webhooks-table tbody tr[data-webhook]').count(), cfg.webhooks.length, 'webhook rows for a key with the read scope');
  const notYet = page.locator(`#failed-table tr[data-endpoint="${cfg.replayEndpoint}"][data-replayed-at="0"]`).first();
  const notYetID = await notYet.getAttribute('data-webhook-id');
  await notYet.locator('button.replay').click();
  await page.click('#confirm-ok');
  await page.waitForSelector('#banner:not([hidden])');
  check(/user\.webhooks\.event\.settings\.update/.test(await page.textContent('#banner')), `replay with a read-only webhooks key: ${await page.textContent('#banner')}`);
  eq(await page.getAttribute(`#failed-table tr[data-webhook-id="${notYetID}"]`, 'data-replayed-at'), '0', `batch ${notYetID} after a forbidden replay`);
  await page.click('#logout');
  await page.waitForSelector('#login-view:not([hidden])');

  step('log in as an account without webhooks');
  await page.fill('#api-key', cfg.globexKey);
  await page.click('#login-submit');
  await page.waitForSelector('#dashboard[data-state="ready"]', { timeout: 30000 });
  eq(await page.getAttribute('#webhook-health', 'data-state'), 'empty', 'webhook view of an account without webhooks');
  check(await page.isVisible('#webhooks-empty'), 'no empty state for an account without webhooks');
  check(/no event webhooks/.test(await page.textContent('#webhooks-empty')), `empty webhook view says: ${await page.textContent('#webhooks-empty')}`);
  eq(await page.locator('#webhooks-table tr').count(), 0, 'webhook rows for an account without webhooks');
  check(await page.isHidden('#failed-batches'), 'failed batches shown for an account without webhooks');
  await shot('webhook-empty', page.locator('#webhook-health'));
  await page.click('#logout');
  await page.waitForSelector('#login-view:not([hidden])');

  check(errors.length === 0, `errors in the page's console (a CSP violation shows here): ${errors.join(' | ')}`);
}

async function setRange(page, start, end, by) {
  await page.evaluate(([s, e, b]) => {
    document.querySelector('#start-date').value = s;
    document.querySelector('#end-date').value = e;
    document.querySelector('#aggregated-by').value = b;
  }, [start, end, by]);
  await page.click('#refresh');
  await page.waitForSelector('#dashboard[data-state="ready"]', { timeout: 30000 });
}

async function series(page, sel) {
  return JSON.parse(await page.getAttribute(sel, 'data-series'));
}

async function value(page, sel) {
  const loc = page.locator(sel);
  if ((await loc.count()) !== 1) return `no cell ${sel}`;
  return Number(await loc.getAttribute('data-value'));
}

async function checkPeriods(page, want, by) {
  for (const [p, c] of Object.entries(want)) {
    for (const k of ['requests', 'processed', 'delivered', 'deferred', 'bounces', 'blocks', 'drops']) {
      eq(await value(page, `#funnel-table tr[data-period="${p}"] td[data-metric="${k}"]`), c[k], `${k} of the ${by} ${p}`);
    }
  }
}

async function checkRates(page, view, want) {
  eq(await page.locator(`#${view}-table tbody tr[data-key]`).count(), Object.keys(want).length, `rows of ${view}`);
  for (const [key, c] of Object.entries(want)) {
    for (const k of ['requests', 'processed', 'bounces', 'blocks']) {
      eq(await value(page, `#${view}-table tr[data-key="${key}"] td[data-metric="${k}"]`), c[k], `${view} ${key} ${k}`);
    }
    const rate = c.processed ? (c.bounces + c.blocks) / c.processed : null;
    if (rate !== null) {
      eq(await value(page, `#${view}-table tr[data-key="${key}"] td[data-metric="bounce_rate"]`), Number(rate.toFixed(4)), `${view} ${key} bounce rate`);
    }
  }
}

// checkWebhooks compares each webhook's row with what the test read from
// ClickHouse (the delivery log and failed batches) and its receivers.
async function checkWebhooks(page) {
  const RESULTS = ['ok', 'http_error', 'timeout', 'connection', 'oauth', 'gone', 'parked', 'exhausted'];
  eq(await page.getAttribute('#webhook-health', 'data-state'), 'ready', 'webhook view state');
  eq(await page.locator('#webhooks-table tbody tr[data-webhook]').count(), cfg.webhooks.length, 'webhook rows');
  for (const h of cfg.webhooks) {
    const row = `#webhooks-table tr[data-webhook="${h.ID}"]`;
    if ((await page.locator(row).count()) !== 1) { check(false, `no row for webhook ${h.Name}`); continue; }
    check((await page.textContent(`${row} td.endpoint`)).includes(h.Name), `webhook ${h.ID} row does not name ${h.Name}`);
    eq(await page.getAttribute(`${row} td[data-metric="state"]`, 'data-value'), h.State, `state of ${h.Name}`);
    if (h.Reason) {
      const reason = await page.getAttribute(`${row} [data-reason]`, 'data-reason');
      check((reason || '').includes(h.Reason), `disabled reason of ${h.Name}: ${reason}, want it to mention ${h.Reason}`);
    }
    eq(await page.getAttribute(`${row} td[data-metric="state"]`, 'data-oauth'), h.OAuth || null, `OAuth state of ${h.Name}`);
    if (h.OAuth === 'failing') {
      const why = await page.getAttribute(`${row} .oauth-failing`, 'data-reason');
      check((why || '').includes('check oauth_client_id and oauth_client_secret'), `OAuth failure of ${h.Name}: ${why}, want it to name the credentials`);
    }
    const circuit = await page.getAttribute(`${row} td[data-metric="circuit"]`, 'data-value');
    check(h.Circuits.length ? h.Circuits.includes(circuit) : circuit === '', `circuit of ${h.Name}: ${circuit}, want one of ${JSON.stringify(h.Circuits)}`);
    eq(await value(page, `${row} td[data-metric="last_success"]`), h.LastSuccess, `last success of ${h.Name}`);
    eq(await value(page, `${row} td[data-metric="last_failure"]`), h.LastFailure, `last failure of ${h.Name}`);
    let total = 0;
    for (const r of RESULTS) {
      total += h.Results[r] || 0;
      eq(await value(page, `${row} td[data-metric="deliveries"] [data-result="${r}"]`), h.Results[r] || 0, `${r} attempts of ${h.Name}`);
    }
    eq(await value(page, `${row} td[data-metric="deliveries"]`), total, `attempts of ${h.Name}`);
    eq(await page.getAttribute(`${row} td[data-metric="deliveries"]`, 'data-capped'), 'false', `attempts of ${h.Name} capped`);
    eq(await value(page, `${row} td[data-metric="failed"]`), h.Failed, `failed batches of ${h.Name}`);
    eq(await page.getAttribute(`${row} td[data-metric="failed"]`, 'data-capped'), 'false', `failed batches of ${h.Name} capped`);
    eq(await page.locator(`#failed-table tr[data-endpoint="${h.ID}"]`).count(), h.Failed, `failed batch rows of ${h.Name}`);
    if (h.State !== 'active') {
      eq(await page.locator(`#failed-table tr[data-endpoint="${h.ID}"] button.replay:enabled`).count(), 0, `replay buttons enabled for the ${h.State} ${h.Name}`);
    }
  }
}
