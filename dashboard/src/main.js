// dashboard/src/main.js — the provider dashboard of usage_tracking.
//
// Pages (hash routes, so the gateway serves one static file):
//   #/?day=YYYY-MM-DD                    overview as of the end of that UTC day
//   #/installation/<install_id>?day=…    one installation
// Every figure comes from the gateway's JSON routes (/rpc/analytics_*), called
// with the bearer token the page was given in its URL fragment
// (#token=<jwt>, or token=<jwt> among the route's parameters) and keeps in
// localStorage.  Chart.js is bundled in: nothing is fetched from elsewhere.
import {
  Chart, BarController, BarElement, LineController, LineElement, PointElement,
  CategoryScale, LinearScale, Tooltip, Legend,
} from 'chart.js';

Chart.register(BarController, BarElement, LineController, LineElement, PointElement,
  CategoryScale, LinearScale, Tooltip, Legend);

const TOKEN_KEY = 'usage_tracking.dashboard.token';
const app = document.getElementById('app');
const charts = {};
let pendingCharts = [];   // charts to draw once their canvas is in the page
// For people and tests alike: the state of the page and its charts.
window.usageDashboard = { state: 'loading', charts, Chart };

function setState(state) {
  document.body.dataset.state = state;
  window.usageDashboard.state = state;
}

// DOM ---------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Formats -------------------------------------------------------------------

const intFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
function num(v) {
  return v === null || v === undefined ? '–' : intFmt.format(Number(v));
}
function usd(v) {
  if (v === null || v === undefined) return '–';
  const n = Number(v);
  const digits = n !== 0 && Math.abs(n) < 1 ? 4 : 2;
  return '$' + n.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: digits });
}
function pct(v) {
  return `${Number(v).toFixed(1)}%`;
}
function when(ts) {
  return ts ? String(ts).replace('T', ' ').replace(/(\.\d+)?(\+00:00|Z)$/, ' UTC') : '–';
}
function shortId(id) {
  return id.length > 20 ? id.slice(0, 8) + '…' + id.slice(-6) : id;
}

// Dates (UTC calendar days, YYYY-MM-DD) ------------------------------------

function todayUtc() {
  return new Date().toISOString().slice(0, 10);
}
function addDays(day, n) {
  const d = new Date(day + 'T00:00:00Z');
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}
function monthStart(day) {
  return day.slice(0, 8) + '01';
}
function validDay(s) {
  return /^\d{4}-\d{2}-\d{2}$/.test(s || '') && !Number.isNaN(Date.parse(s + 'T00:00:00Z'));
}

// Routes and the token --------------------------------------------------------

function parseHash() {
  const raw = location.hash.replace(/^#/, '');
  const q = raw.indexOf('?');
  let path = q < 0 ? raw : raw.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
  if (path.startsWith('token=')) {
    params.set('token', decodeURIComponent(path.slice(6)));
    path = '/';
  }
  return { path: path || '/', params };
}

function href(path, params) {
  const q = new URLSearchParams(params).toString();
  return '#' + path + (q ? '?' + q : '');
}

// Move a token from the URL into localStorage, and out of the address bar.
function takeToken() {
  const { path, params } = parseHash();
  if (!params.has('token')) return;
  localStorage.setItem(TOKEN_KEY, params.get('token'));
  params.delete('token');
  history.replaceState(null, '', location.pathname + location.search + href(path, params));
}

function token() {
  return localStorage.getItem(TOKEN_KEY) || '';
}

// API -------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.message || body.error)) || `HTTP ${status}`);
    this.status = status;
  }
}

async function rpc(name, args) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(args || {})) {
    if (v !== undefined && v !== null && v !== '') qs.set(k, v);
  }
  const res = await fetch(`/rpc/${name}?${qs}`, {
    headers: { Authorization: `Bearer ${token()}`, Accept: 'application/json' },
    cache: 'no-store',
  });
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = { message: text }; }
  if (!res.ok) throw new ApiError(res.status, body);
  // A front may wrap a scalar result as [{"<name>": value}]; PostgREST does not.
  if (Array.isArray(body) && body.length === 1 && body[0] && typeof body[0] === 'object'
      && Object.keys(body[0]).length === 1 && name in body[0]) {
    return body[0][name];
  }
  return body;
}

// Pieces ----------------------------------------------------------------------

function header(day, path) {
  const input = h('input', {
    type: 'date', id: 'day', value: day,
    onchange: (e) => { if (validDay(e.target.value)) location.hash = href(path, { day: e.target.value }); },
  });
  return h('header', { class: 'top' },
    h('a', { class: 'brand', href: href('/', { day }) }, 'usage_tracking', h('span', {}, ' provider dashboard')),
    h('div', { class: 'controls' },
      h('label', { for: 'day' }, 'As of the end of '), input,
      h('button', { type: 'button', onclick: () => { location.hash = href(path, { day: todayUtc() }); } }, 'Today'),
      h('button', { type: 'button', class: 'quiet', onclick: signOut }, 'Sign out')));
}

