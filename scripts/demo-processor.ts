/**
 * `npm run demo-processor -- --port P [--dir DIR]`
 *
 * A small processor authorization API (a stand-in for Adyen, Stripe, a bank gateway) for the
 * forwarding demo (issue 18 item 6). HTTPS on loopback only, with its own development CA, kept in
 * DIR (default `$PAYLOG_DATA_DIR/demo-processor`): `ca.pem` is what a destination registers as its
 * `caPem`. It keeps nothing it receives (no card data is written anywhere).
 *
 *   POST /v1/authorizations   JSON {"card": {"number", "cvc", "expiryMonth", "expiryYear",
 *                             "holderName"?}, "amount": {"value", "currency"}, "reference"?}
 *                             or form-urlencoded (card_number, card_cvc, exp_month, exp_year,
 *                             amount, currency, reference)
 *     200 {"status": "authorized", "authorizationCode": "…", "card": {"number": <echoed>,
 *          "last4"}, "amount", "reference"}  — the card number is echoed on purpose, so paylog's
 *          response masking shows;
 *     402 {"status": "declined", "reason": "invalid_card_number" | "card_expired" | "cvc_missing"}
 *     400 {"status": "error", "reason": "bad_request"}
 *   GET /healthz → 200 "ok"
 *
 * Checks: Luhn (paylog's one PAN detector's `luhnValid`), expiry (end of month, UTC) not passed,
 * CVC present (3–4 digits).
 */
import { existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.js';
import { createCa, issueServerCertificate } from '../src/pki/ca.js';
import { luhnValid } from '../src/validation/identifiers.js';

export const DEMO_PROCESSOR_DIR = 'demo-processor';
export const AUTHORIZATIONS_PATH = '/v1/authorizations';
const MAX_BODY_BYTES = 16 * 1024;
const LOOPBACK = '127.0.0.1';
const CARD_NUMBER = /^[0-9]{12,19}$/;
const CVC = /^[0-9]{3,4}$/;

export interface DemoProcessor {
  readonly url: string;
  /** PEM of the CA that issued its server certificate (a destination's `caPem`). */
  readonly caPem: string;
  readonly caPath: string;
  close(): Promise<void>;
}

/** What an authorization request carries, from JSON or form fields. */
interface AuthorizationInput {
  number: string;
  cvc: string;
  expiryMonth: number;
  expiryYear: number;
  amount: { value: number; currency: string };
  reference?: string;
}

function fromJson(text: string): AuthorizationInput | null {
  const b = JSON.parse(text) as { card?: Record<string, unknown>; amount?: { value?: unknown; currency?: unknown }; reference?: unknown };
  if (!b.card || !b.amount) return null;
  return {
    number: String(b.card.number ?? ''),
    cvc: String(b.card.cvc ?? ''),
    expiryMonth: Number(b.card.expiryMonth),
    expiryYear: Number(b.card.expiryYear),
    amount: { value: Number(b.amount.value), currency: String(b.amount.currency ?? '') },
    ...(typeof b.reference === 'string' ? { reference: b.reference } : {}),
  };
}

function fromForm(text: string): AuthorizationInput {
  const f = new URLSearchParams(text);
  const ref = f.get('reference');
  return {
    number: f.get('card_number') ?? '',
    cvc: f.get('card_cvc') ?? '',
    expiryMonth: Number(f.get('exp_month')),
    expiryYear: Number(f.get('exp_year')),
    amount: { value: Number(f.get('amount')), currency: f.get('currency') ?? '' },
    ...(ref !== null ? { reference: ref } : {}),
  };
}

/** The decline reason, or null when the authorization is approved. */
export function declineReason(a: AuthorizationInput, now: Date): string | null {
  if (!CARD_NUMBER.test(a.number) || !luhnValid(a.number)) return 'invalid_card_number';
  const year = a.expiryYear < 100 ? 2000 + a.expiryYear : a.expiryYear;
  if (!Number.isInteger(a.expiryMonth) || a.expiryMonth < 1 || a.expiryMonth > 12 || !Number.isInteger(year)) return 'card_expired';
  if (Date.UTC(year, a.expiryMonth, 1) <= now.getTime()) return 'card_expired';
  if (!CVC.test(a.cvc)) return 'cvc_missing';
  return null;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<string | null> {
  return new Promise((done, fail) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY_BYTES) chunks.push(c);
    });
    req.on('end', () => done(size > MAX_BODY_BYTES ? null : Buffer.concat(chunks).toString('utf8')));
    req.on('error', fail);
  });
}

