// Runs one browser job in Debian's headless Chromium or Firefox ESR and prints one JSON result.
//   node tests/browser/run.mjs '{"url": "https://localhost:8443/", "ca": "ca.pem", ...}'
// (or the job on stdin). The job:
//   browser             "chromium" (the default, driven by playwright-core) or
//                       "firefox" (driven by puppeteer-core over WebDriver BiDi)
//   url                 the page to load
//   ca                  PEM file of the CA that must have signed the server's certificate
//   clientCertificates  [{origin, certPath, keyPath}] (Playwright's context option;
//                       Firefox: imported into its profile's NSS database and
//                       chosen by Firefox itself in its own handshake)
//   javascript          false: the page's scripts are off (Chromium only)
//   steps               [{click: sel} | {fill: [sel, value]} | {submit: sel} | {text: sel}]
//   screenshot          PNG path (full page)
//   axe                 true: run axe-core on the page after the steps
//                       (the page's Content-Security-Policy stays in force)
// The result: {status, url, title, texts, dialogs, consoleErrors, axe, error?}.
// A page that cannot be loaded (refused handshake, untrusted server) gives
// status null and `error`, never a crash; exit 0 unless the job itself is bad.
import { spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const jobText = process.argv[2] ?? readFileSync(0, 'utf8');
const job = JSON.parse(jobText);

// With clientCertificates, Playwright's own proxy (Node's TLS) makes the
// connection to the server and verifies it; Node reads its extra roots only
// at start-up, so run again with them.
const firefox = job.browser === 'firefox';
if (!firefox && job.browser !== undefined && job.browser !== 'chromium') {
  throw new Error(`unknown browser ${JSON.stringify(job.browser)}`);
}
if (!firefox && job.ca && process.env.NODE_EXTRA_CA_CERTS !== job.ca) {
  const again = spawnSync(process.execPath, [fileURLToPath(import.meta.url), jobText], {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: job.ca },
    stdio: 'inherit',
  });
  process.exit(again.status ?? 1);
}

const require = createRequire(join(here, 'package.json'));
const axePath = require.resolve('axe-core/axe.min.js');

// A throwaway NSS database in `dir` that trusts only the test CA (and,
// for Firefox, holds the client certificates).
function nssDb(dir) {
  mkdirSync(dir, { recursive: true });
  execFileSync('certutil', ['-d', `sql:${dir}`, '-N', '--empty-password']);
  if (job.ca) execFileSync('certutil', ['-d', `sql:${dir}`, '-A', '-n', 'ambos test CA', '-t', 'C,,', '-i', job.ca]);
}

// Chromium: Playwright's proxy presents the client certificates; without
// them Chromium verifies the server itself, against the NSS database in $HOME.
async function chromiumPage(home) {
  const { chromium } = require('playwright-core');
  if (job.ca) nssDb(join(home, '.pki', 'nssdb'));
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    // Chromium's sandbox refuses to run as root (CI runs as root).
    chromiumSandbox: process.getuid() !== 0,
    env: { ...process.env, HOME: home },
  });
  const context = await browser.newContext({
    javaScriptEnabled: job.javascript !== false,
    clientCertificates: (job.clientCertificates ?? []).map((c) => ({
      origin: c.origin,
      certPath: c.certPath,
      keyPath: c.keyPath,
    })),
  });
  return { browser, page: await context.newPage() };
}

// Firefox makes every connection itself (NSS): the CA and the client
// certificates go into the profile's database, and Firefox picks the
// certificate the server asks for without a prompt.
async function firefoxPage(home) {
  const puppeteer = require('puppeteer-core');
  const profile = join(home, 'profile');
  nssDb(profile);
  for (const [i, c] of (job.clientCertificates ?? []).entries()) {
    const p12 = join(home, `client${i}.p12`);
    execFileSync('openssl', ['pkcs12', '-export', '-in', c.certPath, '-inkey', c.keyPath, '-out', p12, '-passout', 'pass:p12']);
    execFileSync('pk12util', ['-i', p12, '-d', `sql:${profile}`, '-W', 'p12']);
  }
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: '/usr/bin/firefox-esr',
    headless: true,
    userDataDir: profile,
    env: { ...process.env, HOME: home },
    extraPrefsFirefox: { 'security.default_personal_cert': 'Select Automatically' },
  });
  return { browser, page: await browser.newPage() };
}

const home = mkdtempSync(join(tmpdir(), `ambos-${firefox ? 'firefox' : 'chromium'}-`));
const result = { status: null, url: job.url, title: null, texts: [], dialogs: [], consoleErrors: [], axe: null };
let browser;
try {
  let page;
  ({ browser, page } = await (firefox ? firefoxPage(home) : chromiumPage(home)));
  // A step whose selector matches nothing fails in seconds, not the driver's 30.
  page.setDefaultTimeout(5000);
  page.on('dialog', async (d) => {
    result.dialogs.push({ type: d.type(), message: d.message() });
    await d.dismiss();
  });
  page.on('console', (m) => {
    // Chromium asks every origin for /favicon.ico by itself: not the page's error.
    if (m.type() === 'error' && !m.location()?.url?.endsWith('/favicon.ico')) result.consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => result.consoleErrors.push(String(e)));

  try {
    const response = await page.goto(job.url, { timeout: 30000 });
    result.status = response ? response.status() : null;
    // Playwright's proxy answers 503 with this text when its TLS connection
    // to the server failed (untrusted server, refused client certificate).
    const body = response && !firefox ? await response.text() : '';
    if (body.startsWith('Playwright client-certificate error')) {
      result.status = null;
      result.error = body;
    }
  } catch (e) {
    result.error = e.message.split('\n')[0];
  }
  if (result.error === undefined) {
    result.url = page.url();
    result.title = await page.title();
    for (const step of job.steps ?? []) {
      if (step.click !== undefined) {
        await page.click(step.click);
      } else if (step.fill !== undefined) {
        await page.locator(step.fill[0]).fill(step.fill[1]);
      } else if (step.submit !== undefined) {
        // A form submission navigates: wait for the next page.
        await Promise.all([page.waitForNavigation(), page.$eval(step.submit, (f) => f.requestSubmit())]);
      } else if (step.text !== undefined) {
        result.texts.push(await page.$eval(step.text, (e) => e.innerText));
      } else {
        throw new Error(`unknown step ${JSON.stringify(step)}`);
      }
    }
    result.url = page.url();
    result.title = await page.title();
    if (job.screenshot) await page.screenshot({ path: job.screenshot, fullPage: true });
    if (job.axe) {
      // Evaluated through the DevTools protocol, which the page's CSP does
      // not govern (a <script> tag would be refused under script-src 'self'):
      // the page keeps its own CSP for the whole test.
      await page.evaluate(readFileSync(axePath, 'utf8'));
      const found = await page.evaluate(() => window.axe.run());
      result.axe = {
        violations: found.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length })),
        passes: found.passes.length,
      };
    }
  }
} catch (e) {
  // certutil's and Playwright's messages go on over several lines.
  result.error = e.message.replace(/\u001b\[[0-9;]*m/g, '').replace(/\s+/g, ' ').trim();
} finally {
  if (browser) await browser.close();
  rmSync(home, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