function card(title, main, mainKey, mainValue, sub) {
  return h('section', { class: 'card' },
    h('h3', {}, title),
    h('div', { class: 'big', dataset: { metric: mainKey, value: mainValue ?? '' } }, main),
    sub ? h('div', { class: 'sub' }, sub) : null);
}

function cell(text, metric, value, cls) {
  return h('td', { class: cls || 'n', dataset: metric ? { metric, value: value ?? '' } : undefined }, text);
}

function usageTable(rows, columns) {
  // rows: [label, key, fmt]; columns: [title, key, object]
  return h('table', { class: 'usage' },
    h('thead', {}, h('tr', {}, h('th', {}, ''), columns.map(([t]) => h('th', { class: 'n' }, t)))),
    h('tbody', {}, rows.map(([label, key, fmt]) =>
      h('tr', {}, h('th', {}, label), columns.map(([, ckey, obj]) => {
        const v = obj ? obj[key] : null;
        return cell(fmt(v), `${key}.${ckey}`, v);
      })))));
}

function dailyChart(name, rows) {
  const canvas = h('canvas', {
    id: `chart-${name}`,
    'aria-label': 'Daily tokens and cost',
    role: 'img',
    dataset: {
      points: rows.length,
      tokens: rows.reduce((s, r) => s + Number(r.tokens), 0),
      cost: rows.reduce((s, r) => s + Number(r.cost_usd), 0).toFixed(6),
    },
  });
  const box = h('div', { class: 'chart' }, canvas);
  pendingCharts.push(() => {
    if (!canvas.isConnected) return;   // from a render that was overtaken
    if (charts[name]) charts[name].destroy();
    charts[name] = new Chart(canvas, {
      data: {
        labels: rows.map((r) => r.date.slice(5)),
        datasets: [
          {
            type: 'bar', label: 'Tokens', yAxisID: 'tokens',
            data: rows.map((r) => Number(r.tokens)),
            backgroundColor: 'rgba(78, 121, 167, 0.55)', borderColor: 'rgb(78, 121, 167)', borderWidth: 1,
          },
          {
            type: 'line', label: 'Cost (USD)', yAxisID: 'cost',
            data: rows.map((r) => Number(r.cost_usd)),
            borderColor: 'rgb(225, 87, 89)', backgroundColor: 'rgb(225, 87, 89)',
            pointRadius: 2, borderWidth: 2, tension: 0.2,
          },
        ],
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: 'index', intersect: false },
        scales: {
          tokens: { type: 'linear', position: 'left', beginAtZero: true, title: { display: true, text: 'tokens' } },
          cost: {
            type: 'linear', position: 'right', beginAtZero: true,
            title: { display: true, text: 'USD' }, grid: { drawOnChartArea: false },
          },
        },
        plugins: {
          legend: { position: 'top' },
          tooltip: {
            callbacks: {
              label: (c) => (c.dataset.yAxisID === 'cost' ? ` Cost ${usd(c.parsed.y)}` : ` Tokens ${num(c.parsed.y)}`),
            },
          },
        },
      },
    });
  });
  return box;
}

function installLink(id, day) {
  return h('a', { href: href(`/installation/${encodeURIComponent(id)}`, { day }), title: id, class: 'mono' }, shortId(id));
}

function topTable(rows, day) {
  if (!rows.length) return h('p', { class: 'empty' }, 'No usage in these 30 days.');
  return h('table', { id: 'top-installations' },
    h('thead', {}, h('tr', {},
      ['#', 'Installation', 'Account', 'Requests', 'Tokens', 'Cost', 'Share'].map((t, i) =>
        h('th', { class: i >= 3 ? 'n' : null }, t)))),
    h('tbody', {}, rows.map((r) => h('tr', { dataset: { install: r.install_id } },
      h('td', {}, r.rank),
      h('td', {}, installLink(r.install_id, day), r.status === 'suspended' ? h('span', { class: 'tag' }, 'suspended') : null),
      h('td', {}, r.account_id),
      cell(num(r.total_requests)), cell(num(r.total_tokens)), cell(usd(r.estimated_cost_usd)),
      cell(pct(r.share_pct))))));
}

