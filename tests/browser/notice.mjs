// One visit of the CPE notice page in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core), run by
// tests/tests/orders_netns.rs inside the LAN host's network namespace.
//
//   node tests/browser/notice.mjs '{"url": "...", "screenshot": "...png", "press": false}'
//
// Loads the page on a phone-sized screen, optionally presses 「自己診断を
// 実行」 and waits for its progress and then its result, takes a full-page
// screenshot (and `<name>-screen.png`, the first screen, and
// `<name>-diagnosis.png`, the Japanese diagnosis) and prints what it saw as one JSON line (the Rust test asserts
// on it). Exits 1 with a message when the page cannot be loaded or the
// self-check does not finish.
import { launch } from './chromium.mjs';

const step = JSON.parse(process.argv[2] ?? '{}');
const { context, close } = await launch('cpe-notice', {
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  locale: 'ja-JP',
});

const text = async (page, selector) => {
  const element = await page.$(selector);
  return element ? (await element.innerText()).trim() : null;
};

const observe = async (page) => ({
  headline_ja: await text(page, '#state-ja'),
  headline_en: await text(page, '#state-en'),
  headline_class: await page.getAttribute('#state-ja', 'class'),
  verdict_ja: await text(page, '#diagnosis-ja .verdict'),
  failed_ja: await text(page, '#diagnosis-ja .failed'),
  hint_ja: await text(page, '#diagnosis-ja .hint'),
  hint_en: await text(page, '#diagnosis-en .hint'),
  result_ja: await text(page, '#result-ja'),
  html_lang: await page.getAttribute('html', 'lang'),
  // The Japanese font is there (no tofu): Chromium knows the family.
  japanese_font: await page.evaluate(() => document.fonts.check('16px "Noto Sans CJK JP"', '自己診断')),
  horizontal_scroll: await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth),
});

let exitCode = 0;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  const response = await page.goto(step.url, { waitUntil: 'load', timeout: 15000 });
  const body = await response.body();
  const seen = { status: response.status(), bytes: body.length, url: page.url(), ...(await observe(page)) };
  if (step.press) {
    const started = Date.now();
    await page.click('section[lang="ja"] form button');
    await page.waitForSelector('#progress-ja', { timeout: 10000 });
    seen.progress_ja = await text(page, '#progress-ja');
    if (step.progress_screenshot) {
      await page.screenshot({ path: step.progress_screenshot, fullPage: true });
    }
    await page.waitForSelector('#result-ja', { timeout: 60000 });
    seen.self_check_ms = Date.now() - started;
    Object.assign(seen, await observe(page));
  }
  await page.screenshot({ path: step.screenshot, fullPage: true });
  // What the phone shows first, without scrolling.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: step.screenshot.replace(/\.png$/, '-screen.png') });
  // The last diagnosis as the Japanese half shows it.
  if (await page.$('#diagnosis-ja')) {
    await page.locator('#diagnosis-ja').screenshot({ path: step.screenshot.replace(/\.png$/, '-diagnosis.png') });
  }
  console.log(JSON.stringify(seen));
} catch (error) {
  console.error(`notice.mjs: ${error.message}`);
  exitCode = 1;
} finally {
  await close();
}
process.exit(exitCode);