/** The CA and server certificate in `dir`, created on first start (kept, so a registered `caPem` stays valid). */
function loadOrCreateTls(dir: string): { caPem: string; caPath: string; certPem: string; keyPem: string } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caPath = join(dir, 'ca.pem');
  const certPath = join(dir, 'server.pem');
  const keyPath = join(dir, 'server-key.pem');
  if (!existsSync(caPath) || !existsSync(certPath) || !existsSync(keyPath)) {
    const ca = createCa({ commonName: 'paylog demo processor CA (development only)' });
    const server = issueServerCertificate(ca, [LOOPBACK, 'localhost']);
    writeFileSync(certPath, server.certPem, { mode: 0o600 });
    writeFileSync(keyPath, server.keyPem, { mode: 0o600 });
    writeFileSync(caPath, ca.certPem, { mode: 0o644 });
  }
  return { caPem: readFileSync(caPath, 'utf8'), caPath, certPem: readFileSync(certPath, 'utf8'), keyPem: readFileSync(keyPath, 'utf8') };
}

export async function startDemoProcessor(opts: { port: number; dir?: string; env?: NodeJS.ProcessEnv }): Promise<DemoProcessor> {
  const dir = opts.dir ?? join(loadConfig(opts.env ?? process.env).dataDir, DEMO_PROCESSOR_DIR);
  const tls = loadOrCreateTls(dir);
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') return send(res, 200, 'ok');
    if (req.method !== 'POST' || path !== AUTHORIZATIONS_PATH) return send(res, 404, { status: 'error', reason: 'not_found' });
    const text = await readBody(req);
    let input: AuthorizationInput | null = null;
    try {
      if (text !== null) input = (req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded') ? fromForm(text) : fromJson(text);
    } catch {
      input = null;
    }
    if (!input) return send(res, 400, { status: 'error', reason: 'bad_request' });
    const reason = declineReason(input, new Date());
    if (reason !== null) return send(res, 402, { status: 'declined', reason });
    return send(res, 200, {
      status: 'authorized',
      authorizationCode: randomBytes(3).toString('hex').toUpperCase(),
      card: { number: input.number, last4: input.number.slice(-4) },
      amount: input.amount,
      ...(input.reference !== undefined ? { reference: input.reference } : {}),
    });
  };
  const server: Server = createServer({ cert: tls.certPem, key: tls.keyPem, minVersion: 'TLSv1.2' }, (req, res) => {
    handle(req, res).catch(() => (res.headersSent ? res.destroy() : send(res, 500, { status: 'error', reason: 'internal' })));
  });
  await new Promise<void>((done, fail) => {
    server.once('error', fail);
    server.listen(opts.port, LOOPBACK, () => done());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://${LOOPBACK}:${port}`,
    caPem: tls.caPem,
    caPath: tls.caPath,
    close: async () => {
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await closed;
    },
  };
}

// Run as a script (also through a symlinked checkout: compared as real paths).
if (process.argv[1] !== undefined && realpathSync(resolve(process.argv[1])) === realpathSync(fileURLToPath(import.meta.url))) {
  const { values } = parseArgs({ options: { port: { type: 'string' }, dir: { type: 'string' } } });
  const port = Number(values.port);
  if (values.port === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
    console.error('usage: npm run demo-processor -- --port P [--dir DIR]');
    process.exit(2);
  }
  const demo = await startDemoProcessor({ port, ...(values.dir !== undefined ? { dir: resolve(values.dir) } : {}) }).catch((e: unknown) => {
    console.error(`demo processor could not start: ${(e as Error).message}`);
    process.exit(1);
  });
  console.log(`demo processor listening on ${demo.url} (POST ${AUTHORIZATIONS_PATH}); its CA: ${demo.caPath}`);
  const stop = () => void demo.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
