/**
 * Hostile input over real mTLS (issue 7 items 6-8): text PostgreSQL would refuse is a 400
 * INVALID_ENCODING on every route; identifier rules are the ones the contract documents; MACs
 * and replays; and 10,000 seeded hostile requests → no 5xx, no crash, no card number in any
 * response or captured log line. Real PostgreSQL, real KMS client, real HTTPS.
 */
import { readFileSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { query } from './helpers/db.js';
import { cardTransaction, fixtures, startTestPaylog, type PrincipalName, type TestPaylog } from './helpers/paylog.js';
import { TRANSACTION_ID_MAX } from '../src/validation/identifiers.js';

let t: TestPaylog;
const sql = <T = any>(text: string, params: unknown[] = []) => query<T>(t.databaseUrl, text, params);
/** A Luhn-valid Visa number that is NOT one of the fixtures: what valid seed transactions carry. */
const SEED_PAN = '4929123456789015';
const seeded: Record<'acme' | 'globex', string> = { acme: '', globex: '' };

interface RawResult {
  status: number;
  text: string;
  json: any;
  error?: string;
}

/** One HTTPS request with full control over body bytes and headers (no defaults added). */
function raw(who: PrincipalName | null, method: string, path: string, body?: Buffer | string, headers: Record<string, string> = {}, timeoutMs = 15_000): Promise<RawResult> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (r: RawResult) => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    // An explicit length: Node sends a GET/DELETE/HEAD body with neither a length nor chunking.
    const length = body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-length') ? { 'content-length': String(Buffer.byteLength(body)) } : {};
    const req = httpsRequest(`${t.paylog.url}${path}`, { method, agent: t.agent(who), headers: { ...headers, ...length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        finish({ status: res.statusCode ?? 0, text, json });
      });
      res.on('error', (e) => finish({ status: res.statusCode ?? 0, text: '', json: undefined, error: (e as NodeJS.ErrnoException).code ?? e.message }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error('TIMEOUT')));
    req.on('error', (e) => finish({ status: 0, text: '', json: undefined, error: (e as NodeJS.ErrnoException).code ?? e.message }));
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

const errorLines = () => t.logLines.filter((l) => (JSON.parse(l) as { level: number }).level >= 50);

beforeAll(async () => {
  // The per-certificate release limiter would answer most of the hostile run with 429.
  t = await startTestPaylog({ env: { PAYLOG_RELEASE_RATE_PER_MINUTE: '1000000' } });
  for (const processor of ['acme', 'globex'] as const) {
    const body = cardTransaction({ processor, paymentMethod: { type: 'card', pan: SEED_PAN, expiryMonth: 6, expiryYear: 2039, holderName: 'Ana Müller' } });
    const r = await t.call('checkout', 'POST', '/v1/transactions', body);
    expect(r.status).toBe(201);
    seeded[processor] = body.transactionId;
  }
});
afterAll(async () => {
  await t?.stop();
});

describe('text PostgreSQL would refuse → 400 INVALID_ENCODING on every route, before any query', () => {
  const urlCases: Array<[PrincipalName, string, string]> = [
    ['auditor', 'GET', '/v1/transactions/%00'],
    ['auditor', 'GET', '/v1/transactions/a%00b'],
    ['checkout', 'GET', '/v1/transactions/a%00b'],
    ['processor-acme', 'GET', '/v1/transactions/%00'],
    ['auditor', 'GET', '/v1/log/proof/inclusion?transactionId=%00'],
    ['processor-acme', 'GET', '/v1/log/proof/inclusion?transactionId=%00'],
    ['auditor', 'GET', '/v1/transactions/%C3%28'], // invalid UTF-8
    ['auditor', 'GET', '/v1/transactions/%ED%A0%80'], // a surrogate, UTF-8-encoded (not UTF-8)
    ['auditor', 'GET', '/v1/transactions/%FF/accesses'],
    ['processor-acme', 'POST', '/v1/transactions/%00/release'],
    ['admin', 'PUT', '/v1/admin/processors/ac%00me'],
    ['auditor', 'GET', '/v1/log/entries?start=0&end=1&x=%00'],
    ['auditor', 'GET', '/v1/log/checkpoint?size=%C0%AF'], // overlong '/'
    ['auditor', 'GET', '/v1/nope/%00'],
  ];
  it.each(urlCases)('%s %s %s', async (who, method, path) => {
    const before = errorLines().length;
    const body = method === 'GET' ? undefined : '{"purpose":"authorize","status":"active"}';
    const r = await raw(who, method, path, body, body ? { 'content-type': 'application/json' } : {});
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('INVALID_ENCODING');
    expect(errorLines().length).toBe(before);
  });

  const bodyCases: Array<[string, PrincipalName, string, string, Buffer | string]> = [
    ['NUL escape in a value', 'checkout', 'POST', '/v1/transactions', JSON.stringify(cardTransaction({ metadata: { invoice: 'INV\u000077' } }))],
    ['NUL escape in a key', 'checkout', 'POST', '/v1/transactions', JSON.stringify(cardTransaction({ metadata: { 'in\u0000voice': 'x' } }))],
    ['NUL escape in the transaction id', 'checkout', 'POST', '/v1/transactions', JSON.stringify(cardTransaction({ transactionId: 'a\u0000b' }))],
    ['lone surrogate escape, deep', 'checkout', 'POST', '/v1/transactions', '{"a":[[[{"b":"\\ud800"}]]]}'],
    ['lone low surrogate in a key', 'checkout', 'POST', '/v1/transactions', '{"\\udc00":1}'],
    ['invalid UTF-8 byte', 'checkout', 'POST', '/v1/transactions', Buffer.concat([Buffer.from('{"transactionId":"a'), Buffer.from([0xff]), Buffer.from('"}')])],
    ['overlong UTF-8', 'checkout', 'POST', '/v1/transactions', Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')])],
    ['encoded surrogate bytes', 'checkout', 'POST', '/v1/transactions', Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')])],
    ['release: NUL escape in reference', 'processor-acme', 'POST', '', '{"purpose":"authorize","reference":"a\\u0000b"}'],
    ['release: invalid UTF-8', 'processor-acme', 'POST', '', Buffer.from([0x7b, 0xff, 0x7d])],
    ['release: lone surrogate key', 'processor-acme', 'POST', '', '{"purpose":"authorize","\\ud800":1}'],
    ['admin processor update: NUL', 'admin', 'PUT', '/v1/admin/processors/newco', '{"status":"active\\u0000"}'],
    ['admin revocation: lone surrogate', 'admin', 'POST', '/v1/admin/revocations', '{"serial":"01","reason":"\\udfff"}'],
  ];
  it.each(bodyCases)('%s', async (_label, who, method, path, body) => {
    const before = errorLines().length;
    const target = path || `/v1/transactions/${seeded.acme}/release`;
    const size = async () => Number((await sql('SELECT coalesce(max(size),0) AS n FROM tree_heads'))[0].n);
    const sizeBefore = await size();
    const r = await raw(who, method, target, body, { 'content-type': 'application/json' });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('INVALID_ENCODING');
    expect(errorLines().length).toBe(before);
    expect(await size()).toBe(sizeBefore); // nothing appended, not even a refused access entry
  });

  it('well-formed non-ASCII (pairs, RTL, emoji) is still accepted', async () => {
    const body = cardTransaction({ metadata: { note: 'Zoë 😀 \u202e' } });
    body.paymentMethod.pan = SEED_PAN;
    const r = await t.call('checkout', 'POST', '/v1/transactions', body);
    expect(r.status).toBe(201);
    const g = await raw('auditor', 'GET', `/v1/transactions/${encodeURIComponent('ord-😀')}`);
    expect(g.status).toBe(404);
  });
});

describe('one identifier rule (src/validation/identifiers.ts) on every route', () => {
  it(`transaction ids longer than ${TRANSACTION_ID_MAX} are refused the same way everywhere`, async () => {
    const long = 'a'.repeat(TRANSACTION_ID_MAX + 1);
    const ok = 'a'.repeat(TRANSACTION_ID_MAX);
    expect((await raw('auditor', 'GET', `/v1/transactions/${long}`)).status).toBe(404);
    expect((await raw('auditor', 'GET', `/v1/transactions/${ok}`)).status).toBe(404);
    // The proof route used to accept up to 128 characters; it follows the same rule now.
    const r = await raw('auditor', 'GET', `/v1/log/proof/inclusion?transactionId=${long}`);
    expect(r.status).toBe(422);
    expect(r.json.error.message).toContain(`1-${TRANSACTION_ID_MAX}`);
    expect((await raw('auditor', 'GET', `/v1/log/proof/inclusion?transactionId=${ok}`)).status).toBe(404);
    // An id no submission could have made is refused without looking it up.
    expect((await raw('auditor', 'GET', '/v1/log/proof/inclusion?transactionId=-x')).status).toBe(422);
  });
});

// ---------------------------------------------------------------------------------------------
// 10,000 seeded hostile requests

/** mulberry32: a small seeded PRNG, so a failing request can be reproduced from its number. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

export const HOSTILE_SEED = 0x7061796c; // "payl"
export const HOSTILE_REQUESTS = 10_000;
/** Requests in flight at once (one keep-alive agent per principal). */
export const HOSTILE_CONCURRENCY = 16;

interface HostileRequest {
  n: number;
  who: PrincipalName | null;
  method: string;
  path: string;
  body?: Buffer;
  headers: Record<string, string>;
  kind: string;
}

const CARD_NUMBERS = [...fixtures.cards.map((c) => c.pan), ...fixtures.invalid_cards.map((c) => c.pan.replace(/\D/g, '')).filter((d) => d.length >= 13)];

function hostileGenerator(seed: number) {
  const rnd = prng(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T,>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const chance = (p: number) => rnd() < p;
  const pan = () => pick(fixtures.cards).pan;
  const grouped = (d: string) => d.replace(/(\d{4})(?=\d)/g, `$1${pick([' ', '-', '.', ''])}`);
  const fullWidth = (d: string) => [...d].map((c) => String.fromCharCode(0xff10 + Number(c))).join('');

  /** Path segments, already in request-target form (percent-encoded or deliberately not). */
  const segment = (): string =>
    pick([
      () => pick(['%00', 'a%00b', '%00%00', '%C3%28', '%ED%A0%80', '%ED%B0%80', '%FF', '%E2%82', '%C0%AF', '%F8%88%80%80%80', '%', '%zz', '%2', '%u0000']),
      () => pick(['%2e%2e', '..', '%2F', '%20', '%E2%80%AE', '%F0%9F%98%80', 'null', 'undefined', '-1', '__proto__', 'constructor']),
      () => encodeURIComponent(pick([pan(), grouped(pan()), fullWidth(pan()), `ord-${pan()}`, `'; DROP TABLE transactions;--`, 'a\u0000b', 'ä', '😀'])),
      () => 'x'.repeat(pick([64, 65, 99, 100, 101, 128, 129, 1000, 6000])),
      () => pick([seeded.acme, seeded.globex, 'ord-unknown', 'ORD.1:2-3_4']),
      () => Array.from({ length: 1 + int(8) }, () => `%${int(256).toString(16).padStart(2, '0')}`).join(''), // random bytes
    ])();

  const queryValue = (): string =>
    pick(['', '0', '1', '2', '-1', '1e3', '0x10', '99999999999999999999', '9007199254740993', 'NaN', 'Infinity', '1.5', '%201', '+1', '01', '%00', '%FF', '%ED%A0%80', '%C3%28', pan(), encodeURIComponent(grouped(pan())), 'x'.repeat(300), seeded.acme, '[]', '{}', 'true']);
  const query = (names: readonly string[]): string => {
    if (chance(0.1)) return '';
    const parts: string[] = [];
    const count = 1 + int(4);
    for (let i = 0; i < count; i++) {
      const name = chance(0.8) ? pick(names) : pick(['x', '__proto__', 'constructor', '%00', '%FF', 'a[b]', 'a.b', encodeURIComponent(pan())]);
      parts.push(chance(0.05) ? name : `${name}=${queryValue()}`);
    }
    return `?${parts.join('&')}`;
  };

  /** Hostile JSON-able values. */
  const value = (depth = 0): unknown =>
    pick([
      () => pick(['a\u0000b', '\u0000', '\ud800', 'x\udfffy', '\udc00\ud800', 'ok', '', ' ', 'Zoë 😀', '\u202e', '\n\r\t', 'x'.repeat(pick([65, 257, 5000, 20000]))]),
      () => pick([pan(), grouped(pan()), fullWidth(pan()), `card ${grouped(pan())} here`, pick(fixtures.ibans).iban]),
      () => pick([0, -1, 1.5, 1e308, -1e308, 9007199254740993, 2 ** 63, true, false, null]),
      () => (depth < 3 ? [value(depth + 1), value(depth + 1)] : []),
      () => (depth < 3 ? { [key()]: value(depth + 1) } : {}),
    ])();
  const key = (): string => pick(['\u0000', 'a\u0000', '\ud800', '\udfff', pan(), 'cvv', 'cardSecurityCode', 'track2', 'pin', '__proto__', 'constructor', 'prototype', '', ' ', 'x'.repeat(100), 'invoice', 'transactionId', 'paymentMethod']);

  const transactionBody = (): Record<string, any> => {
    const body: Record<string, any> = cardTransaction({ processor: pick(['acme', 'globex', 'acme', 'nope', 'Acme', 'acme\u0000']) });
    body.paymentMethod.pan = SEED_PAN; // never a fixture number where it would be accepted
    if (chance(0.1)) body.paymentMethod = { type: 'encrypted', jwe: pick(['a.b.c.d.e', 'eyJhbGciOiJFQ0RILUVTIn0....', '\u0000.\ud800..', `${pan()}.a.b.c.d`, 'x'.repeat(20_000)]) };
    const mutations = int(4);
    for (let i = 0; i < mutations; i++) {
      const isObject = (v: unknown): v is Record<string, any> => v !== null && typeof v === 'object' && !Array.isArray(v);
      const target = pick([body, body, body.paymentMethod, body.amount, body.metadata].filter(isObject));
      const k = chance(0.6) ? pick(Object.keys(target).length ? Object.keys(target) : ['x']) : key();
      if (chance(0.15)) delete target[k];
      else target[k] = value();
    }
    return body;
  };

  const deep = (): string => {
    const d = pick([100, 1000, 5000, 7000]);
    return pick([
      () => '['.repeat(d) + ']'.repeat(d),
      () => '{"a":'.repeat(d) + '1' + '}'.repeat(d),
      () => '{"metadata":' + '{"a":'.repeat(d) + '{"__proto__":{"x":1}}' + '}'.repeat(d) + '}',
      () => '['.repeat(d), // unterminated
    ])();
  };
  const malformed = (): string =>
    pick(['{', '}', '{"a":', "{'a':1}", 'nul', 'tru', '{"a":1}}', '{"a":1,}', '[1,]', '"\\x00"', '{"a":"\\u12"}', '{"a":"\\ud800\\u"}', '\u0000', '{"a":"b\u0000c"}', '{"a" 1}', '01', '{"__proto__":{"polluted":true}}', '{"constructor":{"prototype":{"x":1}}}', ' ', '']);
  const invalidUtf8 = (text: string): Buffer => {
    const bad = pick([[0xff], [0xfe], [0xc0, 0xaf], [0xc1, 0xbf], [0x80], [0xed, 0xa0, 0x80], [0xf5, 0x80, 0x80, 0x80], [0xe2, 0x82], [0xf0, 0x9f, 0x98]]);
    const at = text.indexOf('"') >= 0 ? text.indexOf('"') + 1 : 0;
    return Buffer.concat([Buffer.from(text.slice(0, at)), Buffer.from(bad), Buffer.from(text.slice(at))]);
  };
  const huge = (): Buffer => {
    const size = chance(0.1) ? 2 * 1024 * 1024 : 17 * 1024 + int(256 * 1024);
    return Buffer.from(JSON.stringify({ transactionId: 'ord-huge', metadata: { note: 'x'.repeat(size) } }));
  };

  /** A body for a route: a hostile variant of what it expects. */
  const body = (expected: () => unknown): Buffer =>
    pick([
      () => Buffer.from(JSON.stringify(expected())),
      () => Buffer.from(JSON.stringify(expected())),
      () => Buffer.from(malformed()),
      () => Buffer.from(deep()),
      () => invalidUtf8(JSON.stringify(expected())),
      () => Buffer.from(JSON.stringify({ [key()]: value() })),
      () => (chance(0.3) ? huge() : Buffer.from(JSON.stringify(value()))),
    ])();
  const contentType = (): string | undefined =>
    chance(0.7)
      ? 'application/json'
      : pick([undefined, '', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/octet-stream', 'application/jsonx', 'APPLICATION/JSON', 'application/json; charset=utf-16', 'application/json; charset=latin1', 'application/*', 'application/json, text/plain', '*/*']);

  const releaseBody = () => ({ purpose: pick(['authorize', 'capture', 'refund', 'bogus', '', 'authorize\u0000', null, 1]), ...(chance(0.6) ? { reference: value() } : {}) });
  const processorName = () => {
    const n = chance(0.5) ? segment() : `newco-${int(50)}`;
    return n === 'acme' || n === 'globex' ? 'newco' : n; // never disable the seeded processors
  };

  const routes: Array<() => Omit<HostileRequest, 'n' | 'who' | 'headers'> & { ct?: boolean }> = [
    () => ({ kind: 'submit', method: 'POST', path: '/v1/transactions', body: body(transactionBody), ct: true }),
    () => ({ kind: 'submit', method: 'POST', path: `/v1/transactions${query(['x'])}`, body: body(transactionBody), ct: true }),
    () => ({ kind: 'read', method: 'GET', path: `/v1/transactions/${segment()}` }),
    () => ({ kind: 'release', method: 'POST', path: `/v1/transactions/${chance(0.4) ? pick([seeded.acme, seeded.globex]) : segment()}/release`, body: body(releaseBody), ct: true }),
    () => ({ kind: 'accesses', method: 'GET', path: `/v1/transactions/${chance(0.4) ? seeded.acme : segment()}/accesses${query(['after', 'limit'])}` }),
    () => ({ kind: 'checkpoint', method: 'GET', path: `/v1/log/checkpoint${query(['size'])}` }),
    () => ({ kind: 'key', method: 'GET', path: `/v1/log/key${query(['x'])}` }),
    () => ({ kind: 'jwks', method: 'GET', path: `/v1/cse/jwks.json${query(['kid', 'x'])}` }),
    () => ({
      kind: 'tiles',
      method: 'GET',
      path: pick([`/v1/log/tiles/checkpoint${query(['x'])}`, `/v1/log/tiles/tile/${segment()}/${segment()}`, '/v1/log/tiles/tile/0/000', `/v1/log/tiles/tile/0/x001/${segment()}.p/${segment()}`, `/v1/log/tiles/tile/entries/${segment()}`, '/v1/log/tiles/tile/entries/000.p/1']),
    }),
    () => ({ kind: 'entries', method: 'GET', path: `/v1/log/entries${query(['start', 'end'])}` }),
    () => ({ kind: 'inclusion', method: 'GET', path: `/v1/log/proof/inclusion${query(['index', 'treeSize', 'transactionId'])}` }),
    () => ({ kind: 'consistency', method: 'GET', path: `/v1/log/proof/consistency${query(['from', 'to'])}` }),
    () => ({ kind: 'admin-list', method: 'GET', path: `/v1/admin/processors${query(['x'])}` }),
    () => ({ kind: 'admin-put', method: 'PUT', path: `/v1/admin/processors/${processorName()}`, body: body(() => ({ status: pick(['active', 'disabled', 'bogus', value()]) })), ct: true }),
    () => ({
      kind: 'revoke',
      method: 'POST',
      path: '/v1/admin/revocations',
      body: body(() => ({ ...(chance(0.5) ? { serial: pick(['zz', 'ff'.repeat(40), value()]) } : {}), ...(chance(0.5) ? { fingerprint: value() } : {}), reason: value() })),
      ct: true,
    }),
    () => ({ kind: 'ops', method: 'GET', path: `${pick(['/healthz', '/readyz', '/metrics', '/openapi.json'])}${query(['x'])}` }),
    () => ({ kind: 'unknown', method: pick(['GET', 'POST', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'PUT']), path: pick(['/v1/nope', `/v1/transactions/${segment()}/${segment()}`, `/${segment()}`, '/v1', '/v1/', '/v1/log', '/v1/admin']), body: chance(0.5) ? body(() => value()) : undefined, ct: true }),
    () => ({ kind: 'wrong-method', method: pick(['DELETE', 'PATCH', 'PUT', 'GET', 'POST']), path: pick(['/v1/transactions', `/v1/transactions/${seeded.acme}`, '/v1/log/checkpoint', '/v1/admin/revocations']), body: chance(0.5) ? body(transactionBody) : undefined, ct: true }),
  ];
  const principals: Array<PrincipalName | null> = ['checkout', 'processor-acme', 'processor-globex', 'auditor', 'admin', null];

  return (n: number): HostileRequest => {
    const { ct, ...r } = pick(routes)();
    const headers: Record<string, string> = {};
    if (r.body !== undefined && ct) {
      const type = contentType();
      if (type !== undefined) headers['content-type'] = type;
    }
    return { n, who: chance(0.1) ? null : pick(principals.slice(0, 5)), headers, ...r };
  };
}

/** A card number from the fixtures, plain or grouped, anywhere in `text`. */
function holdsFixtureCardNumber(text: string): string | null {
  const stripped = text.replace(/[ .-]/g, '');
  for (const pan of CARD_NUMBERS) if (text.includes(pan) || stripped.includes(pan)) return pan.slice(0, 6);
  return null;
}

describe(`${HOSTILE_REQUESTS.toLocaleString('en')} hostile requests over mTLS`, () => {
  it('no 5xx, no crash, no card number in any response or log line', { timeout: 420_000 }, async () => {
    const next = hostileGenerator(HOSTILE_SEED);
    const reference = (await raw(null, 'GET', '/openapi.json')).text;
    expect(reference).toContain('"openapi"');
    const logStart = t.logLines.length;
    const statuses = new Map<string, number>();
    const kindMs = new Map<string, number>();
    const failures: string[] = [];
    const leaks: string[] = [];
    let issued = 0;
    const started = performance.now();
    const worker = async () => {
      while (issued < HOSTILE_REQUESTS) {
        const req = next(issued++);
        const t0 = performance.now();
        const r = await raw(req.who, req.method, req.path, req.body, req.headers);
        kindMs.set(req.kind, (kindMs.get(req.kind) ?? 0) + performance.now() - t0);
        const label = `#${req.n} ${req.kind} ${req.who ?? 'anonymous'} ${req.method} ${req.path.slice(0, 120)}`;
        statuses.set(String(r.status || r.error), (statuses.get(String(r.status || r.error)) ?? 0) + 1);
        // A body over the limit may be answered 413 while the client is still sending it.
        const hugeBody = (req.body?.length ?? 0) > 16 * 1024;
        if (r.status >= 500 || (r.status === 0 && !(hugeBody && (r.error === 'EPIPE' || r.error === 'ECONNRESET')))) {
          failures.push(`${label} → ${r.status || r.error} ${r.text.slice(0, 200)}`);
        }
        // The API reference is static and its request examples hold public test cards
        // (4111…): it must come back byte-identical whatever the query, i.e. echo nothing.
        if (r.status === 200 && req.path.startsWith('/openapi.json')) {
          if (r.text !== reference) leaks.push(`${label}: the API reference differs from the one served to a plain GET`);
          continue;
        }
        const leaked = holdsFixtureCardNumber(r.text);
        if (leaked) leaks.push(`${label}: response holds ${leaked}…`);
      }
    };
    await Promise.all(Array.from({ length: HOSTILE_CONCURRENCY }, worker));
    const seconds = (performance.now() - started) / 1000;

    const lines = t.logLines.slice(logStart);
    for (const l of lines) {
      const leaked = holdsFixtureCardNumber(l);
      if (leaked) leaks.push(`log line holds ${leaked}…: ${l.slice(0, 200)}`);
    }
    const errorLevel = lines.filter((l) => (JSON.parse(l) as { level: number }).level >= 50);
    const summary = [...statuses.entries()].sort().map(([k, v]) => `${k}:${v}`).join(' ');
    console.log(`hostile: ${HOSTILE_REQUESTS} requests in ${seconds.toFixed(1)} s (seed ${HOSTILE_SEED}, concurrency ${HOSTILE_CONCURRENCY}); statuses ${summary}; ${lines.length} log lines; ms by kind ${[...kindMs.entries()].map(([k, v]) => `${k}:${Math.round(v)}`).join(' ')}`);

    expect(failures.slice(0, 20)).toEqual([]);
    expect(leaks.slice(0, 20)).toEqual([]);
    expect(errorLevel.slice(0, 5)).toEqual([]);
    // Still up and still working.
    expect((await raw(null, 'GET', '/healthz')).status).toBe(200);
    const ok = cardTransaction();
    ok.paymentMethod.pan = SEED_PAN;
    expect((await t.call('checkout', 'POST', '/v1/transactions', ok)).status).toBe(201);
  });
});

describe('processor names and malformed HTTP', () => {
  it('an admin cannot register a processor whose name holds a card number (found by the hostile run)', async () => {
    const pan = fixtures.cards[0]!.pan;
    const r = await raw('admin', 'PUT', `/v1/admin/processors/ord-${pan}`, '{"status":"active"}', { 'content-type': 'application/json' });
    expect(r.status).toBe(422);
    expect(r.text).not.toContain(pan);
    const list = await raw('admin', 'GET', '/v1/admin/processors');
    expect(list.status).toBe(200);
    expect(list.text).not.toContain(pan);
  });

  it('a request the HTTP parser refuses is a 400 in our error format, and the next connection works', async () => {
    // A GET body without a length (Node's client sends it unframed): the body bytes are a
    // malformed second request on the same connection.
    const agent = new Agent({ ca: t.paylog.devPki!.caCertPem, keepAlive: true, maxSockets: 1, cert: readFileSync(t.paylog.devPki!.principals["auditor"]!.certPath), key: readFileSync(t.paylog.devPki!.principals["auditor"]!.keyPath) });
    try {
      const send = (method: string, path: string, body?: string) =>
        new Promise<{ status: number; text: string }>((resolve, reject) => {
          const req = httpsRequest(`${t.paylog.url}${path}`, { method, agent }, (res) => {
            const c: Buffer[] = [];
            res.on('data', (x: Buffer) => c.push(x));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(c).toString() }));
          });
          req.on('error', reject);
          req.end(body);
        });
      const bad = await send('GET', '/v1/log/key', `{"pan":"${fixtures.cards[0]!.pan}"}`);
      expect(bad.status).toBe(400);
      expect(JSON.parse(bad.text).error.code).toBe('BAD_REQUEST');
      expect(bad.text).not.toContain(fixtures.cards[0]!.pan);
      expect((await send('GET', '/healthz')).status).toBe(200);
    } finally {
      agent.destroy();
    }
  });
});

describe('replays', () => {
  it('a replay whose stored leaf hash is missing fails instead of reporting an empty hash', async () => {
    const body = cardTransaction();
    body.paymentMethod.pan = SEED_PAN;
    const first = await t.call('checkout', 'POST', '/v1/transactions', body);
    expect(first.status).toBe(201);
    const [row] = await sql<{ log_index: string; request_mac: Buffer }>('SELECT log_index, request_mac FROM transactions WHERE transaction_id = $1', [body.transactionId]);
    const index = Number(row!.log_index);
    // Tamper as the database owner: remove the entry's level-0 Merkle node (restored below).
    const [node] = await sql<{ hash: Buffer }>('SELECT hash FROM merkle_nodes WHERE level = 0 AND idx = $1', [index]);
    await sql('ALTER TABLE merkle_nodes DISABLE TRIGGER ALL');
    await sql('DELETE FROM merkle_nodes WHERE level = 0 AND idx = $1', [index]);
    try {
      await replayWithoutLeafNode(body, row!.request_mac, first.json.leafHash as string);
    } finally {
      await sql('INSERT INTO merkle_nodes (level, idx, hash) VALUES (0, $1, $2)', [index, node!.hash]);
      await sql('ALTER TABLE merkle_nodes ENABLE TRIGGER ALL');
    }
  });
});

async function replayWithoutLeafNode(body: Record<string, any>, requestMac: Buffer, leafHash: string): Promise<void> {
  {
    const replay = t.paylog.appender.append({
      kind: 'transaction',
      leaf: Buffer.from('{}'),
      createdAt: new Date(),
      transaction: { transactionId: body.transactionId, requestMac } as never,
      dataKey: { kmsKeyId: 'k', wrappedKey: Buffer.alloc(1) },
    });
    await expect(replay).rejects.toMatchObject({ code: 'INTERNAL' });
    // Over HTTP the service answers replays from the stored leaf itself (leaf v2): either a
    // refusal or the original's leaf hash — never an empty one.
    const r = await t.call('checkout', 'POST', '/v1/transactions', body);
    if (r.status === 200) expect(r.json.leafHash).toBe(leafHash);
    else expect(r.status).toBeGreaterThanOrEqual(400);
    expect(leafHash.length).toBeGreaterThan(0);
  }
}
