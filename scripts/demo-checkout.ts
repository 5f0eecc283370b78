/**
 * `npm run demo-checkout -- --port P [--processor acme] [--forward-to DESTINATION]`
 *
 * A minimal checkout backend (what MyRackspace would run) showing client-side encryption end
 * to end. It finds paylog and the dev checkout certificate from the service's own settings
 * (`PAYLOG_HOST`, `PAYLOG_PORT`, `PAYLOG_DATA_DIR` → `pki/ca.pem`, `pki/checkout.pem`,
 * `pki/checkout-key.pem`) and serves, on http://127.0.0.1:P (loopback only; a secure context for
 * WebCrypto):
 *
 *   GET  /                  card form (#pan #exp-month #exp-year #holder #cvc #pay #result
 *                           #authorization) with paylog's JWK Set and a fresh transactionId
 *                           rendered into the page
 *   GET  /paylog-encrypt.js the browser module (built from src/ with esbuild at start)
 *   GET  /checkout.js       the page's own script: encrypt in the page (the CVC too), POST /pay
 *   POST /pay               { transactionId, jwe } → POST /v1/transactions over mTLS; with
 *                           `--forward-to D`, then POST /v1/transactions/{id}/forward to the
 *                           destination D (registered by an admin for the processor), path
 *                           /v1/authorizations of the demo processor (`npm run demo-processor`),
 *                           with a JSON template of placeholders: paylog fills in the card and
 *                           the CVC, so neither ever reaches this server. `#authorization` shows
 *                           the processor's authorization code (or its decline reason).
 *
 * Every request body it receives is appended, as received, to
 * `$PAYLOG_DATA_DIR/demo-checkout-bodies.log` — so anyone can check that no card number
 * reached this server. `#result` shows the transaction id, or paylog's error code.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Agent, request as httpsRequest } from 'node:https';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.js';
import { buildPaylogEncrypt } from './build-cse.js';

export const BODIES_LOG_NAME = 'demo-checkout-bodies.log';
export const DEMO_AMOUNT = { value: 1999, currency: 'USD' } as const;
const MAX_BODY_BYTES = 16 * 1024;
/** The JWK Set is refetched after this long (a retired key still decrypts for a day). */
const JWKS_CACHE_MS = 60_000;
const PAYLOG_TIMEOUT_MS = 10_000;
/** The demo processor's authorization path (scripts/demo-processor.ts) and the body template paylog fills in. */
export const DEMO_AUTHORIZATION_PATH = '/v1/authorizations';
export const DEMO_AUTHORIZATION_TEMPLATE = JSON.stringify({
  card: { number: '{{card.number}}', cvc: '{{card.cvc}}', expiryMonth: '{{card.expiryMonth}}', expiryYear: '{{card.expiryYear}}', holderName: '{{card.holderName}}' },
  amount: { value: '{{amount.value}}', currency: '{{amount.currency}}' },
  reference: '{{transactionId}}',
});
const LOOPBACK = '127.0.0.1';

export interface DemoCheckout {
  readonly url: string;
  readonly bodiesLog: string;
  close(): Promise<void>;
}

export interface DemoOptions {
  port: number;
  processor: string;
  /** Forward each accepted transaction to this destination of the processor (the demo processor's API). */
  forwardTo?: string;
  /** paylog's settings (defaults as the service: ./data, 127.0.0.1, 8443). */
  env?: NodeJS.ProcessEnv;
}

const PAGE_SCRIPT = `import { importPaylogKey, encryptPaymentMethod, cardFromForm } from '/paylog-encrypt.js';
const cfg = JSON.parse(document.getElementById('paylog-checkout').textContent);
const result = document.getElementById('result');
const pay = document.getElementById('pay');
const keyPromise = importPaylogKey(cfg.jwks);
pay.addEventListener('click', async (ev) => {
  ev.preventDefault();
  pay.disabled = true;
  result.dataset.status = 'pending';
  result.textContent = 'encrypting…';
  try {
    const jwe = await encryptPaymentMethod(await keyPromise, cardFromForm(document), { transactionId: cfg.transactionId, processor: cfg.processor });
    document.getElementById('pan').value = '';
    document.getElementById('cvc').value = '';
    const r = await fetch('/pay', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ transactionId: cfg.transactionId, jwe }) });
    const out = await r.json();
    result.dataset.status = out.transactionId ? 'ok' : 'error';
    result.textContent = out.transactionId ?? out.error ?? 'ERROR';
    if (out.authorization) {
      const auth = document.getElementById('authorization');
      auth.dataset.status = out.authorization.status;
      auth.textContent = out.authorization.authorizationCode ?? out.authorization.reason ?? out.authorization.status;
    }
  } catch (e) {
    result.dataset.status = 'error';
    result.textContent = 'ENCRYPTION_FAILED';
  } finally {
    pay.disabled = false;
  }
});
`;

