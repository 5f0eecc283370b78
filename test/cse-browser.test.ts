/**
 * Client-side encryption in a real browser: Debian's Chromium (/usr/bin/chromium, never a
 * downloaded build) driven by playwright-core through `npm run demo-checkout`: type a card,
 * pay, then check that the checkout backend never received the card number and that processor
 * acme's release returns exactly what was typed.
 *
 * Without Chromium this file skips and says why; under CI=true a missing Chromium fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type BrowserContext } from 'playwright-core';
import { startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { decodeLeaf } from '../src/log/leaf.js';

export const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const DEMO_START_TIMEOUT_MS = 60_000;
const haveChromium = existsSync(CHROMIUM);
const inCi = process.env['CI'] === 'true';

if (!haveChromium && !inCi) {
  console.warn(`SKIPPED test/cse-browser.test.ts: ${CHROMIUM} not found (install it with: apt-get install -y chromium). Under CI=true this is a failure.`);
}

describe('client-side encryption in Chromium', () => {
  if (!haveChromium && inCi) {
    it('needs Chromium under CI=true', () => {
      throw new Error(`CI=true but ${CHROMIUM} is missing: .ci/run must apt-get install chromium`);
    });
    return;
  }
  if (!haveChromium) {
    it.skip(`skipped: ${CHROMIUM} not found (apt-get install -y chromium)`, () => {});
    return;
  }

  let t: TestPaylog;
  let demo: ChildProcess | undefined;
  let demoUrl = '';
  let profile = '';
  let browser: BrowserContext | undefined;

  beforeAll(async () => {
    t = await startTestPaylog();
    const env: NodeJS.ProcessEnv = { ...process.env, PAYLOG_DATA_DIR: t.dataDir, PAYLOG_HOST: '127.0.0.1', PAYLOG_PORT: String(t.paylog.port) };
    delete env['DATABASE_URL'];
    delete env['AWS_REGION'];
    delete env['AWS_ENDPOINT_URL_KMS'];
    demo = spawn('node_modules/.bin/tsx', ['scripts/demo-checkout.ts', '--port', '0', '--processor', 'acme'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    demoUrl = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`demo checkout did not start: ${out}`)), DEMO_START_TIMEOUT_MS);
      const onData = (d: Buffer) => {
        out += d.toString('utf8');
        const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      };
      demo!.stdout!.on('data', onData);
      demo!.stderr!.on('data', onData);
      demo!.once('exit', (code) => reject(new Error(`demo checkout exited (${code}): ${out}`)));
    });
    profile = mkdtempSync(join(tmpdir(), 'paylog-chromium-'));
    browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
  });

  afterAll(async () => {
    await browser?.close();
    if (demo && demo.exitCode === null) {
      const exited = new Promise((r) => demo!.once('exit', r));
      demo.kill('SIGTERM');
      await exited;
    }
    if (profile) rmSync(profile, { recursive: true, force: true });
    await t?.stop();
  });

  it('type a card, pay: the checkout backend sees only a JWE, acme releases exactly what was typed', async () => {
    const typed = { pan: '4111111111111111', expiryMonth: 11, expiryYear: new Date().getUTCFullYear() + 2, holderName: 'Zoë Q Müller-Testcard' };
    const page = await browser!.newPage();
    await page.goto(`${demoUrl}/`);
    await page.locator('#pan').pressSequentially(typed.pan);
    await page.locator('#exp-month').fill(String(typed.expiryMonth));
    await page.locator('#exp-year').fill(String(typed.expiryYear));
    await page.locator('#holder').fill(typed.holderName);
    await page.locator('#pay').click();
    await page.waitForSelector('#result[data-status="ok"], #result[data-status="error"]', { timeout: 30_000 });
    const result = (await page.locator('#result').textContent()) ?? '';
    expect(await page.locator('#result').getAttribute('data-status'), result).toBe('ok');
    expect(result).toMatch(/^demo-[0-9a-f]{16}$/);

    const bodies = readFileSync(join(t.dataDir, 'demo-checkout-bodies.log'), 'utf8');
    expect(bodies).toContain(result);
    expect(bodies).toMatch(/"jwe":"[A-Za-z0-9_-]+\.\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"/);
    expect(bodies.replace(/[\s-]/g, '')).not.toContain(typed.pan);

    const rel = await t.call('processor-acme', 'POST', `/v1/transactions/${result}/release`, { purpose: 'authorize' });
    expect(rel.status).toBe(200);
    expect(rel.json.paymentMethod).toEqual({ type: 'card', ...typed });
    expect(t.logLines.join('\n')).not.toContain(typed.pan);

    // The log records that it arrived client-side encrypted, and under which key.
    const jwks = await t.call('checkout', 'GET', '/v1/cse/jwks.json');
    const tx = await t.call('auditor', 'GET', `/v1/transactions/${result}`);
    const entry = await t.call('auditor', 'GET', `/v1/log/entries?start=${tx.json.logIndex}&end=${tx.json.logIndex + 1}`);
    const leaf = decodeLeaf(Buffer.from(entry.json.entries[0].leaf, 'base64')) as { cse?: { kid: string } };
    expect(leaf.cse).toEqual({ kid: jwks.json.keys[0].kid });
    await page.close();
  });
});
