// Drives Debian's Chromium with playwright-core through one SMART launch of the app and reports
// what the page shows: used by tests/test_smart_browser.py (which checks the FHIR server's logs).
//
//   node test/browser.mjs --url URL --out DIR [--chromium /usr/bin/chromium] [--wait-text TEXT]
//
// Prints one JSON line: {ok, finalUrl, text, violations: [axe rule ids], screenshots: [...]}
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    out: { type: 'string' },
    name: { type: 'string', default: 'smart-app' },
    chromium: { type: 'string', default: process.env.AZA_CHROMIUM || '/usr/bin/chromium' },
    timeout: { type: 'string', default: '60000' },
  },
});
const timeout = Number(args.timeout);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const profile = mkdtempSync(join(tmpdir(), 'aza-chromium-'));

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`];

const result = { ok: false, finalUrl: '', text: '', violations: [], screenshots: [], console: [] };
let context;
try {
  // launchPersistentContext: the fresh --user-data-dir is Playwright's own argument here
  context = await chromium.launchPersistentContext(profile, {
    executablePath: args.chromium, headless: true, args: FLAGS.filter((f) => !f.startsWith('--user-data-dir')),
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, // a phone-sized screen
    bypassCSP: true, // to inject axe-core into the page (the app's own CSP allows no inline script)
  });
  const page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') result.console.push(m.text()); });
  page.on('response', (r) => { if (r.status() >= 400) result.console.push(r.status() + ' ' + r.url()); });
  await page.goto(args.url, { timeout });
  await page.waitForSelector('body[data-ready="true"], #status.error', { timeout });
  result.finalUrl = page.url();
  await page.addScriptTag({ content: axeSource });
  const axe = await page.evaluate(async () => window.axe.run(document, { resultTypes: ['violations'] }));
  result.violations = axe.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help }));
  const phone = join(args.out, `${args.name}-phone.png`);
  await page.screenshot({ path: phone, fullPage: true });
  result.screenshots.push(phone);
  await page.setViewportSize({ width: 1100, height: 900 });
  await page.waitForTimeout(300); // Chart.js redraws on resize
  const wide = join(args.out, `${args.name}-wide.png`);
  await page.screenshot({ path: wide, fullPage: true });
  result.screenshots.push(wide);
  result.text = await page.evaluate(() => document.body.innerText);
  result.ok = await page.evaluate(() => document.body.dataset.ready === 'true');
} catch (err) {
  result.error = String(err && err.message ? err.message : err);
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(result) + '\n');
