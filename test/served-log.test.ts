/**
 * Issue 8 items 2–3 on a real service: admin actions are log entries committed before the change
 * takes effect; GET /v1/transactions/{id} carries what a caller needs to check it alone; records
 * written in leaf format v1 (before v2) keep serving, releasing and verifying.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cardTransaction, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { withClient } from './helpers/db.js';
import { LogClient, verifyRemoteLog } from '../src/audit/index.js';
import { decodeLeaf, encodeLeaf, transactionViewFromLeaf, type Leaf } from '../src/log/leaf.js';
import { hashLeaf, verifyInclusion } from '../src/log/merkle.js';
import { verifyCheckpoint } from '../src/log/checkpoint.js';
import { toNoteVerifiers } from '../src/audit/index.js';
import { ciphertextDigest, sealEnvelope } from '../src/crypto/envelope.js';
import { canonicalJson } from '../src/crypto/canonical-json.js';

let t: TestPaylog;
let client: LogClient;
let vkeys: string[];

const sql = (text: string, params: unknown[] = []) => withClient(t.databaseUrl, async (c) => (await c.query(text, params)).rows);
const lastLeaf = async (): Promise<Leaf> => decodeLeaf((await sql('SELECT leaf FROM log_entries ORDER BY idx DESC LIMIT 1'))[0].leaf);
const verify = async () => {
  await t.paylog.checkpoints.publish();
  return await verifyRemoteLog(client, { verifiers: toNoteVerifiers(vkeys) });
};

beforeAll(async () => {
  t = await startTestPaylog();
  const a = t.paylog.devPki!.principals['auditor']!;
  client = LogClient.fromFiles(t.paylog.url, t.paylog.devPki!.caPath, a.certPath, a.keyPath);
  vkeys = (await client.keys()).vkeys;
});
afterAll(async () => {
  client?.close();
  await t?.stop();
});

describe('GET /v1/transactions/{id} can be checked alone', () => {
  it('serves the leaf, its inclusion proof and the checkpoint; every value decodes from the leaf', async () => {
    const body = cardTransaction();
    expect((await t.call('checkout', 'POST', '/v1/transactions', body)).status).toBe(201);
    await t.paylog.checkpoints.publish();
    const r = await t.call('checkout', 'GET', `/v1/transactions/${body.transactionId}`);
    expect(r.status).toBe(200);
    const v = r.json;
    expect(v.leafFormat).toBe(3);
    const leafBytes = Buffer.from(v.leaf, 'base64');
    const cp = verifyCheckpoint(v.proof.checkpoint, toNoteVerifiers(vkeys));
    expect(cp.size).toBe(v.proof.treeSize);
    const hashes = (v.proof.hashes as string[]).map((h) => Buffer.from(h, 'base64'));
    expect(verifyInclusion(hashLeaf(leafBytes), v.logIndex, cp.size, hashes, cp.rootHash)).toBe(true);
    expect(hashLeaf(leafBytes).toString('base64')).toBe(v.leafHash);
    const leaf = decodeLeaf(leafBytes);
    if (leaf.v !== 3 || leaf.type !== 'transaction') throw new Error('expected a v3 transaction leaf');
    // `shredded` is key-material state (issue 9), outside the tree by design.
    const { logIndex: _i, leafHash: _h, leaf: _l, proof: _p, leafFormat: _f, shredded, ...served } = v;
    expect(shredded).toBe(false);
    expect(served).toEqual(transactionViewFromLeaf(leaf));
    expect(r.text).not.toContain('4111111111111111');
  });
});

describe('admin actions are log entries (who, what, when, from where, outcome)', () => {
  it('register, disable, re-enable a processor and revoke a certificate: one admin_event each, checked by verify-log', async () => {
    const admin = t.paylog.devPki!.principals['admin']!;
    const steps: Array<[string, string, unknown, string]> = [
      ['PUT', '/v1/admin/processors/initech', { status: 'active' }, 'processor_registered'],
      ['PUT', '/v1/admin/processors/initech', { status: 'disabled' }, 'processor_disabled'],
      ['PUT', '/v1/admin/processors/initech', { status: 'active' }, 'processor_enabled'],
      ['POST', '/v1/admin/revocations', { fingerprint: `sha256:${'ef'.repeat(32)}`, reason: 'key compromise' }, 'certificate_revoked'],
    ];
    for (const [method, path, body, action] of steps) {
      const r = await t.call('admin', method, path, body);
      expect(r.status, r.text).toBeLessThan(300);
      const leaf = await lastLeaf();
      expect(leaf).toMatchObject({ v: 3, type: 'admin_event', action, outcome: 'granted', source: expect.stringMatching(/127\.0\.0\.1/) });
      if (leaf.v !== 1 && leaf.type === 'admin_event') {
        expect(leaf.actor.role).toBe('admin');
        expect(`sha256:${Buffer.from(leaf.actor.cert).toString('hex')}`).toBe(admin.fingerprint);
        if (action === 'certificate_revoked') expect(Buffer.from(leaf.cert!).toString('hex')).toBe('ef'.repeat(32));
        else expect(leaf.processor).toBe('initech');
      }
    }
    // A refused attempt is an entry too.
    const denied = await t.call('checkout', 'PUT', '/v1/admin/processors/initech', { status: 'disabled' });
    expect(denied.status).toBe(403);
    expect(await lastLeaf()).toMatchObject({ type: 'admin_event', action: 'processor_disabled', outcome: 'denied', reason: expect.any(String) });
    expect((await sql("SELECT status FROM processors WHERE name = 'initech'"))[0].status).toBe('active');
    const report = await verify();
    expect(report.failures).toEqual([]);
    expect(report.leafTypes['admin_event']).toBe(5);
  });
});

describe('records in leaf format v1 (written before v2) keep working', () => {
  it('serve from their columns, release, verify; a changed v1 column is named by index', async () => {
    const kms = t.paylog.kms;
    const keys = {
      generateDataKey: (ctx: Record<string, string>) => kms.generateDataKey(t.paylog.dataKeyId, ctx),
      decryptDataKey: (w: Buffer, ctx: Record<string, string>, k: string) => kms.decryptDataKey(w, ctx, k),
    };
    const body = cardTransaction();
    const id = body.transactionId as string;
    const env = await sealEnvelope(keys, { transactionId: id, processor: 'acme' }, Buffer.from(canonicalJson(body.paymentMethod), 'utf8'));
    const now = new Date();
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('base64');
    const leaf = encodeLeaf({
      v: 1,
      type: 'transaction',
      time: now.toISOString(),
      transactionId: id,
      processor: 'acme',
      amount: body.amount,
      paymentMethodType: 'card',
      envelope: { version: 1, ciphertextSha256: ciphertextDigest(env).toString('base64'), keyCommitment: env.keyCommitment.toString('base64'), wrappedKeySha256: sha(env.wrappedKey), kmsKeyId: env.kmsKeyId },
      metadataSha256: sha(Buffer.from(canonicalJson(body.metadata), 'utf8')),
    });
    // The entry through the appender (as the v1 service did); the v1 columns as the v1 service wrote them.
    const appended = await t.paylog.appender.append({ kind: 'key_event', leaf, createdAt: now });
    if (appended.status !== 'appended') throw new Error('not appended');
    const index = appended.logIndex;
    const masked = { type: 'card', brand: 'visa', bin: '41111111', last4: '1111', expiryMonth: body.paymentMethod.expiryMonth, expiryYear: body.paymentMethod.expiryYear };
    await sql(
      `INSERT INTO transactions (transaction_id, log_index, processor, request_mac, payment_method_type, masked, fingerprint, amount_value, currency, metadata,
         envelope_version, iv, ciphertext, tag, key_commitment, salt, created_at)
       VALUES ($1, $2, 'acme', $3, 'card', $4, 'fp_v1', $5, $6, $7, 1, $8, $9, $10, $11, $12, $13)`,
      [id, index, Buffer.alloc(32), JSON.stringify(masked), body.amount.value, body.amount.currency, JSON.stringify(body.metadata), env.iv, env.ciphertext, env.tag, env.keyCommitment, env.salt, now],
    );
    await sql('INSERT INTO data_keys (log_index, kms_key_id, wrapped_key) VALUES ($1, $2, $3)', [index, env.kmsKeyId, env.wrappedKey]);

    const got = await t.call('auditor', 'GET', `/v1/transactions/${id}`);
    expect(got.status, got.text).toBe(200);
    // Served without the BIN its column holds, and without its v1 fingerprint (issue 17).
    const { bin: _bin, ...served } = masked;
    expect(got.json).toMatchObject({ leafFormat: 1, processor: 'acme', amount: body.amount, paymentMethod: served, metadata: body.metadata, logIndex: index });
    expect(got.json.paymentMethod).not.toHaveProperty('bin');
    expect(got.json).not.toHaveProperty('fingerprint');
    const rel = await t.call('processor-acme', 'POST', `/v1/transactions/${id}/release`, { purpose: 'capture' });
    expect(rel.status, rel.text).toBe(200);
    expect(rel.json.paymentMethod).toEqual(body.paymentMethod);
    expect((await verify()).failures).toEqual([]);

    // A v1 served column changed behind the service's back: verify-log names the index, GET refuses.
    await withClient(t.databaseUrl, async (c) => {
      await c.query('ALTER TABLE transactions DISABLE TRIGGER transactions_no_update_delete');
      await c.query('UPDATE transactions SET amount_value = amount_value + 1 WHERE transaction_id = $1', [id]);
    });
    try {
      const r = await verify();
      expect(r.ok).toBe(false);
      expect(r.failures.map((f) => f.code)).toContain('SERVED_VIEW_MISMATCH');
      expect(r.firstBadIndex).toBe(index);
      expect((await t.call('auditor', 'GET', `/v1/transactions/${id}`)).json.error.code).toBe('INTEGRITY_FAILURE');
    } finally {
      await withClient(t.databaseUrl, async (c) => {
        await c.query('UPDATE transactions SET amount_value = amount_value - 1 WHERE transaction_id = $1', [id]);
        await c.query('ALTER TABLE transactions ENABLE ALWAYS TRIGGER transactions_no_update_delete');
      });
    }
    expect((await verify()).ok).toBe(true);
  });
});

describe('an admin change takes effect only after its entry is committed', () => {
  it('with the log refusing entries, the processor status does not change (503)', async () => {
    await t.paylog.appender.close(); // the log now refuses every entry (LOG_UNAVAILABLE)
    const r = await t.call('admin', 'PUT', '/v1/admin/processors/initech', { status: 'disabled' });
    expect(r.status).toBe(503);
    expect((await sql("SELECT status FROM processors WHERE name = 'initech'"))[0].status).toBe('active');
  });
});
