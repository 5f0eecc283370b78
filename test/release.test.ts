/**
 * Release path: plaintext only to the processor assigned to the transaction, every release
 * and every refused attempt appended to the log first. Real HTTPS with client certificates,
 * real PostgreSQL, real KMS client.
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { query } from './helpers/db.js';
import { cardTransaction, startTestPaylog, type PrincipalName, type TestPaylog } from './helpers/paylog.js';
import { accessViewFromLeaf, decodeLeaf } from '../src/log/leaf.js';

let t: TestPaylog;
const PAN = '5555555555554444';
const ids = { acme: '', globex: '', unknown: 'ord-does-not-exist' };
const bodies: Record<string, any> = {};

const sql = <T = any>(text: string, params: unknown[] = [], url = t.databaseUrl) => query<T>(url, text, params);
const treeSize = async () => Number((await sql('SELECT coalesce(max(size),0) AS n FROM tree_heads'))[0].n);

beforeAll(async () => {
  t = await startTestPaylog();
  for (const processor of ['acme', 'globex'] as const) {
    const body = cardTransaction({ processor, paymentMethod: { type: 'card', pan: PAN, expiryMonth: 6, expiryYear: 2039, holderName: 'Ana Müller' } });
    const r = await t.call('checkout', 'POST', '/v1/transactions', body);
    expect(r.status).toBe(201);
    ids[processor] = body.transactionId;
    bodies[processor] = body;
  }
});
afterAll(async () => {
  await t?.stop();
});

type Who = PrincipalName | null;
type Target = keyof typeof ids;
const WHO: Who[] = ['checkout', 'processor-acme', 'processor-globex', 'auditor', 'admin', null];
const TARGETS: Target[] = ['acme', 'globex', 'unknown'];

/** Expected status per route, role and target (own = the transaction's assigned processor). */
function expected(route: 'read' | 'release' | 'accesses', who: Who, target: Target): number {
  if (who === null) return 401;
  const own = who === `processor-${target}`;
  const isProcessor = who.startsWith('processor-');
  switch (route) {
    case 'read':
      if (who === 'admin') return 403;
      if (target === 'unknown') return 404;
      if (isProcessor) return own ? 200 : 404;
      return 200;
    case 'release':
      if (!isProcessor) return 403;
      return own ? 200 : 404;
    case 'accesses':
      if (who === 'checkout' || who === 'admin') return 403;
      if (target === 'unknown') return 404;
      if (isProcessor) return own ? 200 : 404;
      return 200;
  }
}

describe('authorization matrix: every role × route × own/other/unknown', () => {
  for (const route of ['read', 'release', 'accesses'] as const) {
    for (const who of WHO) {
      for (const target of TARGETS) {
        const want = expected(route, who, target);
        it(`${route} by ${who ?? 'no certificate'} on ${target} → ${want}`, async () => {
          const id = ids[target];
          const before = await treeSize();
          const r =
            route === 'read'
              ? await t.call(who, 'GET', `/v1/transactions/${id}`)
              : route === 'release'
                ? await t.call(who, 'POST', `/v1/transactions/${id}/release`, { purpose: 'authorize', reference: 'auth-1' })
                : await t.call(who, 'GET', `/v1/transactions/${id}/accesses`);
          expect(r.status, r.text).toBe(want);
          expect(r.headers['cache-control']).toBe('no-store');
          if (want === 200 && route === 'release') {
            expect(r.json.paymentMethod).toEqual(bodies[target].paymentMethod);
          } else {
            expect(r.text).not.toContain(PAN);
            expect(r.text).not.toContain('Ana Müller');
            if (want !== 200) expect(typeof r.json.error.code).toBe('string');
          }
          const after = await treeSize();
          // Every authenticated release attempt, granted or refused, is one new log entry.
          expect(after - before).toBe(route === 'release' && who !== null ? 1 : 0);
          if (route === 'release' && who !== null) {
            const [row] = await sql('SELECT leaf FROM log_entries WHERE idx = $1', [after - 1]);
            const leaf = decodeLeaf(row.leaf);
            expect(leaf).toMatchObject({
              type: 'access',
              action: 'release',
              // An unknown id is logged only as a keyed digest.
              transactionId: target === 'unknown' ? expect.stringMatching(/^unknown:[A-Za-z0-9_-]{22}$/) : id,
              outcome: want === 200 ? 'granted' : 'denied',
            });
            if (leaf.type === 'access') {
              const view = leaf.v === 1 ? leaf : accessViewFromLeaf(leaf);
              expect(view.principal.role).toBe(who.startsWith('processor-') ? 'processor' : who);
              expect(view.principal.certificateFingerprint).toBe(t.paylog.devPki!.principals[who]!.fingerprint);
              expect(view.sourceAddress).toMatch(/127\.0\.0\.1/);
              if (want === 200) expect(r.json.accessLogIndex).toBe(after - 1);
            }
          }
        });
      }
    }
  }
});

