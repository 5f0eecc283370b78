/**
 * Section "cse": client-side encrypted vs plaintext `POST /v1/transactions`, same service, same
 * run, same concurrency, interleaved repetitions; and the KMS calls client-side encryption adds
 * per 10,000 encrypted submissions.
 *
 * Encrypted bodies are JWEs made BEFORE each timed run with the browser module itself
 * (src/cse/browser/paylog-encrypt.ts on Node's WebCrypto) against the service's published JWK
 * Set, so the load generator's encryption cost stays out of the measured window (a browser
 * encrypts once per checkout, not in paylog's hot path). Each run sends a fixed number of
 * requests (autocannon `amount`), every one a unique transactionId.
 *
 * KMS calls: `paylog_cse_key_loads_total` from /metrics (one KMS Decrypt per CSE key load; the
 * key's creation on the first JWK Set fetch adds one GenerateDataKey), counted from before the
 * first JWK Set fetch; when `paylog_kms_requests_total` exists it is reported too (all KMS calls,
 * envelope included).
 */
import { request as httpsRequest } from 'node:https';
import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';
import { median, type BenchContext, type BenchSection, type Cell, type SectionResult } from './core.js';
import type { ServiceHandle } from './service.js';
import { BENCH_TEST_PAN } from './throughput.js';
import { encryptPaymentMethod, importPaylogKey } from '../../src/cse/browser/paylog-encrypt.js';

export const CSE_PROFILES = {
  quick: { concurrency: 32, requests: 1500, reps: 1 },
  full: { concurrency: 32, requests: 5000, reps: 3 },
} as const;
const REQUEST_TIMEOUT_S = 30;

