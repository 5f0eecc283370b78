/**
 * `GET /v1/transactions/{id}/forwards` (checkout, auditor): a transaction's forwards, served from
 * the leaves (the lookup rows only say where to look): each forward access entry with its result
 * entry, or `result: null` while (or when) none was appended. And, for the forward service, the
 * log's answer to "was this Idempotency-Key granted before?" (`grantedWithKey`).
 */
import { PaylogError } from '../../errors.js';
import { authorize } from '../../auth/policy.js';
import type { Principal } from '../../auth/principal.js';
import type { AppDatabase } from '../../db/connection.js';
import { decodeLeaf, principalView } from '../../log/leaf.js';
import { macEqual } from '../../crypto/fingerprint.js';
import type { TransactionService } from '../transactions.js';
import { idempotencyKeyMac } from './request.js';

/** Most forwards listed for one transaction. */
const MAX_FORWARDS_LISTED = 1000;

interface ForwardView {
  accessLogIndex: number;
  time: string;
  principal: { role: string; name: string; certificateFingerprint: string };
  outcome: string;
  reason: string | null;
  destination: string | null;
  method: string | null;
  path: string | null;
  purpose: string | null;
  reference: string | null;
  templateSha256: string | null;
  result: { logIndex: number; outcome: string; status: number | null; durationMs: number; masked: number; error: string | null } | null;
}

export class ForwardHistory {
  constructor(private readonly deps: { database: AppDatabase; transactions: TransactionService }) {}

  async list(principal: Principal, transactionId: string): Promise<{ forwards: ForwardView[] }> {
    authorize(principal, 'transaction:forwards');
    const row = await this.deps.transactions.findRow(transactionId);
    if (!row) throw new PaylogError('NOT_FOUND', 'no such transaction');
    const r = await this.deps.database.pool.query({
      name: 'paylog_forwards',
      text: `SELECT a.log_index, e.leaf FROM access_entries a JOIN log_entries e ON e.idx = a.log_index
             WHERE a.transaction_id = $1 ORDER BY a.log_index LIMIT $2`,
      values: [transactionId, MAX_FORWARDS_LISTED * 2],
    });
    const bad = () => new PaylogError('INTEGRITY_FAILURE', 'a stored forward entry does not match its log entry');
    const forwards: ForwardView[] = [];
    const byAccess = new Map<number, ForwardView>();
    for (const { log_index, leaf: bytes } of r.rows as { log_index: string; leaf: Buffer }[]) {
      const index = Number(log_index);
      const leaf = decodeLeaf(bytes);
      if (leaf.type === 'access' && leaf.v !== 1 && leaf.action === 'forward') {
        if (leaf.transactionId !== transactionId) throw bad();
        const v: ForwardView = {
          accessLogIndex: index,
          time: new Date(leaf.time).toISOString(),
          principal: principalView(leaf.actor),
          outcome: leaf.outcome,
          reason: leaf.reason ?? null,
          destination: leaf.fwd?.dest ?? null,
          method: leaf.fwd?.method ?? null,
          path: leaf.fwd?.path ?? null,
          purpose: leaf.purpose ?? null,
          reference: leaf.reference ?? null,
          templateSha256: leaf.fwd ? leaf.fwd.tpl.toString('hex') : null,
          result: null,
        };
        forwards.push(v);
        byAccess.set(index, v);
      } else if (leaf.type === 'forward_result') {
        if (leaf.transactionId !== transactionId) throw bad();
        const v = byAccess.get(leaf.access);
        if (v) v.result = { logIndex: index, outcome: leaf.outcome, status: leaf.status ?? null, durationMs: leaf.ms, masked: leaf.masked, error: leaf.error ?? null };
      }
    }
    return { forwards: forwards.slice(0, MAX_FORWARDS_LISTED) };
  }
}

/** A granted forward access entry found in the log, and whether a result entry closes it. */
export interface GrantedKey {
  accessLogIndex: number;
  hasResult: boolean;
}

/**
 * The granted forward access entry of `transactionId` that carries the keyed MAC of this
 * Idempotency-Key, if any, and whether a result entry closes it (one query; see {@link grantedIn}).
 */
export async function grantedWithKey(database: AppDatabase, macKey: Buffer, transactionId: string, key: string): Promise<GrantedKey | null> {
  const r = await database.pool.query({
    name: 'paylog_forward_key_granted',
    text: 'SELECT a.log_index, e.leaf FROM access_entries a JOIN log_entries e ON e.idx = a.log_index WHERE a.transaction_id = $1 ORDER BY a.log_index',
    values: [transactionId],
  });
  return grantedIn(r.rows as { log_index: string; leaf: Buffer }[], macKey, transactionId, key);
}

/**
 * Of the access entries of `transactionId` (log index and leaf, in log order), the granted
 * forward access entry that carries the keyed MAC of this Idempotency-Key, if any, and whether a
 * result entry closes it. Leaves that do not decode are skipped: they cannot be such an entry.
 */
export function grantedIn(rows: readonly { log_index: string | number; leaf: Buffer }[], macKey: Buffer, transactionId: string, key: string): GrantedKey | null {
  let mac: Buffer | undefined; // computed for the first candidate only (none: a new transaction's first forward)
  let found: GrantedKey | null = null;
  for (const { log_index, leaf } of rows) {
    let l;
    try {
      l = decodeLeaf(leaf);
    } catch {
      continue;
    }
    if (!found && l.type === 'access' && l.v !== 1 && l.action === 'forward' && l.outcome === 'granted' && l.transactionId === transactionId && l.fwd !== undefined && macEqual(l.fwd.key, (mac ??= idempotencyKeyMac(macKey, transactionId, key)))) {
      found = { accessLogIndex: Number(log_index), hasResult: false };
    } else if (found && l.type === 'forward_result' && l.access === found.accessLogIndex) {
      found.hasResult = true;
    }
  }
  return found;
}
