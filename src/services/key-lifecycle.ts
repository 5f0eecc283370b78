/**
 * Key lifecycle operations behind the admin routes and `npm run keys` / `npm run retention`:
 * status, rotation, rewrap (batched, resumable), early shred of one transaction, and
 * retention by crypto-shredding (PCI DSS 3.2.1 retention, 3.6/3.7 key management).
 *
 * Contracts:
 * - Every step that changes key material first commits a `key_event` leaf (KeyEventLog.record
 *   resolves after commit) and only then changes the database or KMS. A failure between the two
 *   leaves the change undone and a rerun repeats it (at most one batch is redone).
 * - Key material is replaced or destroyed only through the `paylog_keys` connection
 *   (`keysDatabase`): the runtime role cannot UPDATE wrapped keys.
 * - Every shred commits through `commitShred` (src/services/key-shred.ts): between two log
 *   batches (append lock), so no release whose access entry commits after the shred returns
 *   plaintext (src/services/append-preconditions.ts `keyMaterialRequires`), and with a notice to
 *   every paylog process (src/kms/key-notifications.ts) to zero cached epoch keys.
 * - Access entries (no card data) and log leaves are never touched.
 * - A key period's epoch keys are only ever wrapped under KMS keys of THAT period (its own key,
 *   and the `-r<n>` keys its rewraps create, each recorded in key_period_kms_keys before use);
 *   retention schedules the deletion of every one of them, so backups are shredded too.
 * - One row that cannot be rewrapped never stops a rewrap: it is skipped and reported.
 *
 * This file is the service the routes and scripts call (status, rotation, early shred); rewrap
 * is src/services/key-rewrap.ts, retention src/services/key-retention.ts, the request bodies
 * src/services/key-requests.ts.
 */
import { PaylogError } from '../errors.js';
import { authorize } from '../auth/policy.js';
import type { Principal } from '../auth/principal.js';
import type { AppDatabase } from '../db/connection.js';
import type { EpochRow } from '../kms/epoch-names.js';
import { actorOf } from './key-events.js';
import { parseKeyRequest, rotateRequestSchema, shredRequestSchema } from './key-requests.js';
import { processorOfLeaf } from './key-row-checks.js';
import { commitShred } from './key-shred.js';
import { KeyRewrap, type RewrapResult } from './key-rewrap.js';
import { KeyRetention, type RetentionDeps, type RetentionReport } from './key-retention.js';
import { ServiceKeyArns } from './service-key-arns.js';
import { epochIdSql, epochRecordCountSql } from './transaction-queries.js';

/** The retention dependencies (key-retention.ts) plus what rotation, shredding and rewrap need. */
interface KeyLifecycleDeps extends RetentionDeps {
  database: AppDatabase;
  /** KMS requests so far by operation (status). */
  kmsCounts?: () => Promise<Record<string, number>>;
  /** The data and signing keys: never a rewrap target, never scheduled for deletion by retention. */
  serviceKeyIds?: string[];
}

export class KeyLifecycleService {
  private readonly rewrap: KeyRewrap;
  private readonly retention: KeyRetention;

  constructor(private readonly d: KeyLifecycleDeps) {
    const serviceKeys = new ServiceKeyArns(d.kms, d.serviceKeyIds ?? []);
    this.rewrap = new KeyRewrap(d, serviceKeys);
    this.retention = new KeyRetention(d, serviceKeys);
  }

