// The carrier's web console in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core), run by tests/tests/console_browser.rs against a
// real `cpe-provision serve --operator-listen` on loopback.
//
//   node tests/browser/console.mjs '{"url": "https://127.0.0.1:PORT/", "shots": "DIR",
//     "password": "...", "operator": "sato", "viewer": "yamada", "compliance": "kato",
//     "code": "1312345678", "device": "1312345678/cpe-01", "alert": 1, "case": 1}'
//
// Signs in, reads the fleet counts, finds the device by its institution code
// with the search box, opens its page, counts the vertices of the SVG graphs,
// acknowledges the open alert, switches to English (and checks that no
// Japanese is left in the page's own words, and that the choice survives a
// reload), looks at the alerts and case pages, has a viewer press 「停止命令を
// 出す」 (refused: 403 in words), and records ⑤ the check as compliance.
// Prints what it saw as one JSON line (the Rust test asserts on it); exits 1
// with a message when a step cannot be done. Screenshots go to `shots`.
import { join } from 'node:path';
import { launch } from './chromium.mjs';

const step = JSON.parse(process.argv[2] ?? '{}');
const { context, close } = await launch('cpe-console', {
  // The test server's certificate comes from the test's own CA.
  ignoreHTTPSErrors: true,
  viewport: { width: 1280, height: 900 },
  locale: 'ja-JP',
  timezoneId: 'Asia/Tokyo',
});

const JAPANESE = /[\u3040-\u30ff\u4e00-\u9fff]/;
const shot = (page, name) => page.screenshot({ path: join(step.shots, `${name}.png`), fullPage: true });
const ready = (page, name) => page.waitForSelector(`#view[data-ready="${name}"]`, { timeout: 15000 });
const text = async (page, selector) => {
  const element = await page.$(selector);
  return element ? (await element.innerText()).trim() : null;
};
const texts = (page, selector) => page.$$eval(selector, (all) => all.map((e) => e.innerText.trim()));

// The page's own words (headings, labels, buttons, column heads, navigation),
// not the data it shows (alert messages, reasons typed by operators), nor
// the switch that names the other language.
const CHROME = 'header a, h1, h2, h3, th, label, button:not(#lang), dt, figcaption strong, .count .label, legend';

async function signIn(page, name) {
  await page.goto(`${step.url}#/login`, { waitUntil: 'load' });
  await ready(page, 'login');
  await page.fill('#login-name', name);
  await page.fill('#login-password', step.password);
  await page.click('#login button[type=submit]');
  await page.waitForFunction(() => !location.hash.startsWith('#/login'), null, { timeout: 15000 });
}

async function signOut(page) {
  await page.click('#logout');
  await ready(page, 'login');
}

/** Vertices of the polylines (and lone dots) of one series of one chart. */
const vertices = (page, chart, series) =>
  page.$$eval(`${chart} [data-series="${series}"]`, (shapes) =>
    shapes.reduce((n, s) => n + (s.tagName === 'circle' ? 1 : s.getAttribute('points').trim().split(/\s+/).length), 0),
  );