/** JSON for a `<script type="application/json">` block (no `</script>` break-out). */
const jsonForHtml = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026');

function page(cfg: { transactionId: string; processor: string; jwks: unknown }): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>paylog demo checkout</title>
<style>body{font:16px system-ui;max-width:28rem;margin:2rem auto}label{display:block;margin:.6rem 0}input{font:inherit;width:100%}</style>
<script type="application/json" id="paylog-checkout">${jsonForHtml(cfg)}</script>
<script type="module" src="/checkout.js"></script>
</head><body>
<h1>Checkout</h1>
<p>Order ${cfg.transactionId.replace(/[^A-Za-z0-9._:-]/g, '')} — ${(DEMO_AMOUNT.value / 100).toFixed(2)} ${DEMO_AMOUNT.currency}</p>
<form autocomplete="off">
<label>Card number <input id="pan" inputmode="numeric" autocomplete="cc-number"></label>
<label>Expiry month <input id="exp-month" inputmode="numeric" autocomplete="cc-exp-month"></label>
<label>Expiry year <input id="exp-year" inputmode="numeric" autocomplete="cc-exp-year"></label>
<label>Name on card <input id="holder" autocomplete="cc-name"></label>
<label>Security code <input id="cvc" inputmode="numeric" autocomplete="cc-csc" maxlength="4"></label>
<button id="pay" type="submit">Pay</button>
</form>
<p>Result: <output id="result"></output></p>
<p>Authorization: <output id="authorization"></output></p>
<p><small>The card is encrypted in this page to paylog's key; this server only ever sees the JWE.</small></p>
</body></html>
`;
}

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...SECURITY_HEADERS });
  res.end(body);
}

function readBody(req: IncomingMessage): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY_BYTES) chunks.push(c);
    });
    req.on('end', () => resolve(size > MAX_BODY_BYTES ? null : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export async function startDemoCheckout(opts: DemoOptions): Promise<DemoCheckout> {
  const cfg = loadConfig(opts.env ?? process.env);
  const pki = join(cfg.dataDir, 'pki');
  const agent = new Agent({
    ca: readFileSync(join(pki, 'ca.pem')),
    cert: readFileSync(join(pki, 'checkout.pem')),
    key: readFileSync(join(pki, 'checkout-key.pem')),
    keepAlive: true,
  });
  const paylogUrl = `https://${cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host}:${cfg.port}`;
  const bodiesLog = join(cfg.dataDir, BODIES_LOG_NAME);
  const bundle = await buildPaylogEncrypt();

  const paylog = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = httpsRequest(
        `${paylogUrl}${path}`,
        { method, agent, timeout: PAYLOG_TIMEOUT_MS, headers: payload ? { 'content-type': 'application/json', ...headers } : headers },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            let json: unknown = null;
            try {
              json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch {
              // not JSON
            }
            resolve({ status: res.statusCode ?? 0, json });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error('paylog did not answer in time')));
      req.on('error', reject);
      req.end(payload);
    });

  let jwksCache: { at: number; value: unknown } | undefined;
  const jwks = async () => {
    if (jwksCache && Date.now() - jwksCache.at < JWKS_CACHE_MS) return jwksCache.value;
    const r = await paylog('GET', '/v1/cse/jwks.json');
    if (r.status !== 200) throw new Error(`paylog JWK Set: HTTP ${r.status}`);
    jwksCache = { at: Date.now(), value: r.json };
    return r.json;
  };

  /** Forwards the authorization request through paylog; the processor's (masked) answer, or paylog's error code. */
  const authorize = async (transactionId: string, destination: string): Promise<Record<string, unknown>> => {
    const r = await paylog(
      'POST',
      `/v1/transactions/${encodeURIComponent(transactionId)}/forward`,
      { destination, method: 'POST', path: DEMO_AUTHORIZATION_PATH, headers: { 'content-type': 'application/json' }, body: DEMO_AUTHORIZATION_TEMPLATE, purpose: 'authorize', reference: transactionId },
      { 'idempotency-key': `authorize-${transactionId}` },
    );
    if (r.status !== 200) return { status: 'error', reason: r.json?.error?.code ?? `HTTP_${r.status}` };
    try {
      const answer = JSON.parse(String(r.json.body)) as { status?: unknown; authorizationCode?: unknown; reason?: unknown };
      return { status: String(answer.status ?? 'error'), ...(typeof answer.authorizationCode === 'string' ? { authorizationCode: answer.authorizationCode } : {}), ...(typeof answer.reason === 'string' ? { reason: answer.reason } : {}) };
    } catch {
      return { status: 'error', reason: `PROCESSOR_HTTP_${r.json.status}` };
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const body = await readBody(req);
    // Every body received, as received (this is what the demo exists to show).
    if (body !== null && body.length > 0) appendFileSync(bodiesLog, `${new Date().toISOString()} ${req.method} ${req.url} ${body.toString('utf8')}\n`);
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/') {
      const transactionId = `demo-${randomBytes(8).toString('hex')}`;
      return send(res, 200, 'text/html; charset=utf-8', page({ transactionId, processor: opts.processor, jwks: await jwks() }));
    }
    if (req.method === 'GET' && path === '/paylog-encrypt.js') return send(res, 200, 'text/javascript; charset=utf-8', bundle);
    if (req.method === 'GET' && path === '/checkout.js') return send(res, 200, 'text/javascript; charset=utf-8', PAGE_SCRIPT);
    if (req.method === 'POST' && path === '/pay') {
      let input: { transactionId?: unknown; jwe?: unknown } = {};
      try {
        input = JSON.parse(body?.toString('utf8') ?? '') as typeof input;
      } catch {
        return send(res, 400, 'application/json', JSON.stringify({ error: 'BAD_REQUEST' }));
      }
      const r = await paylog('POST', '/v1/transactions', {
        transactionId: input.transactionId,
        processor: opts.processor,
        amount: DEMO_AMOUNT,
        paymentMethod: { type: 'encrypted', jwe: input.jwe },
        metadata: { source: 'demo-checkout' },
      });
      const out: Record<string, unknown> = r.status === 200 || r.status === 201 ? { transactionId: r.json.transactionId, logIndex: r.json.logIndex } : { error: r.json?.error?.code ?? `HTTP_${r.status}` };
      if (opts.forwardTo !== undefined && typeof out.transactionId === 'string') out.authorization = await authorize(out.transactionId, opts.forwardTo);
      return send(res, r.status, 'application/json', JSON.stringify(out));
    }
    return send(res, 404, 'text/plain', 'not found');
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) send(res, 502, 'application/json', JSON.stringify({ error: 'PAYLOG_UNREACHABLE' }));
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, LOOPBACK, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${LOOPBACK}:${port}`,
    bodiesLog,
    close: async () => {
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      agent.destroy();
      await closed;
    },
  };
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { port: { type: 'string' }, processor: { type: 'string', default: 'acme' }, 'forward-to': { type: 'string' } } });
  const port = Number(values.port);
  if (values.port === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
    console.error('usage: npm run demo-checkout -- --port P [--processor acme] [--forward-to DESTINATION]');
    process.exit(2);
  }
  const forwardTo = values['forward-to'];
  const demo = await startDemoCheckout({ port, processor: values.processor ?? 'acme', ...(forwardTo !== undefined ? { forwardTo } : {}) }).catch((e: unknown) => {
    console.error(`demo checkout could not start: ${(e as Error).message}`);
    console.error('is paylog running (npm start) with the same PAYLOG_DATA_DIR / PAYLOG_HOST / PAYLOG_PORT?');
    process.exit(1);
  });
  console.log(`demo checkout listening on ${demo.url} (processor ${values.processor}); request bodies → ${demo.bodiesLog}`);
  const stop = () => void demo.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
