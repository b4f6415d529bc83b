// bouncer's dashboard: one page that calls bouncer's JSON API with the
// session cookie set by POST /ui/session. Every number a chart shows is
// also in a table (with data-* attributes the browser test reads).
import {
  Chart, LineController, LineElement, PointElement, BarController, BarElement,
  CategoryScale, LinearScale, Legend, Tooltip, Filler,
} from 'chart.js';

Chart.register(LineController, LineElement, PointElement, BarController, BarElement,
  CategoryScale, LinearScale, Legend, Tooltip, Filler);
Chart.defaults.font.family = getComputedStyle(document.documentElement).getPropertyValue('--font').trim() || 'system-ui, sans-serif';
Chart.defaults.color = '#475467';
Chart.defaults.borderColor = '#eaecf0';
Chart.defaults.animation = false; // numbers should appear at once, also in screenshots

const $ = (sel) => document.querySelector(sel);
const fmt = new Intl.NumberFormat('en-US');
const pct = (x) => (x === null ? '–' : (x * 100).toFixed(x < 0.1 ? 2 : 1) + '%');

// The funnel's series, in SendGrid's metric names (drops = requests - processed).
const FUNNEL = [
  { key: 'requests', label: 'Requests', color: '#98a2b3' },
  { key: 'processed', label: 'Processed', color: '#2e90fa' },
  { key: 'delivered', label: 'Delivered', color: '#12b76a' },
  { key: 'deferred', label: 'Deferred', color: '#f79009' },
  { key: 'bounces', label: 'Bounces', color: '#f04438' },
  { key: 'blocks', label: 'Blocks', color: '#9e77ed' },
  { key: 'drops', label: 'Drops', color: '#667085' },
];
// SendGrid's seven classifications, in a fixed order and colour.
const CLASSES = [
  ['Invalid Address', '#f04438'], ['Mailbox Unavailable', '#f79009'], ['Technical Failure', '#fdb022'],
  ['Content', '#2e90fa'], ['Reputation', '#9e77ed'], ['Frequency or Volume Too High', '#ee46bc'],
  ['Unclassified', '#98a2b3'],
];
const PAGE = 25;

const state = {
  csrf: '',
  list: 'bounces',
  search: '',
  offset: 0,
  charts: {},
  loads: 0,
};

// ---------------------------------------------------------------------------
// API calls

class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// api calls bouncer with the session cookie; state changes carry the CSRF
// token. A 429 waits until the key's bucket has a token (X-RateLimit-Reset)
// and tries again, a few times.
async function api(method, path, body) {
  for (let attempt = 0; ; attempt++) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET') headers['X-CSRF-Token'] = state.csrf;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(path, {
      method, headers, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 429 && attempt < 4) {
      const reset = Number(res.headers.get('X-RateLimit-Reset')) * 1000;
      await sleep(Math.min(5000, Math.max(250, reset - Date.now())));
      continue;
    }
    if (res.status === 204) return null;
    let data = null;
    try { data = await res.json(); } catch { /* not JSON */ }
    if (!res.ok) {
      const msg = data && data.errors && data.errors[0] ? data.errors[0].message : `HTTP ${res.status}`;
      throw new APIError(res.status, msg);
    }
    return data;
  }
}

function query(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach((x) => u.append(k, x));
    else if (v !== undefined && v !== '') u.set(k, v);
  }
  return u.toString();
}

// ---------------------------------------------------------------------------
// Login and logout

function show(view) {
  $('#login-view').hidden = view !== 'login';
  $('#dashboard').hidden = view !== 'dashboard';
  $('#who').hidden = view !== 'dashboard';
}

function loggedIn(session) {
  state.csrf = session.csrf_token;
  $('#account').textContent = session.account;
  $('#account').dataset.account = session.account;
  show('dashboard');
  loadAll();
}

function loggedOut(message) {
  state.csrf = '';
  // The next user starts afresh: no search, the first list, no old numbers.
  state.search = '';
  state.offset = 0;
  state.list = 'bounces';
  $('#search').value = '';
  document.querySelectorAll('#list-tabs button').forEach((x) => x.setAttribute('aria-selected', String(x.dataset.list === 'bounces')));
  $('#banner').hidden = true;
  for (const v of ['#kpis', '#funnel', '#providers', '#domains', '#classifications', '#reasons', '#suppressions', '#webhook-health']) clearView(v);
  show('login');
  const err = $('#login-error');
  err.hidden = !message;
  err.textContent = message || '';
  $('#api-key').focus();
}