const errors = [];
let exitCode = 0;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  // Script errors and CSP violations fail the test; the browser's own note
  // of a refused request (401 before sign-in, the refusals this script
  // provokes) does not.
  page.on('console', (message) => {
    const expected = /^Failed to load resource: the server responded with a status of (401|403|409)\b/;
    if (message.type() === 'error' && !expected.test(message.text())) errors.push(message.text());
  });
  page.on('pageerror', (error) => errors.push(error.message));
  const seen = {};

  // Sign-in page, Japanese first.
  const response = await page.goto(step.url, { waitUntil: 'load' });
  seen.status = response.status();
  seen.csp = response.headers()['content-security-policy'] ?? null;
  seen.frame_options = response.headers()['x-frame-options'] ?? null;
  await ready(page, 'login');
  seen.html_lang = await page.getAttribute('html', 'lang');
  seen.login_title = await text(page, 'h1');
  seen.japanese_font = await page.evaluate(() => document.fonts.check('16px "Noto Sans CJK JP"', '機器一覧'));
  await shot(page, 'login');
  await page.fill('#login-name', step.operator);
  await page.fill('#login-password', 'wrong password!');
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#login-error:not([hidden])');
  seen.bad_login = await text(page, '#login-error');
  seen.cookie_visible_to_scripts = await page.evaluate(() => document.cookie.includes('cpe_session'));
  await page.fill('#login-password', step.password);
  await page.click('#login button[type=submit]');
  await ready(page, 'fleet');
  seen.cookie_visible_to_scripts ||= await page.evaluate(() => document.cookie.includes('cpe_session'));
  const cookie = (await context.cookies()).find((c) => c.name === 'cpe_session');
  seen.cookie_http_only = cookie?.httpOnly ?? null;

  // Fleet: counts, the first page, then the search by institution code.
  seen.counts = Object.fromEntries(
    await page.$$eval('.count', (cards) => cards.map((c) => [c.dataset.filter, Number(c.querySelector('.n').innerText.replace(/[^0-9]/g, ''))])),
  );
  seen.first_page_rows = (await page.$$('#devices tr[data-device]')).length;
  // The fleet page loaded afresh (counts and the first page): what an operator waits for.
  const loading = Date.now();
  await page.reload({ waitUntil: 'load' });
  await ready(page, 'fleet');
  await page.waitForSelector('.count');
  seen.fleet_load_ms = Date.now() - loading;
  seen.first_page_status = await text(page, '#page-status');
  await shot(page, 'fleet');
  const paging = Date.now();
  await page.click('#next');
  await page.waitForFunction(() => location.hash.includes('offset=50'));
  await page.waitForSelector('#view[data-ready="fleet"]');
  seen.next_page_ms = Date.now() - paging;
  seen.second_page_status = await text(page, '#page-status');
  // The state filter: only the silent devices, counted by the server.
  await page.selectOption('#filter', 'down');
  await page.waitForFunction(() => location.hash.includes('filter=down') && document.querySelector('#view[data-ready="fleet"]'));
  seen.down_rows = await page.$$eval('#devices tr[data-device]', (rows) => rows.map((r) => r.cells[2].innerText.trim()));
  seen.down_status = await text(page, '#page-status');
  await page.selectOption('#filter', '');
  await page.waitForFunction(() => !location.hash.includes('filter=') && document.querySelector('#view[data-ready="fleet"]'));
  const started = Date.now();
  await page.fill('#search', step.code);
  await page.waitForFunction(
    (code) => {
      const rows = [...document.querySelectorAll('#devices tr[data-device]')];
      return rows.length > 0 && rows.every((r) => r.dataset.device.includes(code)) && document.querySelector('#view[data-ready="fleet"]');
    },
    step.code,
    { timeout: 15000 },
  );
  seen.search_ms = Date.now() - started;
  seen.search_rows = await page.$$eval('#devices tr[data-device]', (rows) => rows.map((r) => r.dataset.device));
  await shot(page, 'fleet-search');

  // The device page: graphs drawn from the series, the alert acknowledged.
  const opening = Date.now();
  await page.click(`#devices tr[data-device="${step.device}"] a`);
  await ready(page, 'device');
  seen.device_load_ms = Date.now() - opening;
  seen.device_title = await text(page, 'h1');
  seen.cpu_vertices = await vertices(page, 'figure[data-kind="resources"]', 'cpu_pct');
  seen.mem_vertices = await vertices(page, 'figure[data-kind="resources"]', 'mem_pct');
  seen.cpu_runs = (await page.$$('figure[data-kind="resources"] [data-series="cpu_pct"]')).length;
  seen.line_charts = await texts(page, 'figure[data-kind="line"] figcaption strong');
  seen.line_rx_vertices = await page.$$eval('figure[data-kind="line"]', (figures) =>
    figures.map((f) =>
      [...f.querySelectorAll('[data-series="rx_bps"]')].reduce(
        (n, s) => n + (s.tagName === 'circle' ? 1 : s.getAttribute('points').trim().split(/\s+/).length),
        0,
      ),
    ),
  );
  seen.checks = await page.$$eval('#checks tr.check', (rows) =>
    rows.map((r) => ({ name: r.dataset.check, status: r.cells[0].innerText.trim(), evidence: r.cells[3].innerText.trim() })),
  );
  seen.verdict_ja = await text(page, '#verdict');
  seen.orders_ja = await text(page, '#device-orders');
  seen.case_link = await text(page, '#case-link');
  await shot(page, 'device');
  await page.locator('#device-graphs').screenshot({ path: join(step.shots, 'device-graphs.png') });
  const alertRow = `#device-alerts tr[data-alert="${step.alert}"]`;
  await page.click(`${alertRow} button.acknowledge`);
  await page.waitForSelector(`${alertRow} .acked`, { timeout: 10000 });
  seen.acknowledged = await text(page, `${alertRow} .acked`);

  // English: the same page, none of its own words left in Japanese; the
  // choice survives a reload.
  await page.click('#lang');
  await ready(page, 'device');
  seen.html_lang_en = await page.getAttribute('html', 'lang');
  const chromeEn = await texts(page, CHROME);
  seen.japanese_left_in_english = chromeEn.filter((s) => JAPANESE.test(s));
  seen.checks_en = await page.$$eval('#checks tr.check', (rows) => rows.map((r) => r.cells[3].innerText.trim()));
  seen.verdict_en = await text(page, '#verdict');
  await shot(page, 'device-en');
  await page.reload({ waitUntil: 'load' });
  await ready(page, 'device');
  seen.lang_after_reload = await page.getAttribute('html', 'lang');
  seen.title_after_reload = await text(page, 'h1');
  await page.click('#lang');
  await ready(page, 'device');
  const chromeJa = await texts(page, CHROME);
  seen.japanese_headings = chromeJa.filter((s) => JAPANESE.test(s)).length;
  seen.chrome_strings = chromeJa.length;
  // Every text of the dictionary exists in both languages.
  seen.untranslated = await page.evaluate(async () => {
    const { STRINGS } = await import('/console/i18n.js');
    return Object.entries(STRINGS)
      .filter(([, v]) => !(Array.isArray(v) && v.length === 2 && v[0].trim() && v[1].trim()))
      .map(([k]) => k);
  });

  // Alerts page: the acknowledgement is there.
  await page.goto(`${step.url}#/alerts?all=true`);
  await ready(page, 'alerts');
  seen.alerts_page_ack = await text(page, `tr[data-alert="${step.alert}"] .acked`);
  await shot(page, 'alerts');

  // Case page as an operator: the trail and the countdown; no step forms.
  await page.goto(`${step.url}#/case/${step.case}`);
  await ready(page, 'case');
  seen.trail = await page.$$eval('#trail li', (items) => items.map((i) => i.dataset.step));
  seen.flow_done = await page.$$eval('#flow li.done', (items) => items.map((i) => i.dataset.step));
  seen.countdown_1 = await text(page, '#countdown');
  await page.waitForTimeout(1100);
  seen.countdown_2 = await text(page, '#countdown');
  seen.operator_step_forms = (await page.$$('form.step')).length;
  seen.operator_steps_note = await text(page, '#steps-role');
  await shot(page, 'case');
  await signOut(page);

  // A viewer presses stop: the server refuses (403), the page says so.
  await signIn(page, step.viewer);
  await page.goto(`${step.url}#/device/${encodeURIComponent(step.device)}`);
  await ready(page, 'device');
  await page.fill('#order-reason-ja', '閲覧者による停止の試み');
  await page.fill('#order-reason-en', 'a viewer tries to stop');
  await page.fill('#order-justification', 'test');
  await page.click('#stop');
  await page.waitForSelector('#order-message:not([hidden])', { timeout: 10000 });
  seen.viewer_stop_status = await page.getAttribute('#order-message', 'data-status');
  seen.viewer_stop_message = await text(page, '#order-message');
  await page.locator('#device-stop').screenshot({ path: join(step.shots, 'viewer-stop-refused.png') });
  await signOut(page);

  // Compliance records ⑤ the check with the case page's form: "not
  // corrected" before the deadline is refused by the flow (409, in words),
  // "corrected" is recorded and ends the countdown.
  await signIn(page, step.compliance);
  await page.goto(`${step.url}#/case/${step.case}`);
  await ready(page, 'case');
  seen.compliance_step_forms = await page.$$eval('form.step', (forms) => forms.map((f) => f.dataset.step ?? 'order'));
  const check = 'form[data-step="check"]';
  await page.check(`${check} input[name="corrected"][value="false"]`);
  await page.fill(`${check} textarea[name="note"]`, '未対応 / not yet');
  await page.click(`${check} button[type=submit]`);
  await page.waitForSelector(`${check} [role=alert]:not([hidden])`, { timeout: 10000 });
  seen.early_check_refusal = await text(page, `${check} [role=alert]`);
  await page.check(`${check} input[name="corrected"][value="true"]`);
  await page.fill(`${check} textarea[name="note"]`, '是正を確認 / correction confirmed');
  await page.click(`${check} button[type=submit]`);
  await page.waitForFunction(
    (n) => document.querySelectorAll('#trail li').length > n && document.querySelector('#view[data-ready="case"]'),
    seen.trail.length,
    { timeout: 10000 },
  );
  seen.trail_after_check = await page.$$eval('#trail li', (items) => items.map((i) => i.dataset.step));
  seen.countdown_after_check = await text(page, '#countdown');
  await shot(page, 'case-compliance');

  seen.errors = errors;
  console.log(JSON.stringify(seen));
} catch (error) {
  console.error(`console.mjs: ${error.message}\nbrowser errors: ${JSON.stringify(errors)}`);
  exitCode = 1;
} finally {
  await close();
}
process.exit(exitCode);
