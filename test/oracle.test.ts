/**
 * Issue 17, "No oracle" (SECURITY.md "What each principal is served, and why it cannot be
 * correlated"). The attacker holds the checkout certificate (the real dev one, over real mTLS)
 * and knows only a victim's transactionId. For every identifier kind — 16-, 13- and 15-digit
 * cards, a US bank account with an 8-digit account number, an IBAN, a shredded record and a
 * record stored in leaf format 2 (BIN + v1 fingerprint in its leaf) — it enumerates candidates
 * that agree with everything checkout is served, the true value among them, and submits each as
 * a new transaction and as a replay of the victim's id. Nothing it receives (status, body,
 * headers, receipts, GET views, leaf bytes) depends on which candidate is true; the probe limit
 * refuses new transactions beyond PAYLOG_PROBE_LIMIT_PER_HOUR (the default) per served payment fields per hour, and
 * that is counted in metrics. Also: a processor's 404 for "not yours" equals "does not exist"
 * and comes before the leaf is decoded; refused submissions' log lines name the principal.
 * Real PostgreSQL, the real KMS client against the local endpoint.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'undici';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPaylog, type HttpResult, type TestPaylog } from './helpers/paylog.js';
import { decodeLeaf, encodeLeaf, transactionLeaf } from '../src/log/leaf.js';
import { DEFAULT_PROBE_LIMIT_PER_HOUR } from '../src/services/probe-limit.js';
import { issuePrincipalCertificate } from '../src/pki/ca.js';

/** The production default of PAYLOG_PROBE_LIMIT_PER_HOUR. */
const LIMIT = DEFAULT_PROBE_LIMIT_PER_HOUR;
let t: TestPaylog;
/** The service clock (advanced by the window test). */
let clockOffsetMs = 0;
const YEAR = new Date().getUTCFullYear() + 3;
const HOLDER = 'Jane Q Customer';
/** The attacker does not know the holder name (never served): its candidates carry another. */
const ATTACKER_HOLDER = 'Anybody';

beforeAll(async () => {
  // The probe limit counts per clock hour: start at least ten minutes before the next hour
  // (moving the service clock forward only), so no window ends in the middle of a scenario.
  const intoHour = Date.now() % 3_600_000;
  if (intoHour > 50 * 60_000) clockOffsetMs = 3_600_000 - intoHour + 60_000;
  t = await startTestPaylog({ env: { PAYLOG_PROBE_LIMIT_PER_HOUR: String(LIMIT) }, clock: () => new Date(Date.now() + clockOffsetMs) });
}, 120_000);
afterAll(async () => {
  await t?.stop();
});

// ---- candidates that agree with everything checkout is served ------------------------------

function luhnValid(d: string): boolean {
  let sum = 0;
  for (let i = 0; i < d.length; i++) {
    let x = Number(d[d.length - 1 - i]);
    if (i % 2 === 1) x = x * 2 > 9 ? x * 2 - 9 : x * 2;
    sum += x;
  }
  return sum % 10 === 0;
}

/**
 * Luhn-valid PANs with the same leading digits the attacker was served before the fix (8 for
 * 16+ digits, else 6), the same last four, different hidden digits: exactly the issue's attack.
 */
function cardCandidates(pan: string, count: number): string[] {
  const visible = pan.length >= 16 ? 8 : 6;
  const hidden = pan.length - visible - 4;
  const out = new Set<string>();
  while (out.size < count) {
    const h = Array.from({ length: hidden - 1 }, () => randomInt(10)).join('');
    for (let last = 0; last < 10; last++) {
      const c = pan.slice(0, visible) + h + last + pan.slice(-4);
      if (c !== pan && luhnValid(c)) {
        out.add(c);
        break;
      }
    }
  }
  return [...out];
}

/** Account numbers of the same length and last four: the 10^4 candidates of an 8-digit account. */
function accountCandidates(acct: string, count: number): string[] {
  const out = new Set<string>();
  while (out.size < count) {
    const c = Array.from({ length: acct.length - 4 }, () => randomInt(10)).join('') + acct.slice(-4);
    if (c !== acct) out.add(c);
  }
  return [...out];
}

