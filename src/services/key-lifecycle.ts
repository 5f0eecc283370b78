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
 * - Access entries (no card data) and log leaves are never touched.
 */
import { z } from 'zod';
import { PaylogError } from '../errors.js';
import { authorize } from '../auth/policy.js';
import type { Principal } from '../auth/principal.js';
import type { AppDatabase } from '../db/connection.js';
import type { PaylogKms } from '../kms/client.js';
import { epochEventSubject, epochKmsContext, type EpochKeyring, type EpochRow, type TrustedEpochRow } from '../kms/epoch-keys.js';
import { TRUST_COLUMNS } from '../kms/epoch-rows.js';
import { kmsEncryptionContext } from '../crypto/envelope.js';
import { actorOf, SYSTEM_ACTOR, type KeyEventActor, type KeyEventLog } from './key-events.js';
import { createHash } from 'node:crypto';
import { decodeLeaf } from '../log/leaf.js';
import { PRINCIPAL_NAME_PATTERN } from '../validation/identifiers.js';
import { retentionCutoff, subtractIsoDuration } from '../log/retention-policy.js';

export const DEFAULT_REWRAP_BATCH = 100;
export const MAX_REWRAP_BATCH = 1000;
/** KMS ScheduleKeyDeletion waiting period for a shredded key period (KMS allows 7–30 days). */
export const SHRED_PENDING_WINDOW_DAYS = 7;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest();

/** The processor of a transaction, from its leaf (format v2 lookup rows hold no processor column). */
function processorOfLeaf(leaf: Buffer): string {
  const l = decodeLeaf(leaf) as { type: string; p?: string; processor?: string };
  const p = l.p ?? l.processor;
  if (l.type !== 'transaction' || typeof p !== 'string') throw new PaylogError('INTEGRITY_FAILURE', 'transaction leaf without a processor');
  return p;
}

/** The retention rule lives in src/log/retention-policy.ts (the auditor's shred report uses it too). */
export { subtractIsoDuration };

export interface KeyLifecycleDeps {
  database: AppDatabase;
  /** The paylog_keys connection (the only one that may replace or destroy key material). */
  keysDatabase: AppDatabase;
  kms: PaylogKms;
  epochs: EpochKeyring;
  keyEvents: KeyEventLog;
  retention: string;
  /** True with the dev-only local KMS (then `asOf` is allowed). */
  devKms: boolean;
  clock: () => Date;
  /** KMS requests so far by operation (status). */
  kmsCounts?: () => Promise<Record<string, number>>;
}

export const rewrapRequestSchema = z.strictObject({
  to: z.string().min(1).max(2048),
  batchSize: z.number().int().min(1).max(MAX_REWRAP_BATCH).optional(),
});
export const rotateRequestSchema = z.strictObject({
  processor: z.string().regex(PRINCIPAL_NAME_PATTERN).optional(),
  reason: z.string().max(200).regex(/^[\p{L}\p{N} ._:,()-]*$/u).optional(),
});
export const retentionRequestSchema = z.strictObject({
  dryRun: z.boolean().optional(),
  asOf: z.iso.datetime({ offset: true }).optional(),
});
export const shredRequestSchema = z.strictObject({
  reason: z.string().min(1).max(200).regex(/^[\p{L}\p{N} ._:,()-]*$/u),
});

function parse<T>(schema: z.ZodType<T>, raw: unknown, expected: string): T {
  const r = schema.safeParse(raw ?? {});
  if (!r.success) throw new PaylogError('VALIDATION_FAILED', `expected ${expected}`);
  return r.data;
}

export interface RetentionReport {
  policy: string;
  asOf: string;
  cutoff: string;
  dryRun: boolean;
  periods: { granularity: string; periodStart: string; periodEnd: string; kmsKeyId: string; scheduledDeletion: string | null }[];
  epochs: { epochId: string; processor: string; periodStart: string; periodEnd: string; records: number }[];
  v1Records: number;
  logIndex: number | null;
}

export class KeyLifecycleService {
  constructor(private readonly d: KeyLifecycleDeps) {}