async function login(ev) {
  ev.preventDefault();
  const key = $('#api-key').value.trim();
  $('#login-submit').disabled = true;
  try {
    const session = await api('POST', '/ui/session', { api_key: key });
    $('#api-key').value = '';
    $('#login-error').hidden = true;
    loggedIn(session);
  } catch (e) {
    loggedOut(e.status === 401 ? 'That key is not valid (wrong, revoked or mistyped). Check it and try again.' : e.message);
  } finally {
    $('#login-submit').disabled = false;
  }
}

async function logout() {
  try { await api('DELETE', '/ui/session'); } catch { /* the session is gone either way */ }
  loggedOut('You are logged out.');
}

// failed shows an error; an ended session goes back to the login.
function failed(e) {
  if (e.status === 401) {
    loggedOut(e.message);
    return;
  }
  const b = $('#banner');
  b.textContent = e.message;
  b.hidden = false;
}

// ---------------------------------------------------------------------------
// Range

const isoDay = (d) => d.toISOString().slice(0, 10);
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
// label is a period's first day as a chart shows it: "Nov 13", or "Nov 2026" by month.
function label(day, by) {
  const [y, m, d] = day.split('-');
  return by === 'month' ? `${MONTHS[m - 1]} ${y}` : `${MONTHS[m - 1]} ${Number(d)}`;
}

function setRange(days) {
  const end = new Date();
  const start = new Date(end.getTime() - (days - 1) * 86400000);
  $('#start-date').value = isoDay(start);
  $('#end-date').value = isoDay(end);
  document.querySelectorAll('.presets button').forEach((b) => b.classList.toggle('active', Number(b.dataset.days) === days));
}

function range() {
  return { start_date: $('#start-date').value, end_date: $('#end-date').value };
}

// ---------------------------------------------------------------------------
// Rendering helpers

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else if (k === 'text') e.textContent = v;
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

// num is a number cell: the value in data-value, formatted as text.
function num(metric, value, text) {
  return el('td', { class: 'num', 'data-metric': metric, 'data-value': String(value), text: text ?? fmt.format(value) });
}

function table(id, head, rows, empty) {
  const t = $(id);
  t.replaceChildren();
  // A heading that starts with '#' is a number column: right-aligned.
  t.append(el('thead', {}, el('tr', {}, ...head.map((h) => (h.startsWith('#') ? el('th', { text: h.slice(1), class: 'num' }) : el('th', { text: h }))))));
  const body = el('tbody');
  rows.forEach((r) => body.append(r));
  if (rows.length === 0) body.append(el('tr', { class: 'empty' }, el('td', { colSpan: head.length, text: empty })));
  t.append(body);
}

// chart draws config on the canvas id and leaves what it drew in the
// canvas's data-series ({"labels": [...], "series": {label: [values]}}),
// so a test can compare the chart, not only the table, with its data.
function chart(id, config) {
  if (state.charts[id]) state.charts[id].destroy();
  state.charts[id] = new Chart($(id), config);
  const series = Object.fromEntries(config.data.datasets.map((d) => [d.label, d.data]));
  $(id).dataset.series = JSON.stringify({ labels: config.data.labels, series });
}

const rate = (m) => (m.processed > 0 ? (m.bounces + m.blocks) / m.processed : null);

// ---------------------------------------------------------------------------
// Views

async function loadFunnel(r, by) {
  const days = await api('GET', '/v3/stats?' + query({ ...r, aggregated_by: by }));
  const rows = days.map((d) => {
    const m = d.stats[0] ? d.stats[0].metrics : {};
    return { date: d.date, ...m, drops: Math.max(0, (m.requests || 0) - (m.processed || 0)) };
  });
  const total = {};
  for (const f of FUNNEL) total[f.key] = rows.reduce((s, x) => s + (x[f.key] || 0), 0);
  kpis(total);
  chart('#funnel-chart', {
    type: 'line',
    data: {
      labels: rows.map((x) => label(x.date, by)),
      datasets: FUNNEL.map((f) => ({
        label: f.label, data: rows.map((x) => x[f.key] || 0), borderColor: f.color, backgroundColor: f.color + '22',
        fill: f.key === 'delivered', cubicInterpolationMode: 'monotone', pointRadius: rows.length > 40 ? 0 : 2, borderWidth: 2,
      })),
    },
    options: {
      maintainAspectRatio: false, interaction: { mode: 'index', intersect: false },
      plugins: { legend: { position: 'bottom', labels: { usePointStyle: true, boxWidth: 8 } } },
      scales: { y: { beginAtZero: true, ticks: { precision: 0 } }, x: { grid: { display: false } } },
    },
  });
  table('#funnel-table', ['Period', ...FUNNEL.map((f) => '#' + f.label)],
    rows.map((x) => el('tr', { 'data-period': x.date }, el('td', { text: x.date }), ...FUNNEL.map((f) => num(f.key, x[f.key] || 0)))),
    'No events in this range.');
}