/** ISO 7064 mod 97-10 check digits of an IBAN with this country and BBAN. */
function ibanOf(country: string, bban: string): string {
  const digits = (bban + country + '00').replace(/[A-Z]/g, (ch) => String(ch.charCodeAt(0) - 55));
  const check = 98n - (BigInt(digits) % 97n);
  return country + String(check).padStart(2, '0') + bban;
}

/** German IBANs with the same bank code and last four, other account digits (valid check digits). */
function ibanCandidates(iban: string, count: number): string[] {
  const bban = iban.slice(4);
  const out = new Set<string>();
  while (out.size < count) {
    const c = ibanOf(iban.slice(0, 2), bban.slice(0, 8) + Array.from({ length: bban.length - 12 }, () => randomInt(10)).join('') + bban.slice(-4));
    if (c !== iban) out.add(c);
  }
  return [...out];
}

// ---- what the attacker observes --------------------------------------------------------------

/** A fresh transactionId (fixed length, so answers carrying it have the same length). */
/**
 * A fresh transaction id: 12 hex characters (48 random bits) can never hold the 13-digit
 * Luhn-valid run that validation refuses in an identifier (16 could, about once in a thousand
 * ids, which made this file fail now and then).
 */
const newId = (p: string) => `${p}-${randomBytes(6).toString('hex')}`;

/** An answer with the values that differ per transaction by construction (id, index, time, hash) removed. */
function perTransactionFieldsRemoved(json: any): any {
  if (!json || typeof json !== 'object') return json;
  const { transactionId: _i, logIndex: _l, leafHash: _h, createdAt: _c, leaf: _leaf, proof: _p, ...rest } = json;
  if (rest.error?.details?.retryAfterSeconds !== undefined) rest.error = { ...rest.error, details: { ...rest.error.details, retryAfterSeconds: 'n' } };
  return rest;
}

/** Header names and the values that are not per-request (date, request id, length, Retry-After seconds). */
function headerShape(r: HttpResult): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.headers)) {
    if (['date', 'x-request-id', 'content-length'].includes(k)) out[k] = '*';
    else if (k === 'retry-after') out[k] = /^\d+$/.test(String(v)) ? 'seconds' : String(v);
    else out[k] = String(v);
  }
  return out;
}

/** The leaf bytes served (if any), decoded: must hold no BIN and no fingerprint. */
function servedLeafFields(view: any): Record<string, unknown> | null {
  if (view.leaf === undefined) return null;
  const l = decodeLeaf(Buffer.from(view.leaf, 'base64')) as any;
  expect(l.v).toBe(3);
  expect(l).not.toHaveProperty('fp');
  expect(l.pm).not.toHaveProperty('bin');
  // What could depend on the card besides fresh randomness (ciphertext, IV, salt, key digests).
  return { pm: l.pm, amt: l.amt, cur: l.cur, p: l.p, md: l.md };
}

function metricValue(text: string, name: string): number {
  const m = text.match(new RegExp(`^${name} (\\d+)`, 'm'));
  return m ? Number(m[1]) : 0;
}

const probeRefusals = async () => metricValue((await t.call(null, 'GET', '/metrics')).text, 'paylog_probe_limit_refusals_total');

interface AttackResult {
  newStatuses: number[];
  truthIndex: number;
}

/**
 * The attack of the issue, as the checkout certificate, knowing only `victimId`. Asserts that no
 * answer distinguishes the true candidate, and returns the statuses seen.
 */