function get(service: ServiceHandle, path: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const tls = service.checkoutTls;
    const req = httpsRequest(`${service.url}${path}`, { ca: tls.ca, cert: tls.cert, key: tls.key }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Sum of a counter over all its label sets in a Prometheus text exposition (null: absent). */
function counterSum(metricsText: string, name: string): number | null {
  let sum = 0;
  let seen = false;
  for (const line of metricsText.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) {
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
      seen = true;
    }
  }
  return seen ? sum : null;
}

async function counters(service: ServiceHandle): Promise<{ cseLoads: number | null; kms: number | null }> {
  const r = await service.get('/metrics');
  return { cseLoads: counterSum(r.text, 'paylog_cse_key_loads_total'), kms: counterSum(r.text, 'paylog_kms_requests_total') };
}

const expiryYear = new Date().getUTCFullYear() + 3;
const card = { type: 'card', pan: BENCH_TEST_PAN, expiryMonth: 12, expiryYear, holderName: 'Bench Tester' } as const;

function body(id: string, paymentMethod: unknown): string {
  return JSON.stringify({ transactionId: id, processor: 'acme', amount: { value: 1299, currency: 'USD' }, paymentMethod, metadata: { invoice: 'BENCH' } });
}

async function run(service: ServiceHandle, bodies: string[], concurrency: number): Promise<{ rps: number; ok: number; non2xx: number; p50: number; p99: number }> {
  let i = 0;
  const r = await autocannon({
    url: `${service.url}/v1/transactions`,
    connections: concurrency,
    amount: bodies.length,
    timeout: REQUEST_TIMEOUT_S,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    tlsOptions: { ca: service.checkoutTls.ca, cert: service.checkoutTls.cert, key: service.checkoutTls.key },
    requests: [{ setupRequest: (req) => ({ ...req, body: bodies[i++ % bodies.length]! }) }],
  });
  return { rps: r['2xx'] / r.duration, ok: r['2xx'], non2xx: r.non2xx + r.errors + r.timeouts, p50: r.latency.p50, p99: r.latency.p99 };
}

async function runCse(ctx: BenchContext): Promise<SectionResult> {
  const service = ctx.service;
  if (!service) throw new Error('cse section needs the paylog child process');
  const p = CSE_PROFILES[ctx.profile];
  const start = await counters(service);
  const jwks = await get(service, '/v1/cse/jwks.json');
  if (jwks.status !== 200) throw new Error(`/v1/cse/jwks.json answered ${jwks.status}`);
  const key = await importPaylogKey(JSON.parse(jwks.text));

  const runId = randomBytes(4).toString('hex');
  const plain: Array<Awaited<ReturnType<typeof run>>> = [];
  const enc: Array<Awaited<ReturnType<typeof run>>> = [];
  let encryptedOk = 0;
  let encryptMsPerBody = 0;
  /** All KMS calls during the encrypted runs only (plaintext runs are interleaved). */
  let kmsDuringEncrypted: number | null = null;
  for (let rep = 0; rep < p.reps; rep++) {
    ctx.progress(`cse: rep ${rep + 1}/${p.reps}: plaintext, ${p.requests} requests at concurrency ${p.concurrency}`);
    plain.push(await run(service, Array.from({ length: p.requests }, (_, n) => body(`bench-cse-${runId}-p${rep}-${n.toString(36)}`, card)), p.concurrency));
    ctx.progress(`cse: rep ${rep + 1}/${p.reps}: encrypting ${p.requests} JWEs (outside the timed window)`);
    const t0 = performance.now();
    const bodies: string[] = [];
    for (let n = 0; n < p.requests; n++) {
      const id = `bench-cse-${runId}-e${rep}-${n.toString(36)}`;
      bodies.push(body(id, { type: 'encrypted', jwe: await encryptPaymentMethod(key, card, { transactionId: id, processor: 'acme' }) }));
    }
    encryptMsPerBody = (performance.now() - t0) / p.requests;
    ctx.progress(`cse: rep ${rep + 1}/${p.reps}: encrypted, ${p.requests} requests at concurrency ${p.concurrency}`);
    const before = await counters(service);
    const r = await run(service, bodies, p.concurrency);
    const after = await counters(service);
    kmsDuringEncrypted = before.kms === null || after.kms === null ? null : (kmsDuringEncrypted ?? 0) + after.kms - before.kms;
    enc.push(r);
    encryptedOk += r.ok;
  }
  const end = await counters(service);
  const per10k = (a: number | null, b: number | null) => (a === null || b === null || encryptedOk === 0 ? null : ((b - a) / encryptedOk) * 10_000);

  const figures = {
    plaintext_rps: median(plain.map((r) => r.rps)),
    encrypted_rps: median(enc.map((r) => r.rps)),
    plaintext_p50_ms: median(plain.map((r) => r.p50)),
    encrypted_p50_ms: median(enc.map((r) => r.p50)),
    encrypted_non2xx: enc.reduce((a, r) => a + r.non2xx, 0),
    plaintext_non2xx: plain.reduce((a, r) => a + r.non2xx, 0),
    cse_key_loads_per_10k: per10k(start.cseLoads, end.cseLoads),
    kms_requests_per_10k_all: per10k(0, kmsDuringEncrypted),
    client_encrypt_ms: encryptMsPerBody,
    encrypted_over_plaintext: null as number | null,
  };
  figures.encrypted_over_plaintext = figures.plaintext_rps > 0 ? figures.encrypted_rps / figures.plaintext_rps : null;
  const table: Cell[][] = [
    ['submission', 'req/s (2xx, median)', 'p50 ms', 'p99 ms (median)', 'non-2xx'],
    ['plaintext card', figures.plaintext_rps, figures.plaintext_p50_ms, median(plain.map((r) => r.p99)), figures.plaintext_non2xx],
    ['JWE (ECDH-ES/A256GCM)', figures.encrypted_rps, figures.encrypted_p50_ms, median(enc.map((r) => r.p99)), figures.encrypted_non2xx],
  ];
  const notes = [
    `encrypted ÷ plaintext throughput: ${figures.encrypted_over_plaintext?.toFixed(2) ?? '?'} (concurrency ${p.concurrency}, ${p.requests} requests per run, ${p.reps} interleaved rep(s))`,
    `KMS calls for client-side encryption per 10,000 encrypted submissions: ${figures.cse_key_loads_per_10k?.toFixed(2) ?? '?'} CSE key loads (KMS Decrypt; + 1 GenerateDataKey when the key is created), counted from before the first JWK Set fetch over ${encryptedOk} encrypted submissions`,
    figures.kms_requests_per_10k_all === null
      ? 'all KMS calls: paylog_kms_requests_total not exposed by this build; the envelope adds what a plaintext submission costs (same code path)'
      : `all KMS calls (paylog_kms_requests_total, envelope included) per 10,000 encrypted submissions: ${figures.kms_requests_per_10k_all.toFixed(1)}`,
    `client-side encryption in the load generator (Node WebCrypto, not timed above): ${encryptMsPerBody.toFixed(3)} ms per JWE`,
  ];
  return { table, figures, notes, details: { profile: p, plain, enc } };
}

export const cseSection: BenchSection = {
  id: 'cse',
  title: '1b. Client-side encryption — JWE vs plaintext POST /v1/transactions (same service, same run)',
  needs: 'service',
  run: runCse,
};