describe('release', () => {
  it('returns exactly what checkout submitted for card, US bank account and IBAN', async () => {
    const methods = [
      { type: 'card', pan: '378282246310005', expiryMonth: 3, expiryYear: 2040, holderName: 'Zoë Ñandú' },
      { type: 'us_bank_account', accountNumber: '000123456789', routingNumber: '021000021', accountType: 'savings', holderName: 'Jo Doe' },
      { type: 'iban', iban: 'GB82WEST12345698765432', bic: 'NWBKGB2L', holderName: 'Jo Doe' },
    ];
    for (const paymentMethod of methods) {
      const body = cardTransaction({ paymentMethod });
      expect((await t.call('checkout', 'POST', '/v1/transactions', body)).status).toBe(201);
      const r = await t.call('processor-acme', 'POST', `/v1/transactions/${body.transactionId}/release`, { purpose: 'capture' });
      expect(r.status).toBe(200);
      expect(r.json.paymentMethod).toEqual(paymentMethod);
      expect(r.json.amount).toEqual(body.amount);
    }
  });

  it('lists access entries with log indexes for auditors and the assigned processor', async () => {
    const r = await t.call('auditor', 'GET', `/v1/transactions/${ids.acme}/accesses`);
    expect(r.status).toBe(200);
    const granted = r.json.accesses.filter((a: any) => a.outcome === 'granted');
    expect(granted.length).toBeGreaterThan(0);
    for (const a of r.json.accesses) {
      expect(typeof a.logIndex).toBe('number');
      expect(a).toHaveProperty('principal.certificateFingerprint');
      expect(a).toHaveProperty('sourceAddress');
      expect(a).toHaveProperty('time');
    }
    // Paged: limit + next cursor walk the same list.
    const all = r.json.accesses.map((a: any) => a.logIndex);
    const paged: number[] = [];
    let after: number | undefined;
    for (let guard = 0; guard < 100; guard++) {
      const p = await t.call('auditor', 'GET', `/v1/transactions/${ids.acme}/accesses?limit=2${after !== undefined ? `&after=${after}` : ''}`);
      expect(p.json.accesses.length).toBeLessThanOrEqual(2);
      paged.push(...p.json.accesses.map((a: any) => a.logIndex));
      if (p.json.next === undefined) break;
      after = p.json.next;
    }
    expect(paged).toEqual(all);
    const denied = r.json.accesses.filter((a: any) => a.outcome === 'denied');
    expect(denied.map((a: any) => a.principal.name)).toEqual(expect.arrayContaining(['checkout', 'globex', 'auditor']));
  });

  it('refuses a bad purpose (logged as denied) and a PAN in the reference', async () => {
    const before = await treeSize();
    const bad = await t.call('processor-acme', 'POST', `/v1/transactions/${ids.acme}/release`, { purpose: 'curiosity' });
    expect(bad.status).toBe(422);
    const pan = await t.call('processor-acme', 'POST', `/v1/transactions/${ids.acme}/release`, { purpose: 'refund', reference: `re ${PAN}` });
    expect(pan.status).toBe(422);
    expect(pan.text).not.toContain(PAN);
    expect(await treeSize()).toBe(before + 2);
    const leaves = await sql(`SELECT encode(leaf, 'escape') AS l FROM log_entries WHERE idx >= $1`, [before]);
    expect(leaves.map((l) => l.l).join('')).not.toContain(PAN);
  });

  it('fails closed: if the access entry cannot be made durable, no plaintext leaves (503)', async () => {
    // Make the append itself fail inside the database, after authorization and decryption.
    await sql(`CREATE FUNCTION test_fail_access() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$`);
    await sql(`CREATE TRIGGER test_fail_access BEFORE INSERT ON access_entries FOR EACH ROW EXECUTE FUNCTION test_fail_access()`);
    try {
      const before = await treeSize();
      const r = await t.call('processor-acme', 'POST', `/v1/transactions/${ids.acme}/release`, { purpose: 'authorize' });
      expect(r.status).toBe(503);
      expect(r.json.error.code).toBe('LOG_UNAVAILABLE');
      expect(r.text).not.toContain(PAN);
      expect(r.text).not.toContain('Ana Müller');
      expect(await treeSize()).toBe(before); // the whole batch rolled back
    } finally {
      await sql('DROP TRIGGER test_fail_access ON access_entries');
      await sql('DROP FUNCTION test_fail_access()');
    }
    const ok = await t.call('processor-acme', 'POST', `/v1/transactions/${ids.acme}/release`, { purpose: 'authorize' });
    expect(ok.status).toBe(200);
  });

  it('fails closed when the database goes away: 503, no plaintext', async () => {
    const dbName = new URL(t.databaseUrl).pathname.slice(1);
    const admin = new URL(t.databaseUrl);
    admin.pathname = '/postgres';
    await sql(`ALTER DATABASE ${dbName} WITH ALLOW_CONNECTIONS false`, [], admin.toString());
    await sql(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [dbName], admin.toString());
    try {
      const r = await t.call('processor-acme', 'POST', `/v1/transactions/${ids.acme}/release`, { purpose: 'authorize' });
      expect(r.status, t.logLines.filter((l) => l.includes('internal error')).join('\n')).toBe(503);
      expect(r.text).not.toContain(PAN);
    } finally {
      await sql(`ALTER DATABASE ${dbName} WITH ALLOW_CONNECTIONS true`, [], admin.toString());
    }
    // The service recovers once the database is back.
    let status = 0;
    for (let i = 0; i < 20 && status !== 200; i++) {
      status = (await t.call('processor-acme', 'POST', `/v1/transactions/${ids.acme}/release`, { purpose: 'authorize' })).status;
    }
    expect(status).toBe(200);
  });

  it('a disabled processor has no access, and cannot be named by checkout', async () => {
    const off = await t.call('admin', 'PUT', '/v1/admin/processors/globex', { status: 'disabled' });
    expect(off.status).toBe(200);
    try {
      const r = await t.call('processor-globex', 'POST', `/v1/transactions/${ids.globex}/release`, { purpose: 'authorize' });
      expect(r.status).toBe(404);
      expect(r.text).not.toContain(PAN);
      expect((await t.call('processor-globex', 'GET', `/v1/transactions/${ids.globex}`)).status).toBe(404);
      const submit = await t.call('checkout', 'POST', '/v1/transactions', cardTransaction({ processor: 'globex' }));
      expect(submit.status).toBe(422);
      expect(submit.json.error.code).toBe('UNKNOWN_PROCESSOR');
      // An identical replay of an earlier submission is still a replay.
      const replay = await t.call('checkout', 'POST', '/v1/transactions', bodies.globex);
      expect(replay.status).toBe(200);
    } finally {
      expect((await t.call('admin', 'PUT', '/v1/admin/processors/globex', { status: 'active' })).status).toBe(200);
    }
    expect((await t.call('processor-globex', 'GET', `/v1/transactions/${ids.globex}`)).status).toBe(200);
  });

  it('only admins manage processors and revocations', async () => {
    for (const who of ['checkout', 'processor-acme', 'auditor'] as const) {
      expect((await t.call(who, 'PUT', '/v1/admin/processors/initech', { status: 'active' })).status).toBe(403);
      expect((await t.call(who, 'POST', '/v1/admin/revocations', { serial: '01' })).status).toBe(403);
      expect((await t.call(who, 'GET', '/v1/admin/processors')).status).toBe(403);
    }
    const list = await t.call('admin', 'GET', '/v1/admin/processors');
    expect(list.json.processors.map((p: any) => p.name)).toEqual(['acme', 'globex']);
  });

  it('a card number typed into a URL reaches neither the log nor the log lines', async () => {
    const before = await treeSize();
    for (const [who, path] of [
      ['checkout', `/v1/transactions/${PAN}/release`],
      ['processor-acme', `/v1/transactions/${PAN}/release`],
      ['processor-acme', `/v1/transactions/4111-1111-1111-1111/release`],
      ['auditor', `/v1/transactions/${PAN}`],
      ['auditor', `/v1/transactions/${PAN}/accesses`],
      ['auditor', `/v1/log/proof/inclusion?transactionId=${PAN}`],
      ['auditor', `/v1/no-such-route/${PAN}?pan=${PAN}`],
    ] as const) {
      const r = await t.call(who, who === 'auditor' ? 'GET' : 'POST', path, who === 'auditor' ? undefined : { purpose: 'authorize' });
      expect(r.status, path).toBeGreaterThanOrEqual(400);
      expect(r.status, path).toBeLessThan(500);
      expect(r.text).not.toContain(PAN);
    }
    // The refused releases are logged — with the id as a keyed digest.
    expect(await treeSize()).toBe(before + 3);
    const leaves = await sql(`SELECT encode(leaf, 'escape') AS l FROM log_entries WHERE idx >= $1`, [before]);
    const text = leaves.map((l) => l.l).join('\n');
    expect(text).not.toContain(PAN);
    expect(text).not.toContain('4111-1111');
    const rows = await sql('SELECT transaction_id FROM access_entries WHERE log_index >= $1', [before]);
    expect(rows.map((r) => r.transaction_id).join()).not.toContain('4111');
    // (Short digit runs occur by chance in timestamps and durations: look for the full values.)
    const logs = t.logLines.join('\n');
    expect(logs).not.toContain(PAN);
    expect(logs).not.toContain('4111-1111-1111-1111');
  });

  it('an unparseable or non-JSON release body is a refused, logged attempt (never a parser error)', async () => {
    const before = await treeSize();
    const cases: Array<[string | undefined, Record<string, string>]> = [
      ['{"purpose": "authorize"', { 'content-type': 'application/json' }],
      ['purpose=authorize', { 'content-type': 'application/x-www-form-urlencoded' }],
      ['', { 'content-type': 'application/json' }],
    ];
    for (const [raw, headers] of cases) {
      const r = await t.call('processor-acme', 'POST', `/v1/transactions/${ids.acme}/release`, undefined, { ...(raw !== undefined ? { raw } : {}), headers });
      expect(r.status).toBe(422);
      expect(r.json.error.code).toBe('VALIDATION_FAILED');
      expect(r.text).not.toContain(PAN);
    }
    expect(await treeSize()).toBe(before + cases.length);
  });

  it('no PAN or holder name in any captured log line', () => {
    const all = t.logLines.join('\n');
    expect(all).not.toContain(PAN);
    expect(all).not.toContain('378282246310005');
    expect(all).not.toContain('000123456789');
    expect(all).not.toContain('GB82WEST12345698765432');
  });
});