async function attack(victimBody: any, candidates: any[], truthIndex: number): Promise<AttackResult> {
  const victimId = victimBody.transactionId as string;
  const seen = await t.call('checkout', 'GET', `/v1/transactions/${victimId}`);
  expect(seen.status, seen.text).toBe(200);
  expect(seen.json.paymentMethod).not.toHaveProperty('bin');
  expect(seen.json).not.toHaveProperty('fingerprint');
  if (seen.json.leafFormat === 3) servedLeafFields(seen.json);

  const base = { processor: seen.json.processor, amount: seen.json.amount, metadata: seen.json.metadata ?? undefined };

  // 1. Replays of the victim's id, one per candidate: the same bytes every time (the original receipt).
  const replays: HttpResult[] = [];
  for (const pm of candidates) replays.push(await t.call('checkout', 'POST', '/v1/transactions', { ...base, transactionId: victimId, paymentMethod: pm }));
  for (const r of replays) {
    expect(r.status, r.text).toBe(200);
    expect(r.text).toBe(replays[0]!.text);
    expect(headerShape(r)).toEqual(headerShape(replays[0]!));
    expect(r.json.paymentMethod).toEqual(seen.json.paymentMethod);
  }

  // 2. Each candidate as a new transaction: the answers, and what a GET serves of each, agree.
  const before = await probeRefusals();
  const created: HttpResult[] = [];
  for (const pm of candidates) created.push(await t.call('checkout', 'POST', '/v1/transactions', { ...base, transactionId: newId('prb'), paymentMethod: pm }));
  const statuses = created.map((r) => r.status);
  expect(created.filter((r) => r.status !== 201 && r.status !== 429).map((r) => `${r.status} ${r.text}`)).toEqual([]);
  const admitted = created.filter((r) => r.status === 201);
  const refused = created.filter((r) => r.status === 429);
  expect(admitted.length + refused.length, statuses.join(',')).toBe(created.length);
  expect(statuses).toEqual([...statuses].sort()); // every 201 before every 429: the order, not the card, decides
  for (const r of admitted) {
    expect(perTransactionFieldsRemoved(r.json)).toEqual(perTransactionFieldsRemoved(admitted[0]!.json));
    expect(headerShape(r)).toEqual(headerShape(admitted[0]!));
    expect(r.json.paymentMethod).toEqual(seen.json.paymentMethod);
  }
  for (const r of refused) {
    expect(r.json.error.code).toBe('PROBE_LIMIT_EXCEEDED');
    expect(r.headers['retry-after']).toMatch(/^\d+$/);
    expect(perTransactionFieldsRemoved(r.json)).toEqual(perTransactionFieldsRemoved(refused[0]!.json));
    expect(headerShape(r)).toEqual(headerShape(refused[0]!));
  }
  expect((await probeRefusals()) - before).toBe(refused.length);
  const views = [];
  for (const r of admitted) {
    const v = await t.call('checkout', 'GET', `/v1/transactions/${r.json.transactionId}`);
    expect(v.status).toBe(200);
    expect(v.json).not.toHaveProperty('fingerprint');
    views.push({ view: perTransactionFieldsRemoved(v.json), leaf: servedLeafFields(v.json) });
  }
  for (const v of views) expect(v).toEqual(views[0]);
  return { newStatuses: statuses, truthIndex };
}

function cardPm(pan: string, expiryMonth: number, holderName = HOLDER) {
  return { type: 'card', pan, expiryMonth, expiryYear: YEAR, holderName };
}

/** The genuine checkout submits the victim's transaction. */
async function victim(paymentMethod: any): Promise<any> {
  const body = { transactionId: newId('vic'), processor: 'acme', amount: { value: 4200, currency: 'EUR' }, paymentMethod, metadata: { order: 'A-1' } };
  const r = await t.call('checkout', 'POST', '/v1/transactions', body);
  expect(r.status, r.text).toBe(201);
  expect(r.json.paymentMethod).not.toHaveProperty('bin');
  return body;
}

/** Candidates: `wrong` false ones with the truth inserted at `truthIndex`. */
function withTruth<T>(truth: T, wrong: T[], truthIndex: number): T[] {
  const out = [...wrong];
  out.splice(truthIndex, 0, truth);
  return out;
}