  /** Epochs with state and record counts, key periods, and KMS calls so far (this process). */
  async status(principal: Principal) {
    authorize(principal, 'admin:keys');
    const epochs = (
      await this.d.database.pool.query(
        `SELECT e.epoch_id, e.processor, e.granularity, e.period_start, e.period_end, e.generation, e.kms_key_id,
                e.retired_at, e.shredded_at, e.created_at, ${epochRecordCountSql('e.epoch_id')} AS records
         FROM key_epochs e ORDER BY e.period_start, e.processor, e.generation`,
      )
    ).rows as (EpochRow & { records: number; created_at: Date })[];
    const periods = (
      await this.d.database.pool.query(
        `SELECT p.*, ARRAY(SELECT k.kms_key_id FROM key_period_kms_keys k WHERE k.granularity = p.granularity AND k.period_start = p.period_start ORDER BY k.added_at, k.round NULLS FIRST, k.kms_key_id) AS rewrap_keys
         FROM key_periods p ORDER BY p.period_start`,
      )
    ).rows as Record<string, unknown>[];
    const v1 = (await this.d.database.pool.query('SELECT kms_key_id, count(*)::int AS n, count(*) FILTER (WHERE wrapped_key IS NULL)::int AS shredded FROM data_keys WHERE kms_key_id IS NOT NULL GROUP BY kms_key_id')).rows;
    const now = this.d.clock();
    return {
      epochs: epochs.map((e) => ({
        epochId: e.epoch_id,
        processor: e.processor,
        granularity: e.granularity,
        periodStart: e.period_start.toISOString(),
        periodEnd: e.period_end.toISOString(),
        generation: e.generation,
        state: e.shredded_at ? 'shredded' : e.retired_at || e.period_end <= now ? 'retired' : 'active',
        kmsKeyId: e.kms_key_id,
        records: e.records,
        createdAt: e.created_at.toISOString(),
      })),
      keyPeriods: periods.map((p) => ({
        granularity: p.granularity,
        periodStart: (p.period_start as Date).toISOString(),
        periodEnd: (p.period_end as Date).toISOString(),
        kmsKeyId: p.kms_key_id,
        /** Every KMS key that has wrapped the period's epoch keys (own key first); retention destroys each. */
        kmsKeyIds: [...new Set([p.kms_key_id as string, ...(p.rewrap_keys as string[])])],
        state: p.state,
        deletionDate: p.deletion_date ? (p.deletion_date as Date).toISOString() : null,
      })),
      v1DataKeys: v1.map((r) => ({ kmsKeyId: r.kms_key_id, records: r.n, shredded: r.shredded })),
      retention: this.d.retention,
      cachedEpochPrivateKeys: this.d.epochs.cachedPrivateKeys,
      kmsRequests: (await this.d.kmsCounts?.()) ?? {},
    };
  }

  /** Starts new epochs now for one or every active processor (e.g. after a suspected exposure). */
  async rotate(principal: Principal, raw: unknown): Promise<{ epochs: string[] }> {
    authorize(principal, 'admin:keys');
    const req = parseKeyRequest(rotateRequestSchema, raw, '{ "processor"?: name, "reason"?: short text }');
    const names = req.processor
      ? [req.processor]
      : ((await this.d.database.pool.query("SELECT name FROM processors WHERE status = 'active' ORDER BY name")).rows as { name: string }[]).map((r) => r.name);
    const out: string[] = [];
    for (const p of names) out.push((await this.d.epochs.rotate(p, this.d.clock(), actorOf(principal), req.reason ?? 'rotation requested by an administrator')).epochId);
    return { epochs: out };
  }

  /** One batch of a rewrap (src/services/key-rewrap.ts `KeyRewrap.rewrapBatch`). */
  async rewrapBatch(principal: Principal, raw: unknown): Promise<RewrapResult> {
    return await this.rewrap.rewrapBatch(principal, raw);
  }

  /** Shreds one transaction early: its wrapped data key is destroyed (live database only). */
  async shredTransaction(principal: Principal, transactionId: string, raw: unknown): Promise<{ transactionId: string; shredded: true; logIndex: number }> {
    authorize(principal, 'admin:shred');
    const req = parseKeyRequest(shredRequestSchema, raw, '{ "reason": short text }');
    const row = (
      await this.d.database.pool.query(
        `SELECT t.transaction_id, d.log_index, ${epochIdSql('d', 'w')} AS epoch_id, d.kms_key_id, d.wrapped_key, t.processor, e.leaf
         FROM transactions t JOIN data_keys d ON d.log_index = t.log_index LEFT JOIN key_wrap_windows w ON w.id = d.window_id JOIN log_entries e ON e.idx = t.log_index WHERE t.transaction_id = $1`,
        [transactionId],
      )
    ).rows[0] as { transaction_id: string; log_index: string; epoch_id: string | null; kms_key_id: string | null; wrapped_key: Buffer | null; processor: string | null; leaf: Buffer } | undefined;
    if (!row) throw new PaylogError('NOT_FOUND', 'no such transaction');
    const logIndex = await this.d.keyEvents.record({
      event: 'transaction_shredded',
      time: this.d.clock(),
      actor: actorOf(principal),
      transactionId,
      processor: row.processor ?? processorOfLeaf(row.leaf),
      ...(row.epoch_id ? { epochId: row.epoch_id } : {}),
      ...(row.kms_key_id ? { kmsKeyId: row.kms_key_id } : {}),
      reason: req.reason,
    });
    await commitShred(this.d.keysDatabase, { text: 'UPDATE data_keys SET wrapped_key = NULL, shredded_at = $2 WHERE log_index = $1', values: [row.log_index, this.d.clock()] }, null);
    return { transactionId, shredded: true, logIndex };
  }
  /** Retention by crypto-shredding (src/services/key-retention.ts `KeyRetention.applyRetention`). */
  async applyRetention(principal: Principal | null, raw: unknown): Promise<RetentionReport> {
    return await this.retention.applyRetention(principal, raw);
  }
}