  /** Epochs with state and record counts, key periods, and KMS calls so far (this process). */
  async status(principal: Principal) {
    authorize(principal, 'admin:keys');
    const epochs = (
      await this.d.database.pool.query(
        `SELECT e.epoch_id, e.processor, e.granularity, e.period_start, e.period_end, e.generation, e.kms_key_id,
                e.retired_at, e.shredded_at, e.created_at, (SELECT count(*)::int FROM data_keys d WHERE d.epoch_id = e.epoch_id) AS records
         FROM key_epochs e ORDER BY e.period_start, e.processor, e.generation`,
      )
    ).rows as (EpochRow & { records: number; created_at: Date })[];
    const periods = (await this.d.database.pool.query('SELECT * FROM key_periods ORDER BY period_start')).rows as Record<string, unknown>[];
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
    const req = parse(rotateRequestSchema, raw, '{ "processor"?: name, "reason"?: short text }');
    const names = req.processor
      ? [req.processor]
      : ((await this.d.database.pool.query("SELECT name FROM processors WHERE status = 'active' ORDER BY name")).rows as { name: string }[]).map((r) => r.name);
    const out: string[] = [];
    for (const p of names) out.push((await this.d.epochs.rotate(p, this.d.clock(), actorOf(principal), req.reason ?? 'rotation requested by an administrator')).epochId);
    return { epochs: out };
  }

  /**
   * Rewraps ONE batch of wrapped keys under KMS key `to` (ReEncrypt inside KMS; card data is
   * never touched): epoch private keys first, then envelope-v1 per-record data keys. Each
   * batch's key event is committed before the batch is written. Call again until `done`;
   * an interrupted run, rerun, redoes at most one batch and leaves one wrapping per key.
   */
  async rewrapBatch(principal: Principal, raw: unknown): Promise<{ rewrapped: number; kind: 'epoch' | 'v1' | null; remaining: number; done: boolean; to: string }> {
    authorize(principal, 'admin:keys');
    const req = parse(rewrapRequestSchema, raw, '{ "to": KMS key id, "batchSize"?: 1..1000 }');
    const batch = req.batchSize ?? DEFAULT_REWRAP_BATCH;
    const to = await this.resolveKeyArn(req.to);
    const actor = actorOf(principal);
    // Only rows paylog created (issue 17): a row planted by the runtime role is skipped and
    // reported, so it neither stops every batch nor gets rewrapped under a paylog key.
    const candidates = this.d.epochs.trustedOnly(
      (await this.d.keysDatabase.pool.query(`SELECT e.*, ${TRUST_COLUMNS} FROM key_epochs e WHERE e.shredded_at IS NULL AND e.kms_key_id IS DISTINCT FROM $1 ORDER BY e.epoch_id`, [to])).rows as TrustedEpochRow[],
    );
    const epochs = candidates.slice(0, batch);
    let kind: 'epoch' | 'v1' | null = null;
    let n = 0;
    if (epochs.length > 0) {
      kind = 'epoch';
      for (const e of epochs) {
        const ctx = epochKmsContext(e.epoch_id, Buffer.from(e.public_key));
        const fresh = await this.d.kms.reEncrypt(e.wrapped_private_key!, ctx, to);
        await this.d.keyEvents.record({
          event: 'epoch_rewrapped',
          time: this.d.clock(),
          actor,
          ...epochEventSubject(e),
          kmsKeyId: to,
          wrappedKey: fresh,
          ...(e.kms_key_id ? { previousKmsKeyId: e.kms_key_id } : {}),
        });
        await this.d.keysDatabase.pool.query(
          'UPDATE key_epochs SET kms_key_id = $2, wrapped_private_key = $3, wrapped_key_sha256 = $4 WHERE epoch_id = $1 AND shredded_at IS NULL',
          [e.epoch_id, to, fresh, sha256(fresh)],
        );
        this.d.epochs.evict(e.epoch_id);
        n++;
      }
    } else {
      const rows = (
        await this.d.keysDatabase.pool.query(
          `SELECT d.transaction_id, d.kms_key_id, d.wrapped_key, t.processor, e.leaf FROM data_keys d JOIN transactions t USING (transaction_id)
           JOIN log_entries e ON e.idx = t.log_index
           WHERE d.kms_key_id IS NOT NULL AND d.kms_key_id <> $1 AND d.wrapped_key IS NOT NULL ORDER BY d.transaction_id LIMIT $2`,
          [to, batch],
        )
      ).rows as { transaction_id: string; kms_key_id: string; wrapped_key: Buffer; processor: string | null; leaf: Buffer }[];
      if (rows.length > 0) {
        kind = 'v1';
        const fresh = [];
        for (const r of rows) {
          const ctx = kmsEncryptionContext({ transactionId: r.transaction_id, processor: r.processor ?? processorOfLeaf(r.leaf) });
          fresh.push({ id: r.transaction_id, blob: await this.d.kms.reEncrypt(r.wrapped_key, ctx, to) });
        }
        // One event per batch of v1 data keys: the first and last transaction and the count.
        await this.d.keyEvents.record({
          event: 'record_rewrapped',
          time: this.d.clock(),
          actor,
          kmsKeyId: to,
          reason: `envelope v1 data keys ${rows[0]!.transaction_id} .. ${rows[rows.length - 1]!.transaction_id}`,
          counts: { v1DataKeys: rows.length },
        });
        for (const f of fresh) {
          await this.d.keysDatabase.pool.query('UPDATE data_keys SET kms_key_id = $2, wrapped_key = $3 WHERE transaction_id = $1 AND wrapped_key IS NOT NULL', [f.id, to, f.blob]);
        }
        n = rows.length;
      }
    }
    const remaining = Number(
      (
        await this.d.keysDatabase.pool.query(
          `SELECT count(*) AS n FROM data_keys WHERE kms_key_id IS NOT NULL AND kms_key_id <> $1 AND wrapped_key IS NOT NULL`,
          [to],
        )
      ).rows[0].n,
    ) + (candidates.length - (kind === 'epoch' ? n : 0));
    return { rewrapped: n, kind, remaining, done: remaining === 0, to };
  }