function anomalyTable(rows, day, withSubject = true) {
  if (!rows.length) return h('p', { class: 'empty', id: 'no-anomalies' }, 'Nothing unusual.');
  return h('table', { id: 'anomalies' },
    h('thead', {}, h('tr', {},
      (withSubject ? ['Kind', 'Subject'] : ['Day']).concat(['Metric', 'Value', 'Median (28 d)', 'Score', ''])
        .map((t, i, all) => h('th', { class: i >= all.length - 4 && i < all.length - 1 ? 'n' : null }, t)))),
    h('tbody', {}, rows.map((a) => h('tr', { class: a.direction, title: a.reason, dataset: { id: a.id || '', kind: a.kind || '' } },
      withSubject ? [
        h('td', {}, a.kind),
        h('td', {}, a.kind === 'installation' ? installLink(a.id, day) : h('span', { class: 'mono' }, a.id)),
      ] : [h('td', {}, a.on_day)],
      h('td', {}, a.metric.replace('_usd', '')),
      cell(a.metric === 'cost_usd' ? usd(a.value) : num(a.value)),
      cell(a.metric === 'cost_usd' ? usd(a.median) : num(a.median)),
      cell(Number(a.score).toFixed(1)),
      h('td', {}, h('span', { class: `tag ${a.direction}` }, a.direction))))));
}

function breakdownTable(rows, key, title) {
  return h('section', { class: 'panel' }, h('h2', {}, title),
    rows.length ? h('table', { id: `by-${key}` },
      h('thead', {}, h('tr', {}, [key[0].toUpperCase() + key.slice(1), 'Requests', 'Tokens', 'Cost', 'Share'].map((t, i) =>
        h('th', { class: i ? 'n' : null }, t)))),
      h('tbody', {}, rows.map((r) => h('tr', {},
        h('td', { class: 'mono' }, r[key]),
        cell(num(r.total_requests)), cell(num(r.total_tokens)), cell(usd(r.estimated_cost_usd)),
        cell(pct(r.cost_share_pct))))))
      : h('p', { class: 'empty' }, 'No usage.'));
}

// Pages -----------------------------------------------------------------------

async function overview(day) {
  const from = addDays(day, -29);
  const [ov, daily, top, anomalies, byModel, bySource] = await Promise.all([
    rpc('analytics_overview', { day }),
    rpc('analytics_daily', { date_from: from, date_to: day }),
    rpc('analytics_top_installations', { date_from: from, date_to: day, by: 'cost', lim: 10 }),
    rpc('analytics_anomalies', { day }),
    rpc('analytics_breakdown', { by: 'model', date_from: monthStart(day), date_to: day }),
    rpc('analytics_breakdown', { by: 'source', date_from: monthStart(day), date_to: day }),
  ]);
  const p = ov.projected || {};
  const columns = [
    ['Today', 'today', ov.today],
    ['Month to date', 'month_to_date', ov.month_to_date],
    ['Projected (7-day run rate)', 'projected_run_rate', p.run_rate],
    ['Projected (linear)', 'projected_linear', p.linear],
  ];
  return [
    header(day, '/'),
    h('main', {},
      h('div', { class: 'cards' },
        card('Installations', num(ov.installations.total), 'installations', ov.installations.total,
          `${num(ov.installations.active)} active · ${num(ov.installations.suspended)} suspended · ${num(ov.today.installations)} used today`),
        card('Accounts', num(ov.accounts.total), 'accounts', ov.accounts.total, `${num(ov.accounts.active)} active`),
        card('Cost month to date', usd(ov.month_to_date.cost_usd), 'cost_mtd', ov.month_to_date.cost_usd,
          `projected ${usd(p.run_rate && p.run_rate.cost_usd)} (run rate) · ${usd(p.linear && p.linear.cost_usd)} (linear)`),
        card('Cost today', usd(ov.today.cost_usd), 'cost_today', ov.today.cost_usd,
          `${num(ov.today.requests)} requests · ${num(ov.today.tokens)} tokens`)),
      h('section', { class: 'panel' }, h('h2', {}, `Usage — ${day.slice(0, 7)}, as of the end of ${day} (UTC)`),
        usageTable([
          ['Requests', 'requests', num],
          ['Tokens', 'tokens', num],
          ['Cost', 'cost_usd', usd],
        ], columns),
        ov.month_to_date.unpriced_requests > 0
          ? h('p', { class: 'note' }, `${num(ov.month_to_date.unpriced_requests)} requests this month had no price and are not in the cost.`)
          : null),
      h('section', { class: 'panel' }, h('h2', {}, `Daily tokens and cost, ${from} to ${day}`), dailyChart('daily', daily)),
      h('div', { class: 'two' },
        h('section', { class: 'panel' }, h('h2', {}, 'Top installations by cost, last 30 days'), topTable(top, day)),
        h('section', { class: 'panel' }, h('h2', {}, `Anomalies on ${day}`), anomalyTable(anomalies, day))),
      h('div', { class: 'two' },
        breakdownTable(byModel, 'model', 'By model, month to date'),
        breakdownTable(bySource, 'source', 'By source, month to date'))),
  ];
}

