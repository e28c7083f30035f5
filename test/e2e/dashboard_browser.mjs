// test/e2e/dashboard_browser.mjs — drive the dashboard in headless Chromium
// (Debian's, through playwright-core) against the real gateway, and check
// what a person would see.  Called by dashboard_browser.sh, which seeds the
// database, starts the gateway and passes:
//   BASE_URL      http://127.0.0.1:<port>
//   JWT_SECRET    the gateway's HS256 secret
//   DAY           the day the page is opened at (YYYY-MM-DD)
//   SPIKE_ID      the installation with the seeded anomaly
//   EXPECTED      JSON: {"overview": provider_overview(DAY), "daily": [...], "install": {...}}
//   SHOTS         directory for the screenshots
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';

const require = createRequire(new URL('../../dashboard/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const { BASE_URL, JWT_SECRET, DAY, SPIKE_ID, SHOTS } = process.env;
const EXPECTED = JSON.parse(process.env.EXPECTED);

function b64url(s) {
  return Buffer.from(s).toString('base64url');
}
function jwt(payload) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(payload));
  const sig = createHmac('sha256', JWT_SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}
const now = Math.floor(Date.now() / 1000);
const adminToken = jwt({ role: 'usage_tracking_admin', sub: 'dashboard-test', iat: now, exp: now + 600 });

let failures = 0;
let passes = 0;
async function check(name, fn) {
  try {
    await fn();
    passes++;
    console.log(`ok - ${name}`);
  } catch (e) {
    failures++;
    console.log(`not ok - ${name}\n  ${String(e.message).split('\n').join('\n  ')}`);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
const page = await context.newPage();
const foreign = [];
const consoleErrors = [];
page.on('request', (r) => { if (!r.url().startsWith(BASE_URL)) foreign.push(r.url()); });
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));
// The page runs under the gateway's Content-Security-Policy: any violation
// (an inline script or style, a foreign source) is reported here.
const cspViolations = [];
const pageHeaders = [];
await page.exposeFunction('reportCspViolation', (v) => cspViolations.push(v));
await context.addInitScript(() => {
  document.addEventListener('securitypolicyviolation',
    (e) => window.reportCspViolation(`${e.violatedDirective} ${e.blockedURI}`));
});
page.on('response', (r) => {
  if (r.request().resourceType() === 'document') pageHeaders.push(r.headers());
});

async function settle() {
  await page.waitForFunction(() => ['ready', 'error', 'signin'].includes(document.body.dataset.state),
    null, { timeout: 20000 });
  const state = await page.evaluate(() => document.body.dataset.state);
  if (state !== 'ready') {
    const msg = await page.evaluate(() => document.getElementById('error')?.textContent || '');
    throw new Error(`page state ${state}: ${msg}`);
  }
}
const value = (metric) => page.getAttribute(`[data-metric="${metric}"]`, 'data-value');
const text = (metric) => page.textContent(`[data-metric="${metric}"]`);
const fmtInt = (n) => new Intl.NumberFormat('en-US').format(Number(n));
const close = (a, b) => Math.abs(Number(a) - Number(b)) < 1e-6;

try {
  // Without a token the page asks for one.
  await check('without a token the page asks for one', async () => {
    await page.goto(`${BASE_URL}/dashboard`);
    await page.waitForFunction(() => document.body.dataset.state === 'signin', null, { timeout: 20000 });
    assert.ok(await page.isVisible('textarea#token'));
  });
  // A token that is not the gateway's is refused, and said so.
  await check('a forged token is refused', async () => {
    const forged = adminToken.slice(0, -4) + (adminToken.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    await page.goto(`${BASE_URL}/dashboard/#/?day=${DAY}&token=${forged}`);
    await page.waitForFunction(() => document.body.dataset.state === 'signin', null, { timeout: 20000 });
    assert.match(await page.textContent('#error'), /refused \(401\)/);
  });

  await check('the overview loads with an admin token from the URL fragment', async () => {
    await page.goto(`${BASE_URL}/dashboard/#/?day=${DAY}&token=${adminToken}`);
    await settle();
    assert.equal(await page.evaluate(() => localStorage.getItem('usage_tracking.dashboard.token')), adminToken);
    assert.ok(!page.url().includes('token='), 'the token is taken out of the address bar');
  });

  const ov = EXPECTED.overview;
  await check('the overview shows the counts and figures of the database', async () => {
    assert.equal(await value('installations'), String(ov.installations.total));
    assert.equal(await value('accounts'), String(ov.accounts.total));
    assert.equal(await text('installations'), fmtInt(ov.installations.total));
    assert.equal(await value('requests.today'), String(ov.today.requests));
    assert.equal(await text('requests.today'), fmtInt(ov.today.requests));
    assert.equal(await value('tokens.month_to_date'), String(ov.month_to_date.tokens));
    assert.equal(await text('tokens.month_to_date'), fmtInt(ov.month_to_date.tokens));
    assert.ok(close(await value('cost_usd.month_to_date'), ov.month_to_date.cost_usd));
    assert.ok(close(await value('cost_usd.projected_run_rate'), ov.projected.run_rate.cost_usd));
    assert.ok(close(await value('cost_usd.projected_linear'), ov.projected.linear.cost_usd));
    assert.equal(await value('requests.projected_linear'), String(ov.projected.linear.requests));
    assert.match(await text('cost_mtd'), /^\$[\d,]+\.\d{2}$/);
  });

  await check('the daily chart drew the seeded days', async () => {
    const daily = EXPECTED.daily;
    const chart = await page.evaluate(() => {
      const c = window.usageDashboard.charts.daily;
      return {
        labels: c.data.labels.length,
        tokens: c.data.datasets[0].data,
        cost: c.data.datasets[1].data,
        bars: c.getDatasetMeta(0).data.length,
        points: c.getDatasetMeta(1).data.length,
        barHeights: c.getDatasetMeta(0).data.map((b) => Math.round(Math.abs(b.base - b.y))),
      };
    });
    assert.equal(chart.labels, 30);
    assert.equal(chart.bars, 30);
    assert.equal(chart.points, 30);
    assert.deepEqual(chart.tokens, daily.map((d) => Number(d.tokens)));
    chart.cost.forEach((c, i) => assert.ok(close(c, daily[i].cost_usd), `cost of ${daily[i].date}`));
    // the spike day's bar is the tallest, and every seeded day has a visible bar
    assert.equal(chart.barHeights.indexOf(Math.max(...chart.barHeights)), 29);
    assert.ok(chart.barHeights.every((hgt) => hgt > 0), `bar heights ${chart.barHeights}`);
    // and the canvas really has ink on it
    const inked = await page.evaluate(() => {
      const cv = document.getElementById('chart-daily');
      const px = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
      let n = 0;
      for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
      return n / (px.length / 4);
    });
    assert.ok(inked > 0.02, `only ${(inked * 100).toFixed(2)} % of the canvas is drawn`);
  });

  await check('the seeded anomaly is listed, and only it among installations', async () => {
    const rows = await page.$$eval('#anomalies tbody tr', (trs) => trs.map((tr) => ({
      kind: tr.dataset.kind, id: tr.dataset.id, cls: tr.className, text: tr.textContent,
    })));
    const installs = rows.filter((r) => r.kind === 'installation');
    assert.deepEqual(installs.map((r) => r.id), [SPIKE_ID]);
    assert.equal(installs[0].cls, 'spike');
    assert.ok(rows.some((r) => r.kind === 'account' && r.id === 'blog_net'));
  });

  await check('top installations put the spiking installation first', async () => {
    const first = await page.getAttribute('#top-installations tbody tr:first-child', 'data-install');
    const count = await page.$$eval('#top-installations tbody tr', (t) => t.length);
    assert.equal(count, EXPECTED.top_count);
    assert.equal(first, EXPECTED.top_first);
  });

  await check('breakdowns by model and by source are shown', async () => {
    const models = await page.$$eval('#by-model tbody tr td:first-child', (t) => t.map((x) => x.textContent));
    const sources = await page.$$eval('#by-source tbody tr td:first-child', (t) => t.map((x) => x.textContent));
    assert.deepEqual([...models].sort(), EXPECTED.models);
    assert.deepEqual([...sources].sort(), ['bulk', 'inline', 'manual', 'queue']);
  });

  await page.screenshot({ path: `${SHOTS}/dashboard_overview.png`, fullPage: true });

  await check('the anomaly links to the installation page, which loads', async () => {
    await page.click(`#anomalies tr[data-id="${SPIKE_ID}"] a`);
    await page.waitForFunction(() => location.hash.startsWith('#/installation/'));
    await settle();
    assert.equal(await page.textContent('#install-id'), SPIKE_ID);
    const meta = await page.$$eval('#install-meta dd', (d) => d.map((x) => x.textContent));
    assert.deepEqual(meta.slice(0, 3), ['blog_net', 'pro', 'active']);
    const inst = EXPECTED.install;
    assert.ok(close(await value('cost_today'), inst.today.cost_usd));
    assert.ok(close(await value('cost_mtd'), inst.month_to_date.cost_usd));
    const pts = await page.evaluate(() => window.usageDashboard.charts.installation.data.datasets[0].data);
    assert.deepEqual(pts, EXPECTED.install_daily.map((d) => Number(d.tokens)));
    const anomalyDays = await page.$$eval('#anomalies tbody tr td:first-child', (t) => t.map((x) => x.textContent));
    assert.deepEqual(anomalyDays, [DAY]);
  });
  await page.screenshot({ path: `${SHOTS}/dashboard_installation.png`, fullPage: true });

  await check('an unknown installation shows an error, not a blank page', async () => {
    await page.goto(`${BASE_URL}/dashboard/#/installation/99999999-9999-4999-8999-999999999999_999999999999?day=${DAY}`);
    await page.waitForFunction(() => document.body.dataset.state === 'error', null, { timeout: 20000 });
    assert.match(await page.textContent('#error'), /unknown installation/);
  });

  await check('nothing was fetched from anywhere but the gateway', async () => {
    assert.deepEqual(foreign, []);
  });
  await check('the page is served with a Content-Security-Policy and no-framing headers', async () => {
    assert.ok(pageHeaders.length > 0);
    for (const h of pageHeaders) {
      assert.match(h['content-security-policy'] || '', /script-src 'self'/);
      assert.doesNotMatch(h['content-security-policy'], /unsafe-inline|unsafe-eval/);
      assert.equal(h['x-frame-options'], 'DENY');
      assert.equal(h['x-content-type-options'], 'nosniff');
    }
  });
  await check('the page works under its Content-Security-Policy: no violation', async () => {
    assert.deepEqual(cspViolations, []);
  });
  await check('no script errors', async () => {
    assert.deepEqual(consoleErrors.filter((e) => !/status of 40[14]/.test(e)), []);
  });
} finally {
  await browser.close();
}
console.log(`dashboard browser: ${passes} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