  /** Shreds one transaction early: its wrapped data key is destroyed (live database only). */
  async shredTransaction(principal: Principal, transactionId: string, raw: unknown): Promise<{ transactionId: string; shredded: true; logIndex: number }> {
    authorize(principal, 'admin:shred');
    const req = parse(shredRequestSchema, raw, '{ "reason": short text }');
    const row = (
      await this.d.database.pool.query(
        'SELECT d.transaction_id, d.epoch_id, d.kms_key_id, d.wrapped_key, t.processor, e.leaf FROM data_keys d JOIN transactions t USING (transaction_id) JOIN log_entries e ON e.idx = t.log_index WHERE d.transaction_id = $1',
        [transactionId],
      )
    ).rows[0] as { transaction_id: string; epoch_id: string | null; kms_key_id: string | null; wrapped_key: Buffer | null; processor: string | null; leaf: Buffer } | undefined;
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
    await this.d.keysDatabase.pool.query('UPDATE data_keys SET wrapped_key = NULL, shredded_at = $2 WHERE transaction_id = $1', [transactionId, this.d.clock()]);
    return { transactionId, shredded: true, logIndex };
  }

  /**
   * Retention by crypto-shredding: every key period that ended before `asOf − retention` is
   * shredded — each of its epochs' wrapped private keys destroyed (epoch_shredded event first),
   * then its KMS key scheduled for deletion, so copies of the database taken earlier cannot
   * be opened either. Envelope-v1 data keys of transactions older than the cutoff are
   * destroyed in the live database. One `retention_run` event closes the run.
   */
  async applyRetention(principal: Principal | null, raw: unknown): Promise<RetentionReport> {
    if (principal) authorize(principal, 'admin:keys');
    const req = parse(retentionRequestSchema, raw, '{ "dryRun"?: boolean, "asOf"?: ISO time (dev-only local KMS) }');
    if (req.asOf && !this.d.devKms) throw new PaylogError('VALIDATION_FAILED', 'asOf is allowed only with the dev-only local KMS');
    const actor: KeyEventActor = principal ? actorOf(principal) : SYSTEM_ACTOR;
    const asOf = req.asOf ? new Date(req.asOf) : this.d.clock();
    const cutoff = retentionCutoff(asOf, this.d.retention);
    const policy = `PAYLOG_RETENTION=${this.d.retention}`;
    const dryRun = req.dryRun === true;
    const periods = (await this.d.keysDatabase.pool.query("SELECT * FROM key_periods WHERE period_end <= $1 AND state = 'active' ORDER BY period_start", [cutoff])).rows as {
      granularity: string;
      period_start: Date;
      period_end: Date;
      kms_key_id: string;
    }[];
    const report: RetentionReport = { policy, asOf: asOf.toISOString(), cutoff: cutoff.toISOString(), dryRun, periods: [], epochs: [], v1Records: 0, logIndex: null };
    for (const p of periods) {
      // Issue 17: the runtime role can INSERT key_periods rows; one naming a key other than its
      // period's alias (any KMS key paylog may schedule for deletion) is reported and never acted on.
      if (!(await this.d.epochs.isPeriodKeyRow(p))) continue;
      const epochs = (
        await this.d.keysDatabase.pool.query(
          `SELECT e.*, (SELECT count(*)::int FROM data_keys d WHERE d.epoch_id = e.epoch_id) AS records FROM key_epochs e
           WHERE e.granularity = $1 AND e.period_start = $2 AND e.shredded_at IS NULL ORDER BY e.epoch_id`,
          [p.granularity, p.period_start],
        )
      ).rows as (EpochRow & { records: number })[];
      for (const e of epochs) {
        report.epochs.push({ epochId: e.epoch_id, processor: e.processor, periodStart: e.period_start.toISOString(), periodEnd: e.period_end.toISOString(), records: e.records });
        if (dryRun) continue;
        await this.d.keyEvents.record({
          event: 'epoch_shredded',
          time: this.d.clock(),
          actor,
          ...epochEventSubject(e),
          ...(e.kms_key_id ? { kmsKeyId: e.kms_key_id } : {}),
          policy,
          asOf,
          counts: { records: e.records },
        });
        await this.d.keysDatabase.pool.query(
          'UPDATE key_epochs SET wrapped_private_key = NULL, wrapped_key_sha256 = NULL, shredded_at = $2, retired_at = coalesce(retired_at, $2) WHERE epoch_id = $1',
          [e.epoch_id, this.d.clock()],
        );
        this.d.epochs.forget(e.epoch_id);
      }
      // The period's KMS key: scheduled for deletion unless a live epoch (rewrapped) still uses it.
      const inUse = Number(
        (await this.d.keysDatabase.pool.query('SELECT count(*) AS n FROM key_epochs WHERE kms_key_id = $1 AND shredded_at IS NULL', [p.kms_key_id])).rows[0].n,
      );
      let scheduled: string | null = null;
      if (!dryRun && inUse === 0) {
        const when = await this.d.kms.scheduleKeyDeletion(p.kms_key_id, SHRED_PENDING_WINDOW_DAYS);
        scheduled = when.toISOString();
        await this.d.keysDatabase.pool.query("UPDATE key_periods SET state = 'pending_deletion', deletion_date = $3 WHERE granularity = $1 AND period_start = $2", [
          p.granularity,
          p.period_start,
          when,
        ]);
      }
      report.periods.push({ granularity: p.granularity, periodStart: p.period_start.toISOString(), periodEnd: p.period_end.toISOString(), kmsKeyId: p.kms_key_id, scheduledDeletion: scheduled });
    }
    const v1 = (
      await this.d.keysDatabase.pool.query(
        'SELECT d.transaction_id FROM data_keys d JOIN transactions t USING (transaction_id) WHERE d.kms_key_id IS NOT NULL AND d.wrapped_key IS NOT NULL AND t.created_at < $1',
        [cutoff],
      )
    ).rows as { transaction_id: string }[];
    report.v1Records = v1.length;
    if (!dryRun) {
      report.logIndex = await this.d.keyEvents.record({
        event: 'retention_run',
        time: this.d.clock(),
        actor,
        policy,
        asOf,
        reason: `cutoff ${cutoff.toISOString()}`,
        counts: { periods: report.periods.length, epochs: report.epochs.length, v1Records: v1.length, records: report.epochs.reduce((a, e) => a + e.records, 0) },
      });
      if (v1.length > 0) {
        await this.d.keysDatabase.pool.query('UPDATE data_keys SET wrapped_key = NULL, shredded_at = $2 WHERE transaction_id = ANY($1)', [v1.map((r) => r.transaction_id), this.d.clock()]);
      }
    }
    return report;
  }

  private async resolveKeyArn(keyId: string): Promise<string> {
    // DescribeKey: the destination must exist and be enabled; its ARN is what rows record.
    await this.d.kms.ping(keyId);
    return await this.d.kms.keyArn(keyId);
  }
}