// The victim took one slot of its served group this hour (the genuine checkout is the same
// principal); the attacker's candidates take the rest, and LIMIT + 2 candidates
// always run into the limit.
const CANDIDATES = LIMIT + 2;
const expectedStatuses = (n: number) => Array.from({ length: n }, (_, i) => (i < LIMIT - 1 ? 201 : 429));

describe('no oracle: a checkout certificate that knows a transactionId learns nothing of the card (issue 17)', () => {
  const cardCases = [
    { name: '16-digit card', pan: '4111111111111111', month: 1 },
    { name: '13-digit card', pan: '6759641234567', month: 2 }, // maestro: 13 digits
    { name: '15-digit card', pan: '378282246310005', month: 3 },
  ];
  for (const c of cardCases) {
    it(`${c.name}: every candidate agreeing with the served fields gets the same answers, as a replay and as a new transaction`, async () => {
      const truth = cardPm(c.pan, c.month);
      const v = await victim(truth);
      const wrong = cardCandidates(c.pan, CANDIDATES - 1).map((pan) => cardPm(pan, c.month, ATTACKER_HOLDER));
      // The truth among the admitted ones here; beyond the limit below.
      const r = await attack(v, withTruth({ ...truth, holderName: ATTACKER_HOLDER }, wrong, 1), 1);
      expect(r.newStatuses).toEqual(expectedStatuses(CANDIDATES));
      // Past the limit the true card is refused exactly like a wrong one.
      const a = await t.call('checkout', 'POST', '/v1/transactions', { ...v, transactionId: newId('prb'), paymentMethod: truth });
      const b = await t.call('checkout', 'POST', '/v1/transactions', { ...v, transactionId: newId('prb'), paymentMethod: wrong[0] });
      expect([a.status, b.status]).toEqual([429, 429]);
      expect(perTransactionFieldsRemoved(a.json)).toEqual(perTransactionFieldsRemoved(b.json));
      // The genuine checkout's retry of the victim is unaffected by the limit.
      const retry = await t.call('checkout', 'POST', '/v1/transactions', v);
      expect(retry.status, retry.text).toBe(200);
    });
  }

  it('US bank account with an 8-digit account number (10^4 candidates with the served routing number and last four)', async () => {
    const pm = (accountNumber: string, holderName = HOLDER) => ({ type: 'us_bank_account', accountNumber, routingNumber: '011000015', accountType: 'checking', holderName });
    const v = await victim(pm('12345678'));
    const wrong = accountCandidates('12345678', CANDIDATES - 1).map((a) => pm(a, ATTACKER_HOLDER));
    const r = await attack(v, withTruth(pm('12345678', ATTACKER_HOLDER), wrong, 0), 0);
    expect(r.newStatuses).toEqual(expectedStatuses(CANDIDATES));
  });

  it('IBAN: candidates with the served country and last four', async () => {
    const pm = (iban: string, holderName = HOLDER) => ({ type: 'iban', iban, holderName });
    const v = await victim(pm('DE89370400440532013000'));
    const wrong = ibanCandidates('DE89370400440532013000', CANDIDATES - 1).map((i) => pm(i, ATTACKER_HOLDER));
    const r = await attack(v, withTruth(pm('DE89370400440532013000', ATTACKER_HOLDER), wrong, 4), 4);
    expect(r.newStatuses).toEqual(expectedStatuses(CANDIDATES));
  });

  it('a shredded record: the same, after an admin shred (release answers 410)', async () => {
    const truth = cardPm('5555555555554444', 4);
    const v = await victim(truth);
    const s = await t.call('admin', 'POST', `/v1/admin/transactions/${v.transactionId}/shred`, { reason: 'customer request' });
    expect(s.status, s.text).toBe(200);
    expect((await t.call('processor-acme', 'POST', `/v1/transactions/${v.transactionId}/release`, { purpose: 'capture' })).status).toBe(410);
    expect((await t.call('checkout', 'GET', `/v1/transactions/${v.transactionId}`)).json.shredded).toBe(true);
    const wrong = cardCandidates(truth.pan, CANDIDATES - 1).map((pan) => cardPm(pan, 4, ATTACKER_HOLDER));
    const r = await attack(v, withTruth({ ...truth, holderName: ATTACKER_HOLDER }, wrong, 2), 2);
    expect(r.newStatuses).toEqual(expectedStatuses(CANDIDATES));
  });

  it('a record stored in leaf format 2 (BIN and a v1 fingerprint in its leaf): checkout gets neither the leaf nor those fields; replays are judged on served fields', async () => {
    const id = newId('old');
    const now = new Date();
    const v3 = transactionLeaf({
      time: now,
      transactionId: id,
      processor: 'acme',
      amount: { value: 4200, currency: 'EUR' },
      paymentMethod: { type: 'card', brand: 'visa', last4: '1111', expiryMonth: 5, expiryYear: YEAR },
      metadata: { order: 'A-1' },
      envelope: { version: 1, key: { kmsKeyId: t.paylog.dataKeyId }, salt: randomBytes(16), iv: randomBytes(12), ciphertext: randomBytes(64), tag: randomBytes(16), keyCommitment: randomBytes(32), wrappedKey: randomBytes(64) },
    });
    const { epk: _epk, ...env } = v3.env;
    const v2 = { ...v3, v: 2, pm: { ...v3.pm, bin: '41111111' }, fp: 'fp_AAAAAAAAAAAAAAAAAAAAAA', env };
    // As the service wrote it before issue 17: no processor column, a v1 MAC over the whole body.
    const appended = await t.paylog.appender.append({
      kind: 'transaction',
      leaf: encodeLeaf(v2 as any),
      createdAt: now,
      transaction: { transactionId: id, requestMac: randomBytes(32) },
      dataKey: { kmsKeyId: t.paylog.dataKeyId, wrappedKey: randomBytes(64), epochId: null },
    });
    expect(appended.status).toBe('appended');

    const asCheckout = await t.call('checkout', 'GET', `/v1/transactions/${id}`);
    expect(asCheckout.status, asCheckout.text).toBe(200);
    expect(asCheckout.json.leafFormat).toBe(2);
    expect(asCheckout.json).not.toHaveProperty('leaf');
    expect(asCheckout.json).not.toHaveProperty('fingerprint');
    expect(asCheckout.json.paymentMethod).toEqual({ type: 'card', brand: 'visa', last4: '1111', expiryMonth: 5, expiryYear: YEAR });
    expect(asCheckout.text).not.toContain('41111111');
    const asAuditor = await t.call('auditor', 'GET', `/v1/transactions/${id}`);
    expect((decodeLeaf(Buffer.from(asAuditor.json.leaf, 'base64')) as any).fp).toBe('fp_AAAAAAAAAAAAAAAAAAAAAA'); // auditors verify the log
    expect(asAuditor.json).not.toHaveProperty('fingerprint');
    expect(asAuditor.json.paymentMethod).not.toHaveProperty('bin');
    const asAcme = await t.call('processor-acme', 'GET', `/v1/transactions/${id}`);
    expect(asAcme.status).toBe(200);
    expect(asAcme.json.leaf).toBe(asAuditor.json.leaf);
    expect(asAcme.json).not.toHaveProperty('fingerprint'); // a v1 fingerprint is never served
    expect((await t.call('processor-globex', 'GET', `/v1/transactions/${id}`)).status).toBe(404);

    const candidates = withTruth(cardPm('4111111111111111', 5, ATTACKER_HOLDER), cardCandidates('4111111111111111', 4).map((pan) => cardPm(pan, 5, ATTACKER_HOLDER)), 3);
    const base = { transactionId: id, processor: 'acme', amount: { value: 4200, currency: 'EUR' }, metadata: { order: 'A-1' } };
    const replays: HttpResult[] = [];
    for (const pm of candidates) replays.push(await t.call('checkout', 'POST', '/v1/transactions', { ...base, paymentMethod: pm }));
    for (const r of replays) {
      expect(r.status, r.text).toBe(200);
      expect(r.text).toBe(replays[0]!.text);
      expect(r.json.paymentMethod).not.toHaveProperty('bin');
    }
    const conflict = await t.call('checkout', 'POST', '/v1/transactions', { ...base, amount: { value: 4201, currency: 'EUR' }, paymentMethod: candidates[0] });
    expect(conflict.status).toBe(409);
  });

  it('a replay that differs in a served field is 409, logged at warn with its principal and nothing of the card', async () => {
    const v = await victim(cardPm('6011111111111117', 6));
    const candidate = cardPm(cardCandidates('6011111111111117', 1)[0]!, 6, ATTACKER_HOLDER);
    const lines0 = t.logLines.length;
    const r = await t.call('checkout', 'POST', '/v1/transactions', { ...v, amount: { value: 1, currency: 'EUR' }, paymentMethod: candidate });
    expect(r.status).toBe(409);
    expect(r.json.error.code).toBe('IDEMPOTENCY_CONFLICT');
    const lines = t.logLines.slice(lines0).map((l) => JSON.parse(l));
    const warn = lines.find((l) => l.event === 'idempotency_conflict');
    expect(warn).toMatchObject({ level: 40, transactionId: v.transactionId, principal: { role: 'checkout', name: expect.any(String), certificateFingerprint: expect.stringMatching(/^sha256:/) } });
    const text = t.logLines.slice(lines0).join('\n');
    expect(text).not.toContain(candidate.pan);
    expect(text).not.toContain(candidate.pan.slice(0, 8));
    expect(text).not.toContain(ATTACKER_HOLDER);
  });

  it('refused submissions\' request log lines name the principal (role, name, certificate fingerprint), never the body', async () => {
    const pan = '3530111333300000';
    const v = await victim(cardPm(pan, 7));
    const lines0 = t.logLines.length;
    const bad = await t.call('checkout', 'POST', '/v1/transactions', { ...v, transactionId: newId('bad'), paymentMethod: cardPm('3530111333300001', 7) });
    expect(bad.status).toBe(422);
    const conflict = await t.call('checkout', 'POST', '/v1/transactions', { ...v, amount: { value: 1, currency: 'EUR' } });
    expect(conflict.status).toBe(409);
    const lines = t.logLines.slice(lines0).map((l) => JSON.parse(l));
    for (const status of [422, 409]) {
      const done = lines.find((l) => l.msg === 'request completed' && l.statusCode === status);
      expect(done, `completion line of the ${status}`).toMatchObject({ route: '/v1/transactions', principal: { role: 'checkout', certificateFingerprint: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) } });
      expect(done.principal.name).toEqual(expect.any(String));
    }
    expect(lines.filter((l) => l.msg === 'request refused').every((l) => l.principal?.role === 'checkout')).toBe(true);
    const text = t.logLines.slice(lines0).join('\n');
    expect(text).not.toContain(pan.slice(0, 8));
    expect(text).not.toContain('3530111333300001');
  });

  it('the probe limit: other principals and genuine retries are unaffected; it holds in PostgreSQL and resets with the hour', async () => {
    const truth = cardPm('2223003122003222', 8);
    const v = await victim(truth);
    const others = cardCandidates(truth.pan, LIMIT).map((pan) => cardPm(pan, 8));
    const statuses = [];
    for (const pm of others) statuses.push((await t.call('checkout', 'POST', '/v1/transactions', { ...v, transactionId: newId('prb'), paymentMethod: pm })).status);
    expect(statuses).toEqual(expectedStatuses(LIMIT));
    // The state is in PostgreSQL (what every worker and instance reads).
    const owner = new pg.Client({ connectionString: t.databaseUrl });
    await owner.connect();
    try {
      const rows = await owner.query(`SELECT count(*)::int AS n FROM submission_probe_slots`);
      expect(rows.rows[0].n).toBeGreaterThanOrEqual(LIMIT);
      // Genuine retry of the victim: its receipt.
      expect((await t.call('checkout', 'POST', '/v1/transactions', v)).status).toBe(200);
      // Another checkout principal is not limited by this one's probes.
      const pki = t.paylog.devPki!;
      const two = issuePrincipalCertificate({ certPem: pki.caCertPem, keyPem: readFileSync(pki.caKeyPath, 'utf8') }, { role: 'checkout', name: 'checkout-two' });
      const agent = new Agent({ connect: { ca: pki.caCertPem, cert: two.certPem, key: two.keyPem, timeout: 120_000 } });
      try {
        const r = await request(`${t.paylog.url}/v1/transactions`, {
          method: 'POST',
          dispatcher: agent,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ ...v, transactionId: newId('two'), paymentMethod: others[0] }),
        });
        expect(r.statusCode, await r.body.text()).toBe(201);
      } finally {
        await agent.close();
      }
      // The next hour: admitted again, and the past hour's rows are deleted (by a purge the
      // submission starts and does not wait for: polled, with room for a loaded machine, where
      // expect.poll's default of 1 s is not).
      clockOffsetMs += 60 * 60 * 1000;
      const next = await t.call('checkout', 'POST', '/v1/transactions', { ...v, transactionId: newId('prb'), paymentMethod: others[1] });
      expect(next.status, next.text).toBe(201);
      await expect
        .poll(async () => (await owner.query('SELECT count(*)::int AS n FROM submission_probe_slots WHERE (grp >> 56) & 255 <> $1::bigint & 255', [Math.floor((Date.now() + clockOffsetMs) / 3_600_000)])).rows[0].n, { timeout: 30_000, interval: 100 })
        .toBe(0);
    } finally {
      await owner.end();
    }
  });

  it('the probe limit is exact across instances: concurrent new transactions of one group on two instances sharing the database', async () => {
    const t2 = await startTestPaylog({ databaseUrl: t.databaseUrl, dataDir: t.dataDir, env: { PAYLOG_PROBE_LIMIT_PER_HOUR: String(LIMIT) }, clock: () => new Date(Date.now() + clockOffsetMs) });
    try {
      const truth = cardPm('4000056655665556', 11);
      const cands = cardCandidates(truth.pan, 2 * LIMIT).map((pan) => cardPm(pan, 11));
      const body = (pm: any) => ({ transactionId: newId('par'), processor: 'acme', amount: { value: 1, currency: 'EUR' }, paymentMethod: pm });
      const results = await Promise.all(cands.map((pm, i) => (i % 2 === 0 ? t : t2).call('checkout', 'POST', '/v1/transactions', body(pm))));
      const statuses = results.map((r) => r.status);
      expect(results.filter((r) => r.status !== 201 && r.status !== 429).map((r) => `${r.status} ${r.text}`)).toEqual([]);
      expect(statuses.filter((s) => s === 201)).toHaveLength(LIMIT);
      expect(statuses.filter((s) => s === 429)).toHaveLength(LIMIT);
    } finally {
      await t2.stop();
    }
  });

  it('the assigned processor gets a v2 fingerprint (fp2_, the same for the same card); checkout and auditor never do', async () => {
    const a = await victim(cardPm('4000056655665556', 9));
    const b = await victim(cardPm('4000056655665556', 9));
    const fa = (await t.call('processor-acme', 'GET', `/v1/transactions/${a.transactionId}`)).json.fingerprint;
    const fb = (await t.call('processor-acme', 'GET', `/v1/transactions/${b.transactionId}`)).json.fingerprint;
    expect(fa).toMatch(/^fp2_[A-Za-z0-9_-]{22}$/);
    expect(fb).toBe(fa);
    // Stored as its 16 bytes (migration 0019), served as the same text; a row from before, with
    // the text in `fingerprint`, is served from it unchanged.
    const owner = new pg.Client({ connectionString: t.databaseUrl });
    await owner.connect();
    try {
      const [row] = (await owner.query('SELECT fingerprint, fingerprint_v2 FROM transactions WHERE transaction_id = $1', [a.transactionId])).rows;
      expect(row.fingerprint).toBeNull();
      expect(`fp2_${(row.fingerprint_v2 as Buffer).toString('base64url')}`).toBe(fa);
      const old = await victim(cardPm('4000056655665556', 9));
      await owner.query('ALTER TABLE transactions DISABLE TRIGGER transactions_no_update_delete');
      try {
        await owner.query('UPDATE transactions SET fingerprint = $2, fingerprint_v2 = NULL WHERE transaction_id = $1', [old.transactionId, fa]);
      } finally {
        await owner.query('ALTER TABLE transactions ENABLE ALWAYS TRIGGER transactions_no_update_delete');
      }
      expect((await t.call('processor-acme', 'GET', `/v1/transactions/${old.transactionId}`)).json.fingerprint).toBe(fa);
    } finally {
      await owner.end();
    }
    for (const who of ['checkout', 'auditor'] as const) {
      const r = await t.call(who, 'GET', `/v1/transactions/${a.transactionId}`);
      expect(r.json).not.toHaveProperty('fingerprint');
      expect(r.json.paymentMethod).not.toHaveProperty('bin');
    }
  });
});

