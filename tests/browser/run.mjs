// Runs one browser job in Debian's headless Chromium and prints one JSON result.
//   node tests/browser/run.mjs '{"url": "https://localhost:8443/", "ca": "ca.pem", ...}'
// (or the job on stdin). The job:
//   url                 the page to load
//   ca                  PEM file of the CA that must have signed the server's certificate
//   clientCertificates  [{origin, certPath, keyPath}] (Playwright's context option)
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
if (job.ca && process.env.NODE_EXTRA_CA_CERTS !== job.ca) {
  const again = spawnSync(process.execPath, [fileURLToPath(import.meta.url), jobText], {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: job.ca },
    stdio: 'inherit',
  });
  process.exit(again.status ?? 1);
}

const require = createRequire(join(here, 'package.json'));
const { chromium } = require('playwright-core');
const axePath = require.resolve('axe-core/axe.min.js');

// Without client certificates Chromium verifies the server itself, against
// the NSS database in $HOME: a throwaway one that trusts only the test CA.
const home = mkdtempSync(join(tmpdir(), 'ambos-chromium-'));
const result = { status: null, url: job.url, title: null, texts: [], dialogs: [], consoleErrors: [], axe: null };
let browser;
try {
  if (job.ca) {
    const db = join(home, '.pki', 'nssdb');
    mkdirSync(db, { recursive: true });
    execFileSync('certutil', ['-d', `sql:${db}`, '-N', '--empty-password']);
    execFileSync('certutil', ['-d', `sql:${db}`, '-A', '-n', 'ambos test CA', '-t', 'C,,', '-i', job.ca]);
  }
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    // Chromium's sandbox refuses to run as root (CI runs as root).
    chromiumSandbox: process.getuid() !== 0,
    env: { ...process.env, HOME: home },
  });
  const context = await browser.newContext({
    clientCertificates: (job.clientCertificates ?? []).map((c) => ({
      origin: c.origin,
      certPath: c.certPath,
      keyPath: c.keyPath,
    })),
  });
  // A step whose selector matches nothing fails in seconds, not Playwright's 30.
  context.setDefaultTimeout(5000);
  const page = await context.newPage();
  page.on('dialog', async (d) => {
    result.dialogs.push({ type: d.type(), message: d.message() });
    await d.dismiss();
  });
  page.on('console', (m) => {
    // Chromium asks every origin for /favicon.ico by itself: not the page's error.
    if (m.type() === 'error' && !m.location().url?.endsWith('/favicon.ico')) result.consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => result.consoleErrors.push(String(e)));

  try {
    const response = await page.goto(job.url, { timeout: 30000 });
    result.status = response ? response.status() : null;
    // Playwright's proxy answers 503 with this text when its TLS connection
    // to the server failed (untrusted server, refused client certificate).
    const body = response ? await response.text() : '';
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
        await page.fill(step.fill[0], step.fill[1]);
      } else if (step.submit !== undefined) {
        // A form submission navigates: wait for the next page.
        await Promise.all([page.waitForNavigation(), page.locator(step.submit).evaluate((f) => f.requestSubmit())]);
      } else if (step.text !== undefined) {
        result.texts.push(await page.locator(step.text).first().innerText());
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
