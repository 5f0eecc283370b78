/**
 * Forward to the processor (issue 18): a real HTTPS destination on loopback (its own CA), real
 * mTLS to paylog with the dev certificates, real PostgreSQL and the local KMS endpoint. The
 * destination counts what it receives, so "nothing was sent" is a count of zero.
 */
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { randomBytes, X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cardTransaction, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { query } from './helpers/db.js';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'undici';
import { createCa, issuePrincipalCertificate, issueServerCertificate } from '../src/pki/ca.js';
import { accessLeafV2, decodeLeaf, encodeLeaf } from '../src/log/leaf.js';
import { spkiPin } from '../src/net/forward-egress.js';
import { LogClient, formatReport, toNoteVerifiers, verifyRemoteLog } from '../src/audit/index.js';

const PAN = '4111111111111111';

interface Hit {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** An HTTPS "processor" on 127.0.0.1 with its own CA; answers by path. */
async function startDestination(): Promise<{ server: Server; port: number; caPem: string; certPem: string; hits: Hit[]; close(): Promise<void> }> {
  const ca = createCa({ commonName: 'test processor CA' });
  const leaf = issueServerCertificate(ca, ['localhost', '127.0.0.1']);
  const hits: Hit[] = [];
  const server = createServer({ key: leaf.keyPem, cert: leaf.certPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      hits.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const url = req.url ?? '';
      if (url.startsWith('/v1/redirect')) return void res.writeHead(302, { location: '/v1/payments' }).end();
      if (url.startsWith('/v1/slow')) return void setTimeout(() => res.writeHead(200).end('{}'), 8000);
      // A NUL byte in the body (U+0000 once decoded), beside an echoed card number.
      if (url.startsWith('/v1/nul')) return void res.writeHead(201, { 'content-type': 'application/json', 'x-request-id': 'req-nul' }).end(Buffer.from(`{"status":"authorized","echoed":"${PAN}","note":"a\u0000b"}\u0000`, 'utf8'));
      if (url.startsWith('/v1/gzip')) {
        // A PAN plain, JSON-escaped, and in a header; gzip-compressed.
        const text = JSON.stringify({ echoed: PAN, escaped: 'X' }).replace('"X"', '"\\u0034\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031"');
        return void res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'x-request-id': `req-${PAN}` }).end(gzipSync(text));
      }
      res.writeHead(201, { 'content-type': 'application/json', 'set-cookie': 'secret=1' }).end(JSON.stringify({ status: 'authorized', authorizationCode: 'A1B2C3', received: body }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    caPem: ca.certPem,
    certPem: leaf.certPem,
    hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let t: TestPaylog;
let dest: Awaited<ReturnType<typeof startDestination>>;

async function register(processor: string, name: string, body: Record<string, unknown>) {
  const r = await t.call('admin', 'PUT', `/v1/admin/processors/${processor}/destinations/${name}`, body);
  expect(r.status, r.text).toBe(200);
  return r.json;
}

async function submit(overrides: Record<string, unknown> = {}): Promise<string> {
  const body = cardTransaction(overrides);
  const r = await t.call('checkout', 'POST', '/v1/transactions', body);
  expect(r.status, r.text).toBe(201);
  return body.transactionId as string;
}

const JSON_TEMPLATE = '{"amount":{{amount.value}},"currency":"{{amount.currency}}","card":{"number":"{{card.number}}","exp_month":"{{card.expiryMonth}}","exp_year":{{card.expiryYear}},"name":"{{card.holderName}}"},"ref":"{{transactionId}}"}';

function forward(id: string, body: Record<string, unknown>, key = randomBytes(8).toString('hex')) {
  return t.call('checkout', 'POST', `/v1/transactions/${id}/forward`, { method: 'POST', purpose: 'authorize', ...body }, { headers: { 'idempotency-key': key } });
}

async function leafAt(index: number) {
  const [r] = await query<{ leaf: Buffer }>(t.databaseUrl, 'SELECT leaf FROM log_entries WHERE idx = $1', [index]);
  return decodeLeaf(r!.leaf);
}

beforeAll(async () => {
  t = await startTestPaylog();
  dest = await startDestination();
  await register('acme', 'payments', { url: `https://localhost:${dest.port}`, paths: ['/v1/payments', '/v1/redirect', '/v1/slow', '/v1/gzip', '/v1/nul', '/v1/payments/*/captures'], caPem: dest.caPem, allowPrivateNetwork: true, timeoutMs: 4000 });
  await register('globex', 'payments', { url: `https://localhost:${dest.port}`, paths: ['/v1/payments'], caPem: dest.caPem, allowPrivateNetwork: true });
});
afterAll(async () => {
  await dest?.close();
  await t?.stop();
});

describe('forward: templates filled and sent once, answers masked', () => {
  it('JSON template: the destination gets the card data encoded as JSON; the answer echoing the card number comes back masked; access entry before, result entry after', async () => {
    const id = await submit();
    const before = dest.hits.length;
    const r = await forward(id, { destination: 'payments', path: '/v1/payments', headers: { 'content-type': 'application/json', authorization: 'Bearer sk_test_123' }, body: JSON_TEMPLATE });
    expect(r.status, r.text).toBe(200);
    expect(dest.hits.length).toBe(before + 1);
    const hit = dest.hits.at(-1)!;
    const sent = JSON.parse(hit.body);
    expect(sent.card.number).toBe(PAN);
    expect(sent.amount).toBe(12345);
    expect(sent.card.exp_month).toBe('12');
    expect(sent.card.exp_year).toBe(new Date().getUTCFullYear() + 3);
    expect(sent.ref).toBe(id);
    expect(hit.headers.authorization).toBe('Bearer sk_test_123');
    expect(r.json.status).toBe(201);
    expect(r.text).not.toContain(PAN);
    expect(r.json.masked).toBeGreaterThanOrEqual(1);
    expect(r.json.headers['set-cookie']).toBeUndefined();
    expect(JSON.parse(r.json.body).authorizationCode).toBe('A1B2C3');
    // The log: access (granted, template digest) then result; neither holds card data.
    expect(r.json.resultLogIndex).toBeGreaterThan(r.json.accessLogIndex);
    const access = await leafAt(r.json.accessLogIndex);
    expect(access).toMatchObject({ type: 'access', action: 'forward', outcome: 'granted', fwd: { dest: 'payments', method: 'POST', path: '/v1/payments' } });
    const result = await leafAt(r.json.resultLogIndex);
    expect(result).toMatchObject({ type: 'forward_result', access: r.json.accessLogIndex, outcome: 'completed', status: 201 });
    const raw = await query<{ leaf: Buffer }>(t.databaseUrl, 'SELECT leaf FROM log_entries WHERE idx IN ($1, $2)', [r.json.accessLogIndex, r.json.resultLogIndex]);
    for (const l of raw) {
      expect(l.leaf.toString('latin1')).not.toContain(PAN);
      expect(l.leaf.toString('latin1')).not.toContain('sk_test_123');
    }
    // The caller's API key is stored nowhere.
    const stored = await query<{ answer: unknown }>(t.databaseUrl, 'SELECT answer FROM forward_requests WHERE transaction_id = $1', [id]);
    expect(JSON.stringify(stored)).not.toContain('sk_test_123');
    expect(JSON.stringify(stored)).not.toContain(PAN);
    expect(t.logLines.join('\n')).not.toContain('sk_test_123');
    // Listed for the checkout and the auditor.
    const list = await t.call('auditor', 'GET', `/v1/transactions/${id}/forwards`);
    expect(list.status, list.text).toBe(200);
    expect(list.json.forwards).toHaveLength(1);
    expect(list.json.forwards[0]).toMatchObject({ accessLogIndex: r.json.accessLogIndex, destination: 'payments', outcome: 'granted', result: { logIndex: r.json.resultLogIndex, outcome: 'completed', status: 201 } });
    expect((await t.call('processor-acme', 'GET', `/v1/transactions/${id}/forwards`)).status).toBe(403);
  });

  it('injection through the holder name (" </x> & {{card.number}}) stays a value in JSON, form and XML templates', async () => {
    const holder = 'Jane "</x>&amp; {{card.number}} \' =&x=1';
    const id = await submit({ paymentMethod: { ...cardTransaction().paymentMethod, holderName: holder } });
    const j = await forward(id, { destination: 'payments', path: '/v1/payments', headers: { 'content-type': 'application/json' }, body: '{"name":"{{card.holderName}}","n":"{{card.number}}"}' });
    expect(j.status, j.text).toBe(200);
    expect(JSON.parse(dest.hits.at(-1)!.body)).toEqual({ name: holder, n: PAN });

    const f = await forward(id, { destination: 'payments', path: '/v1/payments', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'name={{card.holderName}}&number={{card.number}}&exp={{card.expiryMonth}}%2F{{card.expiryYear2}}' });
    expect(f.status, f.text).toBe(200);
    const form = new URLSearchParams(dest.hits.at(-1)!.body);
    expect([...form.keys()]).toEqual(['name', 'number', 'exp']);
    expect(form.get('name')).toBe(holder);
    expect(form.get('number')).toBe(PAN);
    expect(form.get('exp')).toBe(`12/${String(new Date().getUTCFullYear() + 3).slice(-2)}`);

    const x = await forward(id, { destination: 'payments', path: '/v1/payments', headers: { 'content-type': 'application/xml' }, body: '<?xml version="1.0"?><auth><card holder="{{card.holderName}}"><number>{{card.number}}</number></card><name>{{card.holderName}}</name></auth>' });
    expect(x.status, x.text).toBe(200);
    const xml = dest.hits.at(-1)!.body;
    expect(xml).toBe(
      `<?xml version="1.0"?><auth><card holder="Jane &quot;&lt;/x&gt;&amp;amp; {{card.number}} &apos; =&amp;x=1"><number>${PAN}</number></card><name>Jane &quot;&lt;/x&gt;&amp;amp; {{card.number}} &apos; =&amp;x=1</name></auth>`,
    );
    // A template with a DTD is refused before anything is sent.
    const before = dest.hits.length;
    const dtd = await forward(id, { destination: 'payments', path: '/v1/payments', headers: { 'content-type': 'application/xml' }, body: '<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><a>&e;{{card.number}}</a>' });
    expect(dtd.status).toBe(422);
    expect(dtd.json.error.code).toBe('TEMPLATE_INVALID');
    expect(dest.hits.length).toBe(before);
  });

  it('a retried Idempotency-Key sends once and returns the recorded answer; the same key with another body is 409', async () => {
    const id = await submit();
    const body = { destination: 'payments', path: '/v1/payments', headers: { 'content-type': 'application/json' }, body: JSON_TEMPLATE };
    const before = dest.hits.length;
    const [a, b] = await Promise.all([forward(id, body, 'key-1'), forward(id, body, 'key-1')]);
    const c = await forward(id, body, 'key-1');
    expect(dest.hits.length - before).toBe(1);
    for (const r of [a, b, c]) expect(r.status, r.text).toBe(200);
    expect(b.json).toEqual(a.json);
    expect(c.json).toEqual(a.json);
    const other = await forward(id, { ...body, path: '/v1/payments/x/captures' }, 'key-1');
    expect(other.status).toBe(409);
    expect(other.json.error.code).toBe('IDEMPOTENCY_CONFLICT');
    expect(dest.hits.length - before).toBe(1);
  });

  it('a processor answering U+0000 in its body: the retry with the same key and body gets the recorded answer (same status, body, masked count), nothing sent twice', async () => {
    const id = await submit();
    const body = { destination: 'payments', path: '/v1/nul', headers: { 'content-type': 'application/json' }, body: '{"n":"{{card.number}}"}' };
    const before = dest.hits.length;
    const first = await forward(id, body, 'nul-key');
    expect(first.status, first.text).toBe(200);
    expect(first.json).toMatchObject({ status: 201, masked: 1, headers: { 'x-request-id': 'req-nul' } });
    expect(first.json.body).toBe('{"status":"authorized","echoed":"************1111","note":"a\u0000b"}\u0000');
    const retry = await forward(id, body, 'nul-key');
    expect(retry.status, retry.text).toBe(200);
    expect(retry.json).toEqual(first.json);
    expect(retry.json.body.length).toBe(first.json.body.length);
    expect(dest.hits.length - before).toBe(1);
    const [row] = await query<{ state: string }>(t.databaseUrl, "SELECT state FROM forward_requests WHERE transaction_id = $1 AND idempotency_key = 'nul-key'", [id]);
    expect(row?.state).toBe('done');
  });

  it('response masking: gzip body with a plain and a JSON-escaped card number, and a header carrying one', async () => {
    const id = await submit();
    const r = await forward(id, { destination: 'payments', path: '/v1/gzip', headers: { 'content-type': 'application/json' }, body: '{"n":"{{card.number}}"}' });
    expect(r.status, r.text).toBe(200);
    expect(r.text).not.toContain(PAN);
    expect(r.text).not.toContain('\\u0034\\u0031\\u0031\\u0031');
    expect(r.json.masked).toBe(3);
    expect(JSON.parse(r.json.body)).toEqual({ echoed: '************1111', escaped: '************1111' });
    expect(r.json.headers['x-request-id']).toBe('req-************1111');
    expect(r.json.headers['content-encoding']).toBeUndefined();
  });

  it('a redirect is answered as it is, never followed', async () => {
    const id = await submit();
    const before = dest.hits.length;
    const r = await forward(id, { destination: 'payments', path: '/v1/redirect', headers: { 'content-type': 'application/json' }, body: '{"n":"{{card.number}}"}' });
    expect(r.status, r.text).toBe(200);
    expect(r.json.status).toBe(302);
    expect(r.json.headers.location).toBe('/v1/payments');
    expect(dest.hits.length - before).toBe(1);
  });
});

describe('forward: refused destinations, requests and failures', () => {
  it("another processor's destination, an unregistered destination, a path or method not allowed: 403, nothing sent, a denied access entry", async () => {
    const id = await submit({ processor: 'acme' });
    const gid = await submit({ processor: 'globex' });
    await register('globex', 'only-globex', { url: `https://localhost:${dest.port}`, paths: ['/v1/payments'], caPem: dest.caPem, allowPrivateNetwork: true });
    const before = dest.hits.length;
    const tpl = { headers: { 'content-type': 'application/json' }, body: '{"n":"{{card.number}}"}' };
    for (const [txid, body] of [
      [id, { destination: 'only-globex', path: '/v1/payments', ...tpl }],
      [id, { destination: 'nowhere', path: '/v1/payments', ...tpl }],
      [id, { destination: 'payments', path: '/v1/other', ...tpl }],
      [id, { destination: 'payments', path: '/v1/payments', method: 'DELETE', ...tpl }],
      [gid, { destination: 'payments', path: '/v1/payments/x/captures', ...tpl }],
    ] as const) {
      const r = await forward(txid, body);
      expect(r.status, r.text).toBe(403);
      expect(r.json.error.code).toBe('DESTINATION_NOT_ALLOWED');
    }
    expect(dest.hits.length).toBe(before);
    const list = await t.call('checkout', 'GET', `/v1/transactions/${id}/forwards`);
    expect(list.json.forwards.map((f: { outcome: string; reason: string }) => [f.outcome, f.reason])).toEqual(Array(4).fill(['denied', 'DESTINATION_NOT_ALLOWED']));
  });

  it('method, path and headers are literal: {{, a card number, Host, hop-by-hop headers are refused; a card number in the template literal too', async () => {
    const id = await submit();
    const before = dest.hits.length;
    const base = { destination: 'payments', path: '/v1/payments', headers: { 'content-type': 'application/json' }, body: '{}' };
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ ...base, path: '/v1/{{card.number}}' }, 'VALIDATION_FAILED'],
      [{ ...base, path: `/v1/payments?pan=${PAN}` }, 'VALIDATION_FAILED'],
      [{ ...base, headers: { ...base.headers, 'x-card': '{{card.number}}' } }, 'VALIDATION_FAILED'],
      [{ ...base, headers: { ...base.headers, 'x-card': PAN } }, 'VALIDATION_FAILED'],
      [{ ...base, headers: { ...base.headers, host: 'evil.example' } }, 'VALIDATION_FAILED'],
      [{ ...base, headers: { ...base.headers, connection: 'close' } }, 'VALIDATION_FAILED'],
      [{ ...base, headers: { ...base.headers, 'transfer-encoding': 'chunked' } }, 'VALIDATION_FAILED'],
      [{ ...base, body: `{"n":"${PAN}"}` }, 'TEMPLATE_INVALID'],
      [{ ...base, body: '{"n":"{{card.pan}}"}' }, 'TEMPLATE_INVALID'],
      [{ ...base, body: '{"n":{{card.number}}x}' }, 'TEMPLATE_INVALID'],
      [{ ...base, body: '{"n":"{{iban.iban}}"}' }, 'TEMPLATE_INVALID'],
    ];
    for (const [body, code] of cases) {
      const r = await forward(id, body);
      expect(r.status, `${JSON.stringify(body)} ${r.text}`).toBe(422);
      expect(r.json.error.code).toBe(code);
      expect(r.text).not.toContain(PAN);
    }
    expect(dest.hits.length).toBe(before);
  });

  it('{{card.cvc}} with no CVC held: 422 CVC_NOT_AVAILABLE after the access entry, a refused result, nothing sent', async () => {
    const id = await submit();
    const before = dest.hits.length;
    const r = await forward(id, { destination: 'payments', path: '/v1/payments', headers: { 'content-type': 'application/json' }, body: '{"n":"{{card.number}}","cvc":"{{card.cvc}}"}' });
    expect(r.status, r.text).toBe(422);
    expect(r.json.error.code).toBe('CVC_NOT_AVAILABLE');
    expect(dest.hits.length).toBe(before);
    const list = await t.call('checkout', 'GET', `/v1/transactions/${id}/forwards`);
    expect(list.json.forwards[0]).toMatchObject({ outcome: 'granted', result: { outcome: 'refused', error: 'CVC_NOT_AVAILABLE' } });
  });

  it('a private address without allowPrivateNetwork (an address literal, and a name resolving to loopback) is refused: nothing connects', async () => {
    await register('acme', 'public-only', { url: `https://127.0.0.1:${dest.port}`, paths: ['/v1/payments'], caPem: dest.caPem });
    await register('acme', 'public-name', { url: `https://localhost:${dest.port}`, paths: ['/v1/payments'], caPem: dest.caPem });
    const id = await submit();
    const before = dest.hits.length;
    for (const name of ['public-only', 'public-name']) {
      const r = await forward(id, { destination: name, path: '/v1/payments', headers: { 'content-type': 'application/json' }, body: '{"n":"{{card.number}}"}' });
      expect(r.status, r.text).toBe(403);
      expect(r.json.error.code).toBe('DESTINATION_NOT_ALLOWED');
    }
    expect(dest.hits.length).toBe(before);
    const list = await t.call('checkout', 'GET', `/v1/transactions/${id}/forwards`);
    expect(list.json.forwards.map((f: { result: { error: string } }) => f.result.error)).toEqual(['DESTINATION_NOT_ALLOWED', 'DESTINATION_NOT_ALLOWED']);
  });

  it('slow destination → 504 DESTINATION_TIMEOUT; dead destination → 502 DESTINATION_UNREACHABLE; untrusted certificate or wrong pin → 502 DESTINATION_TLS_FAILED; each logged as a failed result', async () => {
    const id = await submit();
    const tpl = { headers: { 'content-type': 'application/json' }, body: '{"n":"{{card.number}}"}' };
    const slow = await forward(id, { destination: 'payments', path: '/v1/slow', ...tpl });
    expect(slow.status, slow.text).toBe(504);
    expect(slow.json.error.code).toBe('DESTINATION_TIMEOUT');

    const dead = await startDestination();
    const deadPort = dead.port;
    await dead.close();
    await register('acme', 'dead', { url: `https://localhost:${deadPort}`, paths: ['/v1/payments'], caPem: dest.caPem, allowPrivateNetwork: true });
    const d = await forward(id, { destination: 'dead', path: '/v1/payments', ...tpl });
    expect(d.status, d.text).toBe(502);
    expect(d.json.error.code).toBe('DESTINATION_UNREACHABLE');

    const before = dest.hits.length;
    await register('acme', 'untrusted', { url: `https://localhost:${dest.port}`, paths: ['/v1/payments'], allowPrivateNetwork: true });
    const u = await forward(id, { destination: 'untrusted', path: '/v1/payments', ...tpl });
    expect(u.status, u.text).toBe(502);
    expect(u.json.error.code).toBe('DESTINATION_TLS_FAILED');
    const otherKey = spkiPin(new X509Certificate(createCa().certPem).raw);
    await register('acme', 'pinned-wrong', { url: `https://localhost:${dest.port}`, paths: ['/v1/payments'], caPem: dest.caPem, pins: [otherKey], allowPrivateNetwork: true });
    const p = await forward(id, { destination: 'pinned-wrong', path: '/v1/payments', ...tpl });
    expect(p.status, p.text).toBe(502);
    expect(p.json.error.code).toBe('DESTINATION_TLS_FAILED');
    expect(dest.hits.length).toBe(before);
    await register('acme', 'pinned-right', { url: `https://localhost:${dest.port}`, paths: ['/v1/payments'], caPem: dest.caPem, pins: [otherKey, spkiPin(new X509Certificate(dest.certPem).raw)], allowPrivateNetwork: true });
    expect((await forward(id, { destination: 'pinned-right', path: '/v1/payments', ...tpl })).status).toBe(200);

    const list = await t.call('checkout', 'GET', `/v1/transactions/${id}/forwards`);
    expect(list.json.forwards.map((f: { result: { outcome: string; error: string | null } }) => `${f.result.outcome}:${f.result.error}`)).toEqual([
      'failed:DESTINATION_TIMEOUT',
      'failed:DESTINATION_UNREACHABLE',
      'failed:DESTINATION_TLS_FAILED',
      'failed:DESTINATION_TLS_FAILED',
      'completed:null',
    ]);
  });

  it('a forward that stopped between its access entry and its result is "unknown" on retry, never re-sent', async () => {
    const id = await submit();
    const body = { destination: 'payments', path: '/v1/payments', headers: { 'content-type': 'application/json' }, body: '{"n":"{{card.number}}"}' };
    const ok = await forward(id, body, 'first-key');
    expect(ok.status).toBe(200);
    // What a process killed right after egress leaves behind: its access entry committed, its
    // ledger row `sent`, no result entry. (Same request, so the same keyed request MAC.)
    const now = new Date();
    const access = await t.paylog.appender.append({
      kind: 'access',
      leaf: encodeLeaf(accessLeafV2({ time: now, transactionId: id, action: 'forward', principal: { role: 'checkout', name: 'checkout', certificateFingerprint: t.paylog.devPki!.principals['checkout']!.fingerprint }, purpose: 'authorize', outcome: 'granted', sourceAddress: '127.0.0.1', forward: { destination: 'payments', method: 'POST', path: '/v1/payments', templateSha256: Buffer.alloc(32), keyMac: Buffer.alloc(32) } })),
      createdAt: now,
      access: { transactionId: id },
    });
    const accessIndex = (access as { logIndex: number }).logIndex;
    await query(
      t.databaseUrl,
      "INSERT INTO forward_requests (transaction_id, idempotency_key, request_mac, state, access_log_index, started_at) SELECT transaction_id, 'crash-key', request_mac, 'sent', $2, now() - interval '1 hour' FROM forward_requests WHERE transaction_id = $1 AND idempotency_key = 'first-key'",
      [id, accessIndex],
    );
    const before = dest.hits.length;
    const r = await forward(id, body, 'crash-key');
    expect(r.status, r.text).toBe(502);
    expect(r.json.error.code).toBe('FORWARD_OUTCOME_UNKNOWN');
    const again = await forward(id, body, 'crash-key');
    expect(again.json.error.code).toBe('FORWARD_OUTCOME_UNKNOWN');
    expect(dest.hits.length).toBe(before);
    const list = await t.call('checkout', 'GET', `/v1/transactions/${id}/forwards`);
    expect(list.json.forwards.find((f: { accessLogIndex: number }) => f.accessLogIndex === accessIndex)).toMatchObject({ result: { outcome: 'unknown', error: 'FORWARD_OUTCOME_UNKNOWN' } });
  });
});

describe('forward: a revoked checkout certificate', () => {
  it('is refused 401 CERTIFICATE_REVOKED for every answer (valid, invalid, unknown transaction, retried key): nothing sent, nothing appended, no ledger row left', async () => {
    const pki = t.paylog.devPki!;
    const issued = issuePrincipalCertificate({ certPem: pki.caCertPem, keyPem: readFileSync(pki.caKeyPath, 'utf8') }, { role: 'checkout', name: 'checkout-revoked' });
    const agent = new Agent({ connect: { ca: pki.caCertPem, cert: issued.certPem, key: issued.keyPem } });
    const post = async (id: string, body: unknown, key: string) => {
      const r = await request(`${t.paylog.url}/v1/transactions/${id}/forward`, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json', 'idempotency-key': key }, body: JSON.stringify(body) });
      const text = await r.body.text();
      return { status: r.statusCode, code: (JSON.parse(text) as { error?: { code?: string } }).error?.code };
    };
    try {
      const id = await submit();
      const body = { destination: 'payments', method: 'POST', path: '/v1/payments', purpose: 'authorize', headers: { 'content-type': 'application/json' }, body: '{"n":"{{card.number}}"}' };
      expect((await post(id, body, 'before-revocation')).status).toBe(200);
      expect((await t.call('admin', 'POST', '/v1/admin/revocations', { serial: issued.serialHex, reason: 'key compromise' })).status).toBe(201);
      const hits = dest.hits.length;
      const size = async () => Number((await query<{ n: string }>(t.databaseUrl, 'SELECT coalesce(max(size), 0) AS n FROM tree_heads'))[0]!.n);
      const size0 = await size();
      const answers = {
        valid: await post(id, body, 'after-revocation'),
        retried: await post(id, body, 'before-revocation'),
        invalid: await post(id, { ...body, destination: 'nowhere' }, 'invalid'),
        unknown: await post('no-such-transaction', body, 'unknown'),
      };
      for (const [what, r] of Object.entries(answers)) expect([what, r.status, r.code]).toEqual([what, 401, 'CERTIFICATE_REVOKED']);
      expect(dest.hits.length).toBe(hits);
      expect(await size()).toBe(size0);
      const rows = await query<{ idempotency_key: string }>(t.databaseUrl, "SELECT idempotency_key FROM forward_requests WHERE idempotency_key IN ('after-revocation', 'invalid', 'unknown')");
      expect(rows).toEqual([]);
    } finally {
      await agent.destroy();
    }
  });
});

describe('forward_requests: what the runtime role can do to the ledger', () => {
  it('a ledger row deleted, or reset to pending, by the runtime role: the retry is never sent again (the log shows the key was granted)', async () => {
    const id = await submit();
    const body = { destination: 'payments', path: '/v1/payments', headers: { 'content-type': 'application/json' }, body: '{"n":"{{card.number}}"}' };
    expect((await forward(id, body, 'attacked-1')).status).toBe(200);
    expect((await forward(id, body, 'attacked-2')).status).toBe(200);
    const before = dest.hits.length;
    const runtime = t.paylog.database.pool;
    await runtime.query("DELETE FROM forward_requests WHERE transaction_id = $1 AND idempotency_key = 'attacked-1'", [id]);
    await runtime.query("UPDATE forward_requests SET state = 'pending', answer = NULL, access_log_index = NULL, started_at = now() - interval '1 hour' WHERE transaction_id = $1 AND idempotency_key = 'attacked-2'", [id]);
    for (const key of ['attacked-1', 'attacked-2']) {
      const r = await forward(id, body, key);
      expect(r.status, r.text).toBe(502);
      expect(r.json.error.code).toBe('FORWARD_OUTCOME_UNKNOWN');
    }
    expect(dest.hits.length).toBe(before);
  });
});

describe('destinations: admin events first, rows checked against them', () => {
  it('register / list / remove are admin_event entries; the client key is never served; a row changed behind the admin route is refused', async () => {
    const ca = createCa({ commonName: 'client CA' });
    const client = issueServerCertificate(ca, ['paylog-client']);
    const put = await register('acme', 'mtls-dest', { url: `https://localhost:${dest.port}`, paths: ['/v1/payments'], caPem: dest.caPem, clientCertPem: client.certPem, clientKeyPem: client.keyPem, allowPrivateNetwork: true });
    expect(put.hasClientKey).toBe(true);
    expect(JSON.stringify(put)).not.toContain('PRIVATE KEY');
    const ev = await leafAt(put.adminLogIndex);
    expect(ev).toMatchObject({ type: 'admin_event', action: 'destination_registered', processor: 'acme', dest: 'mtls-dest', outcome: 'granted' });
    const list = await t.call('admin', 'GET', '/v1/admin/processors/acme/destinations');
    expect(list.status).toBe(200);
    expect(list.text).not.toContain('PRIVATE KEY');
    const [row] = await query<{ wrapped_client_key: Buffer; config: unknown }>(t.databaseUrl, "SELECT wrapped_client_key, config FROM forward_destinations WHERE name = 'mtls-dest'");
    expect(row!.wrapped_client_key.toString('latin1')).not.toContain('PRIVATE KEY');
    expect(JSON.stringify(row!.config)).not.toContain('PRIVATE KEY');
    expect(t.logLines.join('\n')).not.toContain('PRIVATE KEY');
    // The mTLS destination works (the key opens from KMS).
    const id = await submit();
    expect((await forward(id, { destination: 'mtls-dest', path: '/v1/payments', headers: { 'content-type': 'application/json' }, body: '{}' })).status).toBe(200);
    // The runtime role cannot write the table at all.
    const runtime = t.paylog.database.pool;
    await expect(runtime.query("UPDATE forward_destinations SET config = jsonb_set(config, '{url}', '\"https://evil.example\"') WHERE name = 'payments'")).rejects.toMatchObject({ code: '42501' });
    await expect(runtime.query("INSERT INTO forward_destinations (processor, name, config, admin_log_index) VALUES ('acme', 'evil', '{}', 0)")).rejects.toMatchObject({ code: '42501' });
    await expect(runtime.query("DELETE FROM forward_destinations")).rejects.toMatchObject({ code: '42501' });
    // A change that bypasses the admin route (owner connection): refused at use.
    await query(t.databaseUrl, `UPDATE forward_destinations SET config = jsonb_set(config, '{paths}', '["/v1/payments", "/v1/steal"]') WHERE processor = 'acme' AND name = 'payments'`);
    const before = dest.hits.length;
    const r = await forward(id, { destination: 'payments', path: '/v1/payments', headers: { 'content-type': 'application/json' }, body: '{"n":"{{card.number}}"}' });
    expect(r.status, r.text).toBe(403);
    expect(r.json.error.code).toBe('DESTINATION_NOT_ALLOWED');
    expect(dest.hits.length).toBe(before);
    // Re-registering through the admin route makes it usable again.
    await register('acme', 'payments', { url: `https://localhost:${dest.port}`, paths: ['/v1/payments', '/v1/redirect', '/v1/slow', '/v1/gzip', '/v1/nul', '/v1/payments/*/captures'], caPem: dest.caPem, allowPrivateNetwork: true, timeoutMs: 4000 });
    expect((await forward(id, { destination: 'payments', path: '/v1/payments', headers: { 'content-type': 'application/json' }, body: '{}' })).status).toBe(200);
    const del = await t.call('admin', 'DELETE', '/v1/admin/processors/acme/destinations/mtls-dest');
    expect(del.status, del.text).toBe(200);
    const gone = await forward(id, { destination: 'mtls-dest', path: '/v1/payments', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(gone.json.error.code).toBe('DESTINATION_NOT_ALLOWED');
    expect((await t.call('checkout', 'PUT', '/v1/admin/processors/acme/destinations/x', { url: 'https://a.example', paths: ['/'] })).status).toBe(403);
    const http = await t.call('admin', 'PUT', '/v1/admin/processors/acme/destinations/x', { url: 'http://a.example', paths: ['/v1/p'] });
    expect(http.status).toBe(422);
  });

  it('verify-log verifies forward entries and reports a forward whose result entry is missing', async () => {
    const id = await submit();
    const r = await forward(id, { destination: 'payments', path: '/v1/payments', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(r.status).toBe(200);
    await t.paylog.checkpoints.publish();
    const a = t.paylog.devPki!.principals['auditor']!;
    const client = LogClient.fromFiles(t.paylog.url, t.paylog.devPki!.caPath, a.certPath, a.keyPath);
    try {
      const report = await verifyRemoteLog(client, { verifiers: toNoteVerifiers((await client.keys()).vkeys) });
      expect(report.failures).toEqual([]);
      expect(report.ok).toBe(true);
      expect(report.forwards?.granted).toBeGreaterThan(0);
      // The crash test above left none open (its retry closed it as unknown); every granted forward has its result.
      expect(report.forwards?.withoutResult).toEqual([]);
      // A granted forward whose result entry never came (a process stopped after egress).
      const now = new Date();
      const open = await t.paylog.appender.append({
        kind: 'access',
        leaf: encodeLeaf(accessLeafV2({ time: now, transactionId: id, action: 'forward', principal: { role: 'checkout', name: 'checkout', certificateFingerprint: t.paylog.devPki!.principals['checkout']!.fingerprint }, purpose: 'authorize', outcome: 'granted', sourceAddress: '127.0.0.1', forward: { destination: 'payments', method: 'POST', path: '/v1/payments', templateSha256: Buffer.alloc(32), keyMac: Buffer.alloc(32) } })),
        createdAt: now,
        access: { transactionId: id },
      });
      await t.paylog.checkpoints.publish();
      const later = await verifyRemoteLog(client, { verifiers: toNoteVerifiers((await client.keys()).vkeys) });
      expect(later.forwards?.withoutResult).toEqual([(open as { logIndex: number }).logIndex]);
      expect(formatReport(later)).toContain(`WITHOUT a result entry: ${(open as { logIndex: number }).logIndex}`);
    } finally {
      client.close();
    }
  });
});