describe('a processor learns nothing about another processor\'s transactions (issue 17)', () => {
  it('"not yours" and "does not exist" answer the same bytes and headers', async () => {
    const v = await victim(cardPm('4111111111111111', 10));
    const notYours = await t.call('processor-globex', 'GET', `/v1/transactions/${v.transactionId}`);
    const missing = await t.call('processor-globex', 'GET', `/v1/transactions/${newId('vic')}`);
    expect(notYours.status).toBe(404);
    expect(missing.status).toBe(404);
    expect(notYours.bytes.equals(missing.bytes)).toBe(true);
    const shape = (r: HttpResult) => Object.fromEntries(Object.entries(r.headers).filter(([k]) => k !== 'date' && k !== 'x-request-id'));
    expect(shape(notYours)).toEqual(shape(missing));
    expect((await t.call('processor-acme', 'GET', `/v1/transactions/${v.transactionId}`)).status).toBe(200);
  });

  it('authorization comes before the leaf is decoded: a record whose leaf cannot be decoded is 404 to another processor, 422 to its own', async () => {
    // Structure, not timing: if "not yours" decoded the leaf (or built a proof, or read the shred
    // state, all of which come after decoding) it would fail here with INTEGRITY_FAILURE.
    const id = newId('bad');
    const appended = await t.paylog.appender.append({
      kind: 'transaction',
      leaf: Buffer.from('not a leaf'),
      createdAt: new Date(),
      transaction: { transactionId: id, requestMac: randomBytes(32), processor: 'acme' },
      dataKey: { kmsKeyId: t.paylog.dataKeyId, wrappedKey: randomBytes(64), epochId: null },
    });
    expect(appended.status).toBe('appended');
    const notYours = await t.call('processor-globex', 'GET', `/v1/transactions/${id}`);
    const missing = await t.call('processor-globex', 'GET', `/v1/transactions/${newId('bad')}`);
    expect(notYours.status, notYours.text).toBe(404);
    expect(notYours.bytes.equals(missing.bytes)).toBe(true);
    const own = await t.call('processor-acme', 'GET', `/v1/transactions/${id}`);
    expect(own.status, own.text).toBe(422);
    expect(own.json.error.code).toBe('INTEGRITY_FAILURE');
    // The access list is authorized the same way.
    const accNotYours = await t.call('processor-globex', 'GET', `/v1/transactions/${id}/accesses`);
    const accMissing = await t.call('processor-globex', 'GET', `/v1/transactions/${newId('bad')}/accesses`);
    expect(accNotYours.status, accNotYours.text).toBe(404);
    expect(accNotYours.bytes.equals(accMissing.bytes)).toBe(true);
    expect((await t.call('processor-acme', 'GET', `/v1/transactions/${id}/accesses`)).status).toBe(422);
  });
});