describe('revocation and rate limits (survive a restart)', () => {
  it('a revoked certificate is refused immediately, and still after a restart; rate limit → 429', async () => {
    const globexFp = t.paylog.devPki!.principals['processor-globex']!.fingerprint;
    expect((await t.call('processor-globex', 'GET', `/v1/transactions/${ids.globex}`)).status).toBe(200);
    const rv = await t.call('admin', 'POST', '/v1/admin/revocations', { fingerprint: globexFp, reason: 'key compromise' });
    expect(rv.status).toBe(201);
    // Same keep-alive connection, next request: refused.
    const after = await t.call('processor-globex', 'GET', `/v1/transactions/${ids.globex}`);
    expect(after.status).toBe(401);
    expect(after.json.error.code).toBe('CERTIFICATE_REVOKED');

    // Restart on the same database and data dir with a low release rate.
    const { databaseUrl, dataDir } = t;
    const oldStop = t.stop;
    await t.paylog.close();
    const t2 = await startTestPaylog({ databaseUrl, dataDir, env: { PAYLOG_RELEASE_RATE_PER_MINUTE: '3' } });
    try {
      expect((await t2.call('processor-globex', 'GET', `/v1/transactions/${ids.globex}`)).status).toBe(401);
      const statuses: number[] = [];
      let retryAfter: unknown;
      for (let i = 0; i < 5; i++) {
        const r = await t2.call('processor-acme', 'POST', `/v1/transactions/${ids.acme}/release`, { purpose: 'settlement' });
        statuses.push(r.status);
        if (r.status === 429) {
          retryAfter = r.headers['retry-after'];
          expect(r.json.error.code).toBe('RATE_LIMITED');
          expect(r.text).not.toContain(PAN);
        }
      }
      expect(statuses).toEqual([200, 200, 200, 429, 429]);
      expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    } finally {
      await t2.stop();
      // t is already closed: its stop() now only has to remove the shared data dir.
      t.stop = async () => rmSync(dataDir, { recursive: true, force: true });
      void oldStop;
    }
  });
});
