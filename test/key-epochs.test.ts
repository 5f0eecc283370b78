/**
 * Envelope v2 + key epochs (issue 9), end to end: real PostgreSQL, the real KMS client against
 * the local endpoint (KMS calls counted there), real HTTPS with client certificates.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTestDatabase, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { DATA_KEYS_WHOLE, query } from './helpers/db.js';
import { logLeaves, releaseTo, submitCard } from './helpers/keys.js';

const kmsCount = (t: TestPaylog, op: string) => t.paylog.localKms!.requestCounts.get(op) ?? 0;

const leaves = (t: TestPaylog) => logLeaves(t.databaseUrl);
const submit = submitCard;
const release = releaseTo;

describe('hierarchical key mode (default): envelope v2 under epoch keys', () => {
  let t: TestPaylog;
  // The injected clock: 59 minutes into an hour, moved by the tests.
  let now = new Date(Date.UTC(2026, 11, 1, 10, 59, 59, 0));
  beforeAll(async () => {
    t = await startTestPaylog({ env: { PAYLOG_KEY_EPOCH: 'hour' }, clock: () => now });
  });
  afterAll(async () => t?.stop());

  it('seals without a KMS call per record; the epoch is created once, its key event first', async () => {
    const gdk0 = kmsCount(t, 'GenerateDataKey');
    const enc0 = kmsCount(t, 'Encrypt');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await submit(t));
    expect(kmsCount(t, 'GenerateDataKey')).toBe(gdk0);
    expect(kmsCount(t, 'Encrypt')).toBe(enc0 + 1); // the one epoch private key, wrapped once
    const rows = await query(t.databaseUrl, `SELECT d.epoch_id, d.kms_key_id, length(d.wrapped_key) AS n FROM transactions t JOIN ${DATA_KEYS_WHOLE} d ON d.log_index = t.log_index WHERE t.transaction_id = ANY($1)`, [ids]);
    const txLeaves = (await leaves(t)).filter((l) => l.type === 'transaction' && ids.includes(l.transactionId));
    expect(txLeaves.map((l) => l.env?.v ?? l.envelope?.version)).toEqual([2, 2, 2, 2, 2]);
    expect(new Set(rows.map((r) => r.epoch_id))).toEqual(new Set(['acme/2026-12-01T10/0']));
    expect(rows.every((r) => r.kms_key_id === null && r.n === 84)).toBe(true); // window form (enc ‖ seq ‖ ct)
    const ls = await leaves(t);
    const created = ls.find((l) => l.type === 'key_event' && l.event === 'epoch_created' && l.epochId === 'acme/2026-12-01T10/0');
    const firstTx = ls.find((l) => l.type === 'transaction' && l.transactionId === ids[0]);
    expect(created).toBeDefined();
    expect(created.index).toBeLessThan(firstTx.index);
    expect(created.kmsKeyId).toMatch(/^arn:aws:kms:/);
    expect(firstTx.envelope.epochId).toBe('acme/2026-12-01T10/0');
    expect(firstTx.envelope.kmsKeyId).toBeUndefined();
    // The epoch row's wrapped key is what the leaf committed to.
    const [ep] = await query(t.databaseUrl, "SELECT encode(wrapped_key_sha256, 'base64') AS h, public_key FROM key_epochs WHERE epoch_id = $1", ['acme/2026-12-01T10/0']);
    expect(created.wrappedKeySha256).toBe(ep.h);
    const r = await release(t, ids[0]!);
    expect(r.status, r.text).toBe(200);
    expect(r.json.paymentMethod.pan).toBe('4111111111111111');
  });

  it('rolls over at the period boundary; the retired epoch decrypts but never encrypts again', async () => {
    const before = await submit(t);
    now = new Date(Date.UTC(2026, 11, 1, 11, 0, 0, 0)); // the next hour starts
    const after = await submit(t);
    const keyOf = async (id: string) => (await query(t.databaseUrl, `SELECT epoch_id FROM ${DATA_KEYS_WHOLE} d WHERE log_index = (SELECT log_index FROM transactions WHERE transaction_id = $1)`, [id]))[0].epoch_id;
    expect(await keyOf(before)).toBe('acme/2026-12-01T10/0');
    expect(await keyOf(after)).toBe('acme/2026-12-01T11/0');
    const [old] = await query(t.databaseUrl, 'SELECT retired_at FROM key_epochs WHERE epoch_id = $1', ['acme/2026-12-01T10/0']);
    expect(old.retired_at).not.toBeNull();
    const ls = await leaves(t);
    const retired = ls.find((l) => l.type === 'key_event' && l.event === 'epoch_retired' && l.epochId === 'acme/2026-12-01T10/0');
    const created = ls.find((l) => l.type === 'key_event' && l.event === 'epoch_created' && l.epochId === 'acme/2026-12-01T11/0');
    expect(retired.index).toBeLessThan(created.index);
    // Nothing sealed after the boundary uses the retired epoch, even with the old one cached.
    for (let i = 0; i < 3; i++) expect(await keyOf(await submit(t))).toBe('acme/2026-12-01T11/0');
    // (By the leaf's time: transactions.created_at is not written for epoch-wrapped records, migration 0024.)
    const retiredRecords = new Set((await query(t.databaseUrl, `SELECT d.log_index::int AS i FROM ${DATA_KEYS_WHOLE} d WHERE d.epoch_id = 'acme/2026-12-01T10/0'`)).map((r) => r.i as number));
    expect(retiredRecords.size).toBeGreaterThan(0);
    const sealedAfter = (await leaves(t)).filter((l) => l.type === 'transaction' && retiredRecords.has(l.index) && new Date(l.time).getTime() >= Date.parse('2026-12-01T11:00:00Z'));
    expect(sealedAfter).toEqual([]);
    // Both still open.
    expect((await release(t, before)).status).toBe(200);
    expect((await release(t, after)).status).toBe(200);
  });

  it('a rotation by another instance on the same database is honoured by the next submission', async () => {
    const other = await startTestPaylog({ databaseUrl: t.databaseUrl, dataDir: t.dataDir, env: { PAYLOG_KEY_EPOCH: 'hour' }, clock: () => now });
    try {
      const r = await other.paylog.epochs.rotate('acme', now, { role: 'admin', name: 'test' }, 'suspected exposure');
      expect(r.epochId).toBe('acme/2026-12-01T11/1');
    } finally {
      await other.stop();
    }
    const id = await submit(t);
    expect((await query(t.databaseUrl, `SELECT epoch_id FROM ${DATA_KEYS_WHOLE} d WHERE log_index = (SELECT log_index FROM transactions WHERE transaction_id = $1)`, [id]))[0].epoch_id).toBe('acme/2026-12-01T11/1');
    const ls = await leaves(t);
    expect(ls.some((l) => l.type === 'key_event' && l.event === 'rotation' && l.reason === 'suspected exposure')).toBe(true);
    expect(ls.some((l) => l.type === 'key_event' && l.event === 'epoch_retired' && l.epochId === 'acme/2026-12-01T11/0')).toBe(true);
  });

  it('3,000 concurrent first uses of one epoch make exactly one KMS Decrypt (single flight)', async () => {
    const id = await submit(t, { processor: 'globex' });
    const [{ epoch_id: epochId }] = await query(t.databaseUrl, `SELECT epoch_id FROM ${DATA_KEYS_WHOLE} d WHERE log_index = (SELECT log_index FROM transactions WHERE transaction_id = $1)`, [id]);
    t.paylog.epochs.evict(epochId);
    const d0 = kmsCount(t, 'Decrypt');
    const misses0 = (await t.paylog.metrics.registry.getSingleMetricAsString('paylog_epoch_key_cache_misses_total'));
    const results = await Promise.all(Array.from({ length: 3000 }, () => t.paylog.epochs.withPrivateKey(epochId, (k) => k.publicKey.toString('hex'))));
    expect(new Set(results).size).toBe(1);
    expect(kmsCount(t, 'Decrypt') - d0).toBe(1);
    const misses1 = await t.paylog.metrics.registry.getSingleMetricAsString('paylog_epoch_key_cache_misses_total');
    const n = (s: string) => Number(/\s(\d+)\s*$/.exec(s)![1]);
    expect(n(misses1) - n(misses0)).toBe(1);
    expect((await release(t, id, 'processor-globex')).status).toBe(200);
    expect(kmsCount(t, 'Decrypt') - d0).toBe(1); // the release was a cache hit
  });

  it('records of one key-wrap window open with one cached receiver context (no private-key use per record), evicted with its epoch', async () => {
    // Submitted together, records share a window (200 ms): find two with the same encapsulation
    // (the wrapped key's first 32 bytes).
    const submitted = await Promise.all(Array.from({ length: 6 }, () => submit(t, { processor: 'globex' })));
    const rows = await query(t.databaseUrl, `SELECT t.transaction_id, d.epoch_id, d.wrapped_key FROM ${DATA_KEYS_WHOLE} d JOIN transactions t ON t.log_index = d.log_index WHERE t.transaction_id = ANY($1::text[])`, [submitted]);
    const byEnc = new Map<string, string[]>();
    for (const r of rows) byEnc.set((r.wrapped_key as Buffer).subarray(0, 32).toString('hex'), [...(byEnc.get((r.wrapped_key as Buffer).subarray(0, 32).toString('hex')) ?? []), r.transaction_id as string]);
    const ids = [...byEnc.values()].find((g) => g.length >= 2)!;
    expect(ids).toBeDefined();
    const epochId = rows[0].epoch_id as string;
    t.paylog.epochs.evict(epochId);
    const d0 = kmsCount(t, 'Decrypt');
    const hits = async () => Number(/\s(\d+)\s*$/.exec(await t.paylog.metrics.registry.getSingleMetricAsString('paylog_epoch_key_cache_hits_total'))![1]);
    expect((await release(t, ids[0]!, 'processor-globex')).status).toBe(200);
    expect(kmsCount(t, 'Decrypt') - d0).toBe(1);
    const h0 = await hits();
    expect((await release(t, ids[1]!, 'processor-globex')).status).toBe(200);
    expect(await hits()).toBe(h0); // the window's context opened it: the private key was not used
    // A shred's notice forgets the epoch: its windows' contexts go with its private key.
    t.paylog.epochs.forget(epochId);
    expect((await release(t, ids[1]!, 'processor-globex')).status).toBe(200);
    expect(kmsCount(t, 'Decrypt') - d0).toBe(2);
  });

  it('/metrics counts KMS requests by operation and outcome', async () => {
    const m = await t.call(null, 'GET', '/metrics');
    expect(m.text).toMatch(/paylog_kms_requests_total\{operation="Encrypt",outcome="ok"\} \d+/);
    expect(m.text).toMatch(/paylog_kms_requests_total\{operation="Decrypt",outcome="ok"\} \d+/);
    expect(m.text).toMatch(/paylog_epoch_key_cache_hits_total \d+/);
  });
});

describe('per-transaction mode and envelope v1 records', () => {
  it('per-transaction mode makes one GenerateDataKey per record; its v1 records still release in hierarchical mode', async () => {
    const databaseUrl = await newTestDatabase();
    const first = await startTestPaylog({ databaseUrl, env: { PAYLOG_KEY_MODE: 'per-transaction' } });
    const dataDir = first.dataDir;
    let v1: string;
    try {
      const g0 = kmsCount(first, 'GenerateDataKey');
      v1 = await submit(first);
      await submit(first);
      expect(kmsCount(first, 'GenerateDataKey') - g0).toBe(2);
      const [row] = await query(databaseUrl, 'SELECT d.kms_key_id, d.epoch_id FROM transactions t JOIN data_keys d ON d.log_index = t.log_index WHERE t.transaction_id = $1', [v1]);
      expect(row).toMatchObject({ epoch_id: null });
      expect((await leaves(first)).find((l) => l.type === 'transaction' && l.transactionId === v1).env.v).toBe(1);
      expect(row.kms_key_id).toMatch(/^arn:aws:kms:/);
    } finally {
      await first.paylog.close();
    }
    const second = await startTestPaylog({ databaseUrl, dataDir });
    try {
      const r = await release(second, v1);
      expect(r.status, r.text).toBe(200);
      expect(r.json.paymentMethod.pan).toBe('4111111111111111');
      const v2 = await submit(second);
      expect((await leaves(second)).find((l) => l.type === 'transaction' && l.transactionId === v2).env.v).toBe(2);
    } finally {
      await second.stop();
    }
  });
});