function kpis(t) {
  const delivered = t.processed > 0 ? t.delivered / t.processed : null;
  const bounced = t.processed > 0 ? (t.bounces + t.blocks) / t.processed : null;
  const tiles = [
    ['requests', 'Requests', fmt.format(t.requests), `${fmt.format(t.processed)} processed`],
    ['delivered', 'Delivered', fmt.format(t.delivered), `${pct(delivered)} of processed`],
    ['bounces', 'Bounces', fmt.format(t.bounces), `${fmt.format(t.blocks)} blocks · ${pct(bounced)} bounce rate`],
    ['deferred', 'Deferred', fmt.format(t.deferred), 'temporary failures, retried'],
    ['drops', 'Drops', fmt.format(t.drops), 'not sent: suppressed or invalid'],
  ];
  $('#kpis').replaceChildren(...tiles.map(([key, label, value, sub]) => el('div', { class: `kpi kpi-${key}`, 'data-kpi': key, 'data-value': String(t[key]) },
    el('div', { class: 'kpi-label', text: label }), el('div', { class: 'kpi-value', text: value }), el('div', { class: 'kpi-sub muted', text: sub }))));
}

// rateView draws the bounce rate of each row (name, metrics) as bars and a table.
function rateView(name, rows, keyLabel, empty) {
  rows.sort((a, b) => (b.m.requests - a.m.requests) || a.key.localeCompare(b.key));
  chart(`#${name}-chart`, {
    type: 'bar',
    data: {
      labels: rows.map((x) => x.key),
      datasets: [
        { label: 'Bounces', data: rows.map((x) => (x.m.processed ? (100 * x.m.bounces) / x.m.processed : 0)), backgroundColor: '#f04438', stack: 'r' },
        { label: 'Blocks', data: rows.map((x) => (x.m.processed ? (100 * x.m.blocks) / x.m.processed : 0)), backgroundColor: '#9e77ed', stack: 'r' },
      ],
    },
    options: {
      indexAxis: 'y', maintainAspectRatio: false,
      plugins: {
        legend: { position: 'bottom', labels: { usePointStyle: true, boxWidth: 8 } },
        tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${c.parsed.x.toFixed(2)}% of processed` } },
      },
      scales: { x: { stacked: true, beginAtZero: true, ticks: { callback: (v) => v + '%' } }, y: { stacked: true, grid: { display: false } } },
    },
  });
  table(`#${name}-table`, [keyLabel, '#Requests', '#Processed', '#Bounces', '#Blocks', '#Bounce rate'],
    rows.map((x) => el('tr', { 'data-key': x.key }, el('td', { text: x.key }),
      num('requests', x.m.requests), num('processed', x.m.processed),
      num('bounces', x.m.bounces), num('blocks', x.m.blocks),
      num('bounce_rate', rate(x.m) === null ? '' : rate(x.m).toFixed(4), pct(rate(x.m))))),
    empty);
}

function sumMetrics(entries) {
  const out = {};
  for (const m of entries) for (const [k, v] of Object.entries(m)) out[k] = (out[k] || 0) + v;
  return out;
}

async function loadProviders(r) {
  // One period for the whole range: ask by month and add the months up.
  const days = await api('GET', '/v3/mailbox_providers/stats?' + query({ ...r, aggregated_by: 'month' }));
  const by = {};
  for (const d of days) for (const s of d.stats) (by[s.name] ||= []).push(s.metrics);
  const rows = Object.entries(by).map(([key, ms]) => ({ key, m: sumMetrics(ms) })).filter((x) => x.m.requests > 0 || x.m.bounces + x.m.blocks > 0);
  rateView('providers', rows, 'Provider', 'No events in this range.');
}

async function loadDomains(r) {
  const ds = await api('GET', '/bouncer/v1/stats/top_domains?' + query({ ...r, limit: 10 }));
  rateView('domains', ds.map((d) => ({ key: d.domain, m: d.metrics })), 'Domain', 'No events in this range.');
}

// Classification counts come per day; group them into the chosen periods.
function periodOf(day, by) {
  const d = new Date(day + 'T00:00:00Z');
  if (by === 'week') d.setUTCDate(d.getUTCDate() - ((d.getUTCDay() + 6) % 7));
  if (by === 'month') d.setUTCDate(1);
  return isoDay(d);
}

function periods(r, by) {
  const out = [];
  const end = new Date(r.end_date + 'T00:00:00Z');
  for (let d = new Date(periodOf(r.start_date, by) + 'T00:00:00Z'); d <= end;) {
    out.push(isoDay(d));
    if (by === 'month') d.setUTCMonth(d.getUTCMonth() + 1);
    else d.setUTCDate(d.getUTCDate() + (by === 'week' ? 7 : 1));
  }
  return out;
}

async function loadClasses(r, by) {
  const res = await api('GET', '/v3/suppression/bounces/classifications?' + query(r));
  const ps = periods(r, by);
  const counts = Object.fromEntries(ps.map((p) => [p, {}]));
  for (const d of res.result) {
    const p = periodOf(d.date, by);
    if (!counts[p]) continue;
    for (const s of d.stats) counts[p][s.classification] = (counts[p][s.classification] || 0) + s.count;
  }
  chart('#classes-chart', {
    type: 'bar',
    data: {
      labels: ps.map((p) => label(p, by)),
      datasets: CLASSES.map(([c, color]) => ({ label: c, data: ps.map((p) => counts[p][c] || 0), backgroundColor: color, stack: 'c', borderRadius: 2 })),
    },
    options: {
      maintainAspectRatio: false, interaction: { mode: 'index', intersect: false },
      plugins: { legend: { position: 'bottom', labels: { usePointStyle: true, boxWidth: 8 } } },
      scales: { x: { stacked: true, grid: { display: false } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
    },
  });
  const rows = ps.filter((p) => Object.keys(counts[p]).length > 0);
  table('#classes-table', ['Period', ...CLASSES.map(([c]) => '#' + c), '#Total'],
    rows.map((p) => {
      const total = Object.values(counts[p]).reduce((a, b) => a + b, 0);
      return el('tr', { 'data-period': p }, el('td', { text: p }),
        ...CLASSES.map(([c]) => { const td = num('count', counts[p][c] || 0); td.dataset.class = c; return td; }),
        num('total', total));
    }),
    'No bounces in this range.');
}

async function loadReasons(r) {
  const rs = await api('GET', '/bouncer/v1/stats/bounce_reasons?' + query({ ...r, limit: 10 }));
  const max = Math.max(1, ...rs.map((x) => x.bounces + x.blocks));
  const color = Object.fromEntries(CLASSES);
  table('#reasons-table', ['Reason', 'Classification', 'Type', '#Bounces', '#Blocks', 'Example'],
    rs.map((x) => {
      const bar = el('span', { class: 'meter' });
      bar.style.width = `${(100 * (x.bounces + x.blocks)) / max}%`;
      bar.style.background = color[x.classification] || '#98a2b3';
      return el('tr', { 'data-reason': x.reason_code || '(none)', 'data-classification': x.classification },
        el('td', {}, el('div', { class: 'reason' }, el('code', { text: x.reason_code || '(none)' }), bar)),
        el('td', { text: x.classification }), el('td', {}, el('span', { class: `pill ${x.bounce_type}`, text: x.bounce_type || '–' })),
        num('bounces', x.bounces), num('blocks', x.blocks), el('td', { class: 'example', text: x.example, title: x.example }));
    }),
    'No bounces in this range.');
}

async function loadUnmatched(r) {
  const rep = await api('GET', '/bouncer/v1/classify/unmatched?' + query({ ...r, limit: 10 }));
  table('#unmatched-table', ['Text (masked)', 'Codes', 'Providers', '#Count', '#Unclassified', 'Newest example'],
    rep.groups.map((g) => el('tr', { 'data-text': g.text },
      el('td', {}, el('code', { text: g.text })),
      el('td', { text: [g.reply_code, g.status].filter(Boolean).join(' ') || '–' }),
      el('td', { text: g.providers.join(', ') }),
      num('count', g.count), num('unclassified', g.unclassified),
      el('td', { class: 'example', text: g.example, title: g.example }))),
    rep.unknown > 0
      ? `No unmatched replies in this range (${fmt.format(rep.unknown)} bounces were stored before bouncer recorded what decided).`
      : 'Every bounce and deferral in this range was understood by a text rule.');
}

// ---------------------------------------------------------------------------
// Suppression lists

async function loadList() {
  const params = { limit: PAGE, offset: state.offset };
  if (state.search) params.email = state.search;
  const es = await api('GET', `/v3/suppression/${state.list}?` + query(params));
  const withReason = state.list === 'bounces' || state.list === 'blocks' || state.list === 'invalid_emails';
  const head = ['Address', 'Added (UTC)'];
  if (withReason) head.push('Reason');
  head.push('');
  table('#supp-table', head,
    es.map((e) => {
      const cells = [el('td', { class: 'email', text: e.email }), el('td', { class: 'when', text: new Date(e.created * 1000).toISOString().slice(0, 16).replace('T', ' ') })];
      if (withReason) cells.push(el('td', { class: 'example', text: e.reason || '', title: e.reason || '' }));
      const del = el('button', { type: 'button', class: 'danger small delete', text: 'Remove' });
      del.addEventListener('click', () => confirmDelete(e.email));
      cells.push(el('td', { class: 'actions' }, del));
      return el('tr', { 'data-email': e.email }, ...cells);
    }),
    state.search ? `No address starting with “${state.search}” on this list.` : 'This list is empty.');
  $('#supp-table').dataset.list = state.list;
  $('#supp-table').dataset.state = 'ready';
  $('#prev-page').disabled = state.offset === 0;
  $('#next-page').disabled = es.length < PAGE;
  $('#page-info').textContent = es.length ? `${state.offset + 1}–${state.offset + es.length}` : '';
}

function confirmDelete(email) {
  confirmAction('Remove from the list?', `${email} will be removed from ${state.list.replace('_', ' ')}.`, 'Remove', async () => {
    const path = state.list === 'unsubscribes'
      ? `/v3/asm/suppressions/global/${encodeURIComponent(email)}`
      : `/v3/suppression/${state.list}/${encodeURIComponent(email)}`;
    try {
      await api('DELETE', path);
      await loadList();
    } catch (e) {
      if (e.status === 403) {
        const scope = state.list === 'unsubscribes' ? 'asm.suppressions.global.delete' : 'suppression.delete';
        e.message = `Your API key may not remove entries (${e.message}): it needs the scope ${scope}.`;
      }
      failed(e);
    }
  });
}

// confirmAction asks first (the #confirm dialog) and runs action on OK.
// danger styles the OK button as destructive.
function confirmAction(title, text, okLabel, action, danger = true) {
  const dlg = $('#confirm');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = okLabel;
  $('#confirm-ok').className = danger ? 'danger' : 'primary';
  dlg.returnValue = '';
  dlg.onclose = () => { if (dlg.returnValue === 'ok') action(); };
  dlg.showModal();
}

// ---------------------------------------------------------------------------
// Webhook delivery health

// The delivery log's results, as GET /bouncer/v1/webhooks/{id}/deliveries
// names them: attempts (ok, and five kinds of failure) and what delivery
// did with a batch (parked in a retry tier, given up).
const RESULTS = [
  ['ok', 'delivered', '#12b76a'], ['http_error', 'HTTP error', '#f04438'], ['timeout', 'timeout', '#f79009'],
  ['connection', 'connection', '#fdb022'], ['oauth', 'OAuth token', '#dd2590'], ['gone', '410 Gone', '#9e77ed'], ['parked', 'parked', '#98a2b3'],
  ['exhausted', 'given up', '#475467'],
];
const DELIVERY_ROWS = 500; // the most one /deliveries request returns
const FAILED_ROWS = 500; // and one /failed request
const SCOPE_WEBHOOK_UPDATE = 'user.webhooks.event.settings.update';

const dayStart = (day) => Date.parse(day + 'T00:00:00Z') / 1000;
const when = (unix) => (unix ? new Date(unix * 1000).toISOString().slice(0, 16).replace('T', ' ') : 'never');
const hookPath = (id) => `/bouncer/v1/webhooks/${encodeURIComponent(id)}`;

// timeCell is a time cell: unix seconds in data-value (0: never).
function timeCell(metric, unix) {
  return el('td', { class: 'when', 'data-metric': metric, 'data-value': String(unix), text: when(unix) });
}

// loadWebhooks reads every subscription of the account, then for each its
// delivery state, its newest delivery log rows and its failed batches. The
// attempts and failed batches count those in the range; the state, circuit
// and last success and failure are the endpoint's, whenever they happened.
async function loadWebhooks(r) {
  const from = dayStart(r.start_date);
  const to = dayStart(r.end_date) + 86400;
  const list = await api('GET', '/v3/user/webhooks/event/settings/all');
  const hooks = [];
  for (const w of list.webhooks) {
    const st = await api('GET', hookPath(w.id) + '/state');
    const ds = (await api('GET', hookPath(w.id) + '/deliveries?' + query({ limit: DELIVERY_ROWS }))).result;
    const all = (await api('GET', hookPath(w.id) + '/failed?' + query({ since: from, limit: FAILED_ROWS }))).result;
    const fs = all.filter((f) => f.failed_at < to);
    const failedCapped = all.length === FAILED_ROWS;
    const counts = Object.fromEntries(RESULTS.map(([k]) => [k, 0]));
    for (const d of ds) if (d.at >= from && d.at < to) counts[d.result] = (counts[d.result] || 0) + 1;
    // The route gives the newest rows only: when it gave all it may and
    // the oldest is still in the range, older attempts are not counted.
    const capped = ds.length === DELIVERY_ROWS && ds[ds.length - 1].at >= from;
    hooks.push({ w, st, counts, capped, failed: fs, failedCapped });
  }
  renderWebhooks(hooks, r);
}

function renderWebhooks(hooks, r) {
  const view = $('#webhook-health');
  table('#webhooks-table', ['Webhook', 'State', 'Circuit', 'Last success', 'Last failure', 'Attempts in the range', '#Failed batches', ''],
    hooks.map(({ w, st, counts, capped, failed: fs, failedCapped }) => {
      const name = w.friendly_name || '(no name)';
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      const bar = el('div', { class: 'stackbar' });
      const chips = el('div', { class: 'chips' });
      for (const [k, text, color] of RESULTS) {
        if (counts[k]) {
          const seg = el('span', { title: `${text}: ${fmt.format(counts[k])}` });
          seg.style.width = `${(100 * counts[k]) / total}%`;
          seg.style.background = color;
          bar.append(seg);
        }
        const chip = el('span', { class: 'chip' + (counts[k] ? '' : ' zero'), 'data-result': k, 'data-value': String(counts[k]) },
          el('i', { class: 'dot' }), `${text} ${fmt.format(counts[k])}`);
        chip.firstChild.style.background = color;
        chips.append(chip);
      }
      const attempts = el('td', { class: 'attempts', 'data-metric': 'deliveries', 'data-value': String(total), 'data-capped': String(capped) },
        total ? bar : el('span', { class: 'muted', text: 'none' }), chips);
      if (capped) attempts.append(el('div', { class: 'muted small-note', text: `the newest ${DELIVERY_ROWS} attempts only` }));
      const stateCell = el('td', { 'data-metric': 'state', 'data-value': st.state },
        el('span', { class: `pill state-${st.state}`, text: st.state }));
      if (st.state === 'disabled') {
        stateCell.append(el('div', { class: 'reason-text', 'data-reason': st.disabled_reason, text: `${st.disabled_reason} (since ${when(st.disabled_at)})` }));
      } else if (st.state === 'off') {
        stateCell.append(el('div', { class: 'reason-text muted', text: 'switched off in its settings' }));
      }
      // OAuth: a webhook whose token requests fail gets no deliveries
      // (they wait in the retry tiers); say why, plainly.
      if (st.oauth) {
        stateCell.dataset.oauth = st.oauth.state;
        if (st.oauth.state === 'failing') {
          stateCell.append(el('div', { class: 'reason-text oauth-failing', 'data-reason': st.oauth.error,
            text: `${st.oauth.error} (since ${when(st.oauth.failed_at)})` }));
        }
      }
      const open = fs.filter((f) => !f.replayed_at);
      const failedCell = num('failed', fs.length);
      failedCell.dataset.unreplayed = String(open.length);
      failedCell.dataset.capped = String(failedCapped);
      if (failedCapped) failedCell.append(el('div', { class: 'muted small-note', text: `the oldest ${FAILED_ROWS} only` }));
      if (open.length !== fs.length) failedCell.append(el('div', { class: 'muted small-note', text: `${fmt.format(fs.length - open.length)} replayed` }));
      const actions = el('td', { class: 'actions' });
      if (open.length) {
        const all = el('button', { type: 'button', class: 'small replay-all', text: 'Replay all' });
        all.addEventListener('click', () => confirmAction('Send the failed batches again?',
          `Every batch given up since ${r.start_date} goes to ${w.url} again, each under a new webhook-id: ` +
          `${fs.length} in the range shown` + (open.length < fs.length ? `, ${fs.length - open.length} of them replayed before` : '') +
          (r.end_date < isoDay(new Date()) ? ', and any given up after it.' : '.'), 'Replay',
          () => replay(w, hookPath(w.id) + '/replay', { since: dayStart(r.start_date) }), false));
        if (st.state !== 'active') blockReplay(all, st.state);
        actions.append(all);
      }
      return el('tr', { 'data-webhook': w.id, 'data-circuit': st.circuit },
        el('td', { class: 'endpoint' }, el('div', { class: 'hook-name', text: name }), el('div', { class: 'hook-url', text: w.url, title: w.url })),
        stateCell,
        el('td', { 'data-metric': 'circuit', 'data-value': st.circuit }, el('span', { class: `pill circuit-${st.circuit || 'none'}`, text: st.circuit || 'none yet' })),
        timeCell('last_success', st.last_success), timeCell('last_failure', st.last_failure),
        attempts, failedCell, actions);
    }),
    '');
  if (!hooks.length) $('#webhooks-table').replaceChildren();
  $('#webhooks-empty').hidden = hooks.length > 0;

  const rows = [];
  const states = Object.fromEntries(hooks.map((h) => [h.w.id, h.st.state]));
  for (const { w, failed: fs } of hooks) {
    for (const f of fs) {
      const btn = el('button', { type: 'button', class: 'small replay', text: f.replayed_at ? 'Replay again' : 'Replay' });
      btn.addEventListener('click', () => confirmAction('Send this batch again?',
        `The ${f.events} events of batch ${f.webhook_id} go to ${w.url} again, under a new webhook-id.`, 'Replay',
        () => replay(w, `${hookPath(w.id)}/failed/${encodeURIComponent(f.webhook_id)}/replay`), false));
      if (states[w.id] !== 'active') blockReplay(btn, states[w.id]);
      rows.push(el('tr', { 'data-endpoint': w.id, 'data-webhook-id': f.webhook_id, 'data-replayed-at': String(f.replayed_at), 'data-replay-id': f.replay_id },
        el('td', { text: w.friendly_name || w.url }), el('td', { class: 'when', text: when(f.failed_at) }),
        el('td', { class: 'example', text: f.reason + (f.last_error ? `: ${f.last_error}` : ''), title: f.last_error }),
        num('attempts', f.attempts), num('last_status', f.last_status, f.last_status ? String(f.last_status) : '–'), num('events', f.events),
        f.replayed_at
          ? el('td', { class: 'when' }, el('div', { text: when(f.replayed_at) }), el('div', { class: 'replay-id', text: f.replay_id, title: 'the webhook-id it went out under' }))
          : el('td', { class: 'when', text: '–' }),
        el('td', { class: 'actions' }, btn)));
    }
  }
  $('#failed-batches').hidden = rows.length === 0;
  table('#failed-table', ['Webhook', 'Failed (UTC)', 'Reason', '#Attempts', '#Last status', '#Events', 'Replayed (UTC)', ''], rows, '');
  view.dataset.state = hooks.length ? 'ready' : 'empty';
  view.dataset.webhooks = String(hooks.length);
}

// blockReplay disables a replay button of a webhook that is not active:
// delivery would give the batch up again at once.
function blockReplay(btn, st) {
  btn.disabled = true;
  btn.title = st === 'off'
    ? 'This webhook is switched off: turn it on (PATCH /v3/user/webhooks/event/settings/{id} with "enabled": true), then replay.'
    : 'Delivery disabled this webhook: fix the receiver, re-enable it (PATCH /v3/user/webhooks/event/settings/{id} with "enabled": true), then replay.';
}

// replay posts a replay (with the session's CSRF token) and reloads the view.
async function replay(w, path, body) {
  const view = $('#webhook-health');
  view.dataset.state = 'replaying';
  try {
    const res = await api('POST', path, body);
    const note = $('#webhook-note') || el('p', { id: 'webhook-note', class: 'banner ok', role: 'status' });
    note.textContent = `${res.replayed} batch${res.replayed === 1 ? '' : 'es'} queued for ${w.friendly_name || w.url}` +
      (res.result.length ? ` under ${res.result.map((x) => x.replay_id).join(', ')}` : '') + ': a worker sends them within seconds.';
    note.dataset.replayed = String(res.replayed);
    note.dataset.replayIds = res.result.map((x) => x.replay_id).join(' ');
    view.querySelector(':scope > .card-head').after(note);
    await loadWebhooks(range());
  } catch (e) {
    if (e.status === 403) e.message = `Your API key may not replay batches (${e.message}): it needs the scope ${SCOPE_WEBHOOK_UPDATE}.`;
    view.dataset.state = 'ready';
    failed(e);
  }
}

// ---------------------------------------------------------------------------

async function loadAll() {
  const main = $('#dashboard');
  main.dataset.state = 'loading';
  $('#banner').hidden = true;
  const r = range();
  const by = $('#aggregated-by').value;
  if (!r.start_date || !r.end_date || r.start_date > r.end_date) {
    failed({ message: 'Choose a start date on or before the end date.' });
    return;
  }
  const load = ++state.loads;
  // In sequence: a dashboard load is eight requests and three per webhook, and the key's rate
  // limit (10 a second by default) is shared with its other users.
  const steps = [
    // [views, load, the scope of the route it reads]
    [['#kpis', '#funnel'], () => loadFunnel(r, by), 'stats.global.read'],
    [['#providers'], () => loadProviders(r), 'mailbox_providers.stats.read'],
    [['#domains'], () => loadDomains(r), 'stats.read'],
    [['#classifications'], () => loadClasses(r, by), 'suppression.read'],
    [['#reasons'], () => loadReasons(r), 'stats.read'],
    [['#unmatched'], () => loadUnmatched(r), 'stats.read'],
    [['#suppressions'], () => loadList(), 'suppression.read'],
    [['#webhook-health'], () => loadWebhooks(r), 'user.webhooks.event.settings.read'],
  ];
  // Each view is dimmed until its own numbers are in.
  for (const [views] of steps) views.forEach((v) => $(v).classList.add('stale'));
  let errors = 0;
  for (const [views, step, scope] of steps) {
    if (load !== state.loads) return; // a newer load started
    try {
      await step();
      views.forEach((v) => viewError(v, ''));
    } catch (e) {
      if (e.status === 401) {
        failed(e); // the session ended: back to the login
        return;
      }
      // Another view may still work (a key without a stats scope can
      // still manage the lists): say what went wrong here, go on.
      errors++;
      views.forEach((v) => viewError(v, e.status === 403
        ? `Your API key may not read this (${e.message}): it needs the scope ${scope}.`
        : e.message));
    }
    views.forEach((v) => $(v).classList.remove('stale'));
  }
  if (load === state.loads) main.dataset.state = errors ? 'partial' : 'ready';
}

// clearView removes a view's numbers: its charts, tables and totals.
function clearView(sel) {
  const view = $(sel);
  view.querySelectorAll('canvas').forEach((c) => {
    const id = '#' + c.id;
    if (state.charts[id]) state.charts[id].destroy();
    delete state.charts[id];
    delete c.dataset.series;
  });
  view.querySelectorAll('table').forEach((t) => t.replaceChildren());
  if (sel === '#kpis') view.replaceChildren();
  if (sel === '#webhook-health') {
    $('#failed-batches').hidden = true;
    $('#webhooks-empty').hidden = true;
    if ($('#webhook-note')) $('#webhook-note').remove();
    delete view.dataset.webhooks;
    view.dataset.state = 'loading';
  }
}

// viewError shows (or, with '', clears) an error inside a view; a view in
// error shows no numbers.
function viewError(sel, message) {
  const view = $(sel);
  let p = view.querySelector(':scope > .view-error');
  if (!message) {
    if (p) p.remove();
    delete view.dataset.error;
    return;
  }
  clearView(sel);
  const head = view.querySelector(':scope > .card-head');
  if (!head) return; // the totals: no room for a message
  if (!p) {
    p = el('p', { class: 'banner error view-error', role: 'alert' });
    head.after(p);
  }
  p.textContent = message;
  view.dataset.error = message;
}



function init() {
  $('#login-form').addEventListener('submit', login);
  $('#logout').addEventListener('click', logout);
  $('#refresh').addEventListener('click', loadAll);
  $('#aggregated-by').addEventListener('change', loadAll);
  for (const id of ['#start-date', '#end-date']) {
    $(id).addEventListener('change', () => {
      document.querySelectorAll('.presets button').forEach((b) => b.classList.remove('active'));
      loadAll();
    });
  }
  document.querySelectorAll('.presets button').forEach((b) => b.addEventListener('click', () => { setRange(Number(b.dataset.days)); loadAll(); }));
  document.querySelectorAll('#list-tabs button').forEach((b) => b.addEventListener('click', () => {
    document.querySelectorAll('#list-tabs button').forEach((x) => x.setAttribute('aria-selected', String(x === b)));
    state.list = b.dataset.list;
    state.offset = 0;
    loadList().catch(failed);
  }));
  $('#search-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.search = $('#search').value.trim();
    state.offset = 0;
    $('#supp-table').dataset.state = 'loading';
    loadList().catch(failed);
  });
  $('#prev-page').addEventListener('click', () => { state.offset = Math.max(0, state.offset - PAGE); loadList().catch(failed); });
  $('#next-page').addEventListener('click', () => { state.offset += PAGE; loadList().catch(failed); });
  setRange(30);
  api('GET', '/ui/session').then(loggedIn, () => loggedOut(''));
}

init();
