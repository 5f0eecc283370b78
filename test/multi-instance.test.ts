/**
 * Several service instances on one database: appends from both are serialised into one dense
 * log whose root is the from-scratch RFC 9162 root, and one transaction id submitted to both at
 * once still makes exactly one entry.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { cardTransaction, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { hashLeaf, rootFromLeafHashes } from '../src/log/merkle.js';

let a: TestPaylog;
let b: TestPaylog;
beforeAll(async () => {
  a = await startTestPaylog();
  // Same database and data dir (same KMS key store and PKI), second process-like instance.
  b = await startTestPaylog({ databaseUrl: a.databaseUrl, dataDir: a.dataDir });
});
afterAll(async () => {
  await b?.stop();
  await a?.stop();
});

describe('two instances, one database', () => {
  it('interleaved concurrent appends form one dense, correct tree', async () => {
    const results = await Promise.all(
      Array.from({ length: 80 }, (_, i) => (i % 2 ? a : b).call('checkout', 'POST', '/v1/transactions', cardTransaction())),
    );
    expect(results.map((r) => r.status).every((s) => s === 201)).toBe(true);
    const indexes = results.map((r) => r.json.logIndex).sort((x, y) => x - y);
    expect(new Set(indexes).size).toBe(80);
    const c = new pg.Client({ connectionString: a.databaseUrl });
    await c.connect();
    try {
      const leaves = (await c.query('SELECT idx, leaf FROM log_entries ORDER BY idx')).rows;
      leaves.forEach((l, i) => expect(Number(l.idx)).toBe(i));
      const head = (await c.query('SELECT size, root_hash FROM tree_heads ORDER BY size DESC LIMIT 1')).rows[0];
      expect(Number(head.size)).toBe(leaves.length);
      expect(rootFromLeafHashes(leaves.map((l) => hashLeaf(l.leaf))).equals(head.root_hash)).toBe(true);
    } finally {
      await c.end();
    }
  });

  it('one new transaction id sent to both instances at once makes exactly one entry', async () => {
    const body = cardTransaction();
    const results = await Promise.all(
      Array.from({ length: 16 }, (_, i) => (i % 2 ? a : b).call('checkout', 'POST', '/v1/transactions', body)),
    );
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    expect(results.filter((r) => r.status === 200)).toHaveLength(15);
    expect(new Set(results.map((r) => r.json.logIndex)).size).toBe(1);
    // Either instance releases it to its processor.
    const rel = await b.call('processor-acme', 'POST', `/v1/transactions/${body.transactionId}/release`, { purpose: 'authorize' });
    expect(rel.status).toBe(200);
    expect(rel.json.paymentMethod.pan).toBe(body.paymentMethod.pan);
  });

  it('a processor disabled through one instance is refused at once by the other, which had sealed for it before', async () => {
    // a learns acme's current epoch (after this it submits without a database read first).
    expect((await a.call('checkout', 'POST', '/v1/transactions', cardTransaction())).status).toBe(201);
    expect((await b.call('admin', 'PUT', '/v1/admin/processors/acme', { status: 'disabled' })).status).toBeLessThan(300);
    try {
      const size0 = await logSize();
      const body = cardTransaction();
      const r = await a.call('checkout', 'POST', '/v1/transactions', body);
      expect(r.status, r.text).toBe(422);
      expect(r.json.error.code).toBe('UNKNOWN_PROCESSOR');
      expect(await logSize()).toBe(size0); // refused at commit: nothing appended
    } finally {
      expect((await b.call('admin', 'PUT', '/v1/admin/processors/acme', { status: 'active' })).status).toBeLessThan(300);
    }
    expect((await a.call('checkout', 'POST', '/v1/transactions', cardTransaction())).status).toBe(201);
  });
});

async function logSize(): Promise<number> {
  const c = new pg.Client({ connectionString: a.databaseUrl });
  await c.connect();
  try {
    return (await c.query('SELECT count(*)::int AS n FROM log_entries')).rows[0].n;
  } finally {
    await c.end();
  }
}
