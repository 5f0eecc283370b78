/**
 * Shared by the key-hierarchy tests (key epochs, key lifecycle): the log's leaves in the shape
 * the assertions read, and one submission / release through real mTLS.
 */
import { expect } from 'vitest';
import { decodeLeaf } from '../../src/log/leaf.js';
import { cardTransaction, type TestPaylog } from './paylog.js';
import { query } from './db.js';

/**
 * Every leaf of the log at `databaseUrl`, decoded, with its `index`. Leaf format v2 and v3 key events
 * are given v1-style names (epoch → epochId, actor.cert → certificateFingerprint, digests in
 * base64); v2 and v3 transaction leaves get `transactionId` and `envelope {epochId, kmsKeyId}`.
 */
export async function logLeaves(databaseUrl: string): Promise<any[]> {
  const rows = await query<{ idx: string; leaf: Buffer }>(databaseUrl, 'SELECT idx, leaf FROM log_entries ORDER BY idx');
  return rows.map((r) => {
    const l = decodeLeaf(r.leaf) as any;
    if (l.v !== 1 && l.type === 'key_event') {
      return {
        index: Number(r.idx),
        ...l,
        epochId: l.epoch,
        actor: l.actor === 'system' ? { role: 'system', name: 'paylog' } : { role: l.actor.role, name: l.actor.name, certificateFingerprint: `sha256:${Buffer.from(l.actor.cert).toString('hex')}` },
        ...(l.wrappedKeySha256 ? { wrappedKeySha256: Buffer.from(l.wrappedKeySha256).toString('base64') } : {}),
        ...(l.policy ? { policy: `PAYLOG_RETENTION=${l.policy.retention}` } : {}),
      };
    }
    if (l.v !== 1 && l.type === 'transaction') {
      return { index: Number(r.idx), ...l, transactionId: l.id, envelope: { epochId: l.env.ep, kmsKeyId: l.env.kms } };
    }
    return { index: Number(r.idx), ...l };
  });
}

/** Submits one card transaction as checkout (201 expected); resolves with its id. */
export async function submitCard(t: TestPaylog, overrides: Record<string, unknown> = {}): Promise<string> {
  const body = cardTransaction(overrides);
  const r = await t.call('checkout', 'POST', '/v1/transactions', body);
  expect(r.status, r.text).toBe(201);
  return body.transactionId as string;
}

/** Releases a transaction to its processor (purpose `capture`). */
export const releaseTo = (t: TestPaylog, id: string, who: 'processor-acme' | 'processor-globex' = 'processor-acme') =>
  t.call(who, 'POST', `/v1/transactions/${id}/release`, { purpose: 'capture' });