async function installation(id, day) {
  const from = addDays(day, -29);
  const [info, daily, byModel, bySource] = await Promise.all([
    rpc('analytics_installation', { install_id: id, day }),
    rpc('analytics_daily', { date_from: from, date_to: day, install_id: id }),
    rpc('analytics_breakdown', { by: 'model', date_from: from, date_to: day, install_id: id }),
    rpc('analytics_breakdown', { by: 'source', date_from: from, date_to: day, install_id: id }),
  ]);
  const meta = [
    ['Account', info.account_id], ['Plan', info.plan], ['Status', info.status],
    ['First seen', when(info.first_seen_at)], ['Last seen', when(info.last_seen_at)],
    ['Plugin', info.plugin_version || '–'],
  ];
  return [
    header(day, `/installation/${encodeURIComponent(id)}`),
    h('main', {},
      h('p', {}, h('a', { href: href('/', { day }) }, '← Overview')),
      h('h1', { class: 'mono', id: 'install-id' }, info.install_id),
      h('dl', { class: 'meta', id: 'install-meta' }, meta.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      h('div', { class: 'cards' },
        card('Today', usd(info.today.cost_usd), 'cost_today', info.today.cost_usd,
          `${num(info.today.requests)} requests · ${num(info.today.tokens)} tokens`),
        card('Month to date', usd(info.month_to_date.cost_usd), 'cost_mtd', info.month_to_date.cost_usd,
          `${num(info.month_to_date.requests)} requests · ${num(info.month_to_date.tokens)} tokens`),
        card('Last 30 days', usd(info.last_30_days.cost_usd), 'cost_30d', info.last_30_days.cost_usd,
          `${num(info.last_30_days.requests)} requests · ${num(info.last_30_days.active_days)} active days`)),
      h('section', { class: 'panel' }, h('h2', {}, `Daily tokens and cost, ${from} to ${day}`), dailyChart('installation', daily)),
      h('section', { class: 'panel' }, h('h2', {}, 'Anomalies in these 30 days'), anomalyTable(info.anomalies, day, false)),
      h('div', { class: 'two' },
        breakdownTable(byModel, 'model', 'By model, last 30 days'),
        breakdownTable(bySource, 'source', 'By source, last 30 days'))),
  ];
}

function signIn(message) {
  const area = h('textarea', { id: 'token', rows: 4, placeholder: 'eyJhbGciOiJIUzI1NiIs…', spellcheck: 'false' });
  return h('main', { class: 'signin' },
    h('h1', {}, 'usage_tracking provider dashboard'),
    message ? h('p', { class: 'error', id: 'error' }, message) : null,
    h('p', {}, 'Paste an admin token (a JWT signed with the gateway\'s secret, role usage_tracking_admin or usage_tracking_analyst). It stays in this browser\'s local storage.'),
    area,
    h('p', {}, h('button', {
      type: 'button',
      onclick: () => { localStorage.setItem(TOKEN_KEY, area.value.trim()); render(); },
    }, 'Open the dashboard')));
}

function signOut() {
  localStorage.removeItem(TOKEN_KEY);
  render();
}

let renderSeq = 0;
async function render() {
  const seq = ++renderSeq;
  takeToken();
  const { path, params } = parseHash();
  const day = validDay(params.get('day')) ? params.get('day') : todayUtc();
  setState('loading');
  pendingCharts = [];
  if (!token()) {
    app.replaceChildren(signIn());
    setState('signin');
    return;
  }
  app.classList.add('busy');
  try {
    const m = path.match(/^\/installation\/([^/]+)$/);
    const content = m ? await installation(decodeURIComponent(m[1]), day) : await overview(day);
    if (seq !== renderSeq) return;
    for (const c of Object.values(charts)) c.destroy();
    for (const k of Object.keys(charts)) delete charts[k];
    app.replaceChildren(...content);
    const draw = pendingCharts;
    pendingCharts = [];
    draw.forEach((f) => f());
    setState('ready');
  } catch (e) {
    if (seq !== renderSeq) return;
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
      app.replaceChildren(signIn(`The token was refused (${e.status}): ${e.message}`));
      setState('signin');
    } else {
      app.replaceChildren(header(day, path), h('main', {},
        h('p', { class: 'error', id: 'error' }, `Could not load the data: ${e.message}`),
        h('p', {}, h('a', { href: href('/', { day }) }, '← Overview'))));
      setState('error');
    }
  } finally {
    app.classList.remove('busy');
  }
}

window.addEventListener('hashchange', render);
render();
