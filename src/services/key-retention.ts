/**
 * Retention by crypto-shredding (PCI DSS 3.2.1): key periods past `asOf − retention` are
 * shredded, each of their KMS keys scheduled for deletion, expired envelope-v1 data keys and
 * client-side encryption keys destroyed. Behind `KeyLifecycleService.applyRetention`
 * (src/services/key-lifecycle.ts) and `npm run retention`.
 *
 * Contracts:
 * - Every step that destroys key material first commits its key event (`epoch_shredded`,
 *   `retention_run`) and only then changes the database (through {@link commitShred},
 *   src/services/key-shred.ts, on the `paylog_keys` connection) or KMS. A rerun repeats what a
 *   failure left undone.
 * - EVERY KMS key that has wrapped a period's epoch keys (its own and every rewrap's) is
 *   scheduled for deletion, so copies of the database taken at any time cannot be opened once
 *   KMS refuses the keys. A key still wrapping live key material elsewhere, or a service key,
 *   MUST be kept (reported, logged as an error) and the period stays `active`.
 * - A `key_periods` row is acted on only if it names the KMS key its period's alias names
 *   (the runtime role can INSERT such rows).
 * - A dry run reads and reports only: no key event, no database write, no KMS change.
 */
import type { Logger } from 'pino';
import { PaylogError, isPaylogError } from '../errors.js';
import { authorize } from '../auth/policy.js';
import type { Principal } from '../auth/principal.js';
import type { AppDatabase } from '../db/connection.js';
import type { KmsBackend } from '../kms/backend.js';
import type { EpochKeyring } from '../kms/epoch-keys.js';
import { epochEventSubject, type EpochRow } from '../kms/epoch-names.js';
import { MAX_SHRED_KMS_KEY_IDS } from '../log/leaf/key-event.js';
import { retentionCutoff } from '../log/retention-policy.js';
import type { CseKeyStore } from '../cse/keys.js';
import { destroyExpiredCseKeys, type CseKeyDestruction } from '../cse/retention.js';
import { actorOf, SYSTEM_ACTOR, type KeyEvent, type KeyEventActor, type KeyEventLog } from './key-events.js';
import { parseKeyRequest, retentionRequestSchema } from './key-requests.js';
import { commitShred } from './key-shred.js';
import type { ServiceKeyArns } from './service-key-arns.js';
import { epochRecordCountSql } from './transaction-queries.js';

/** KMS ScheduleKeyDeletion waiting period for a shredded key period (KMS allows 7–30 days). */
const SHRED_PENDING_WINDOW_DAYS = 7;

interface KeyPeriodRow {
  granularity: string;
  period_start: Date;
  period_end: Date;
  kms_key_id: string;
}

/** One KMS key of an expiring key period and what retention does with it. */
interface PeriodKeyPlan {
  kmsKeyId: string;
  action: 'schedule' | 'pending_deletion' | 'deleted' | 'kept';
  reason?: string;
  deletionDate?: Date;
}

export interface RetentionReport {
  policy: string;
  asOf: string;
  cutoff: string;
  dryRun: boolean;
  periods: {
    granularity: string;
    periodStart: string;
    periodEnd: string;
    /** The period's own (first) KMS key, and its deletion date. */
    kmsKeyId: string;
    scheduledDeletion: string | null;
    /** EVERY KMS key that has wrapped the period's epoch keys (own key first) and what the run did with it. */
    kmsKeys: { kmsKeyId: string; action: PeriodKeyPlan['action']; reason?: string; deletionDate: string | null }[];
  }[];
  epochs: { epochId: string; processor: string; periodStart: string; periodEnd: string; records: number }[];
  v1Records: number;
  logIndex: number | null;
  /** Client-side encryption keys destroyed (or, in a dry run, due): src/cse/retention.ts. */
  cseKeys?: CseKeyDestruction[];
}

/** What retention reads and writes (the key lifecycle's dependencies extend these). */
export interface RetentionDeps {
  /** The paylog_keys connection (the only one that may destroy key material). */
  keysDatabase: AppDatabase;
  kms: KmsBackend;
  epochs: EpochKeyring;
  keyEvents: KeyEventLog;
  retention: string;
  /** True with the dev-only local KMS (then `asOf` is allowed). */
  devKms: boolean;
  clock: () => Date;
  /** Client-side encryption keys, destroyed by retention after their period plus overlap. */
  cseKeys?: CseKeyStore | undefined;
  logger?: Pick<Logger, 'error' | 'warn'> | undefined;
}

export class KeyRetention {
  constructor(
    private readonly d: RetentionDeps,
    private readonly serviceKeys: ServiceKeyArns,
  ) {}

  /**
   * Retention by crypto-shredding: every key period that ended before `asOf − retention` is
   * shredded — each of its epochs' wrapped private keys destroyed (an `epoch_shredded` event
   * first, naming every KMS key that has ever wrapped the period's keys), then EACH of those KMS
   * keys (the period's own key and every rewrap's, {@link periodKmsKeys}) scheduled for
   * deletion after a `retention_run` event naming them, so copies of the database taken at any
   * time (before or after a rewrap) cannot be opened either once KMS refuses the keys.
   * A key still wrapping live key material elsewhere, or a service key, is kept (reported and
   * logged as an error) and the period stays `active`, so the next run tries again.
   * Envelope-v1 data keys of transactions older than the cutoff are destroyed in the live
   * database (per-transaction mode shares one KMS key: backups keep them).
   * Client-side encryption keys past their period plus overlap are destroyed too
   * (src/cse/retention.ts). One `retention_run` event closes the run.
   */
  async applyRetention(principal: Principal | null, raw: unknown): Promise<RetentionReport> {
    if (principal) authorize(principal, 'admin:keys');
    const req = parseKeyRequest(retentionRequestSchema, raw, '{ "dryRun"?: boolean, "asOf"?: ISO time (dev-only local KMS) }');
    if (req.asOf && !this.d.devKms) throw new PaylogError('VALIDATION_FAILED', 'asOf is allowed only with the dev-only local KMS');
    const actor: KeyEventActor = principal ? actorOf(principal) : SYSTEM_ACTOR;
    const asOf = req.asOf ? new Date(req.asOf) : this.d.clock();
    const cutoff = retentionCutoff(asOf, this.d.retention);
    const policy = `PAYLOG_RETENTION=${this.d.retention}`;
    const dryRun = req.dryRun === true;
    const periods = (await this.d.keysDatabase.pool.query("SELECT * FROM key_periods WHERE period_end <= $1 AND state = 'active' ORDER BY period_start", [cutoff])).rows as KeyPeriodRow[];
    const report: RetentionReport = { policy, asOf: asOf.toISOString(), cutoff: cutoff.toISOString(), dryRun, periods: [], epochs: [], v1Records: 0, logIndex: null };
    const plans: { p: KeyPeriodRow; keys: PeriodKeyPlan[] }[] = [];
    for (const p of periods) {
      // Issue 17: the runtime role can INSERT key_periods rows; one naming a key other than its
      // period's alias (any KMS key paylog may schedule for deletion) is reported and never acted on.
      if (!(await this.d.epochs.isPeriodKeyRow(p))) continue;
      const kmsKeyIds = await this.periodKmsKeys(p);
      const keys: PeriodKeyPlan[] = [];
      for (const k of kmsKeyIds) keys.push(await this.planKeyDeletion(k, p));
      plans.push({ p, keys });
      const epochs = (
        await this.d.keysDatabase.pool.query(
          `SELECT e.*, ${epochRecordCountSql('e.epoch_id')} AS records FROM key_epochs e
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
          kmsKeyIds: kmsKeyIds.slice(0, MAX_SHRED_KMS_KEY_IDS),
          policy,
          asOf,
          counts: { records: e.records },
        });
        await commitShred(
          this.d.keysDatabase,
          {
            text: 'UPDATE key_epochs SET wrapped_private_key = NULL, wrapped_key_sha256 = NULL, shredded_at = $2, retired_at = coalesce(retired_at, $2) WHERE epoch_id = $1',
            values: [e.epoch_id, this.d.clock()],
          },
          { event: 'epoch_shredded', epochId: e.epoch_id },
        );
        this.d.epochs.forget(e.epoch_id);
      }
    }
    const v1 = (
      await this.d.keysDatabase.pool.query(
        'SELECT d.log_index FROM data_keys d JOIN transactions t ON t.log_index = d.log_index WHERE d.kms_key_id IS NOT NULL AND d.wrapped_key IS NOT NULL AND t.created_at < $1',
        [cutoff],
      )
    ).rows as { log_index: string }[];
    report.v1Records = v1.length;
    report.cseKeys = await this.destroyExpiredCseKeys(asOf, actor, dryRun);
    if (!dryRun) {
      // The run's leaf names every KMS key it is about to schedule (more than fit: continued leaves).
      const toSchedule = [...new Set(plans.flatMap((x) => x.keys.filter((k) => k.action === 'schedule').map((k) => k.kmsKeyId)))];
      const counts = { periods: plans.length, epochs: report.epochs.length, v1Records: v1.length, records: report.epochs.reduce((a, e) => a + e.records, 0), kmsKeys: toSchedule.length };
      report.logIndex = await this.d.keyEvents.record({
        event: 'retention_run',
        time: this.d.clock(),
        actor,
        policy,
        asOf,
        reason: `cutoff ${cutoff.toISOString()}`,
        counts,
        kmsKeyIds: toSchedule.slice(0, MAX_SHRED_KMS_KEY_IDS),
      });
      for (let i = MAX_SHRED_KMS_KEY_IDS; i < toSchedule.length; i += MAX_SHRED_KMS_KEY_IDS) {
        await this.d.keyEvents.record({ event: 'retention_run', time: this.d.clock(), actor, reason: `continued: KMS keys scheduled for deletion by the run at log index ${report.logIndex}`, kmsKeyIds: toSchedule.slice(i, i + MAX_SHRED_KMS_KEY_IDS) });
      }
      const scheduled = new Map<string, Date>();
      for (const { p, keys } of plans) {
        for (const k of keys) {
          if (k.action !== 'schedule') continue;
          const when = scheduled.get(k.kmsKeyId) ?? (await this.scheduleDeletion(k.kmsKeyId));
          scheduled.set(k.kmsKeyId, when);
          k.deletionDate = when;
        }
        const kept = keys.filter((k) => k.action === 'kept');
        if (kept.length > 0) {
          this.d.logger?.error(
            { granularity: p.granularity, periodStart: p.period_start.toISOString(), kept: kept.map((k) => ({ kmsKeyId: k.kmsKeyId, reason: k.reason })) },
            'retention could not schedule the deletion of every KMS key of an expired key period: copies of its epoch keys under those keys stay readable; the next run tries again',
          );
          continue;
        }
        const dates = keys.map((k) => k.deletionDate?.getTime()).filter((t): t is number => t !== undefined);
        await this.d.keysDatabase.pool.query("UPDATE key_periods SET state = 'pending_deletion', deletion_date = $3 WHERE granularity = $1 AND period_start = $2", [
          p.granularity,
          p.period_start,
          dates.length > 0 ? new Date(Math.max(...dates)) : this.d.clock(),
        ]);
      }
      if (v1.length > 0) {
        await commitShred(
          this.d.keysDatabase,
          { text: 'UPDATE data_keys SET wrapped_key = NULL, shredded_at = $2 WHERE log_index = ANY($1::bigint[])', values: [v1.map((r) => r.log_index), this.d.clock()] },
          null,
        );
      }
    }
    for (const { p, keys } of plans) {
      const own = keys.find((k) => k.kmsKeyId === p.kms_key_id);
      report.periods.push({
        granularity: p.granularity,
        periodStart: p.period_start.toISOString(),
        periodEnd: p.period_end.toISOString(),
        kmsKeyId: p.kms_key_id,
        scheduledDeletion: own?.deletionDate?.toISOString() ?? null,
        kmsKeys: keys.map((k) => ({ kmsKeyId: k.kmsKeyId, action: k.action, ...(k.reason ? { reason: k.reason } : {}), deletionDate: k.deletionDate?.toISOString() ?? null })),
      });
    }
    return report;
  }

  // ---- client-side encryption keys (issue 17): their own step of retention, src/cse/retention.ts
  private async destroyExpiredCseKeys(asOf: Date, actor: KeyEventActor, dryRun: boolean): Promise<CseKeyDestruction[]> {
    if (!this.d.cseKeys) return [];
    const deps = { keysDatabase: this.d.keysDatabase, kms: this.d.kms, keys: this.d.cseKeys, recordKeyEvent: (e: KeyEvent) => this.d.keyEvents.record(e), clock: this.d.clock };
    return await destroyExpiredCseKeys(deps, { asOf, actor, dryRun });
  }
  // ---- end client-side encryption keys

  /**
   * Every KMS key that has wrapped the epoch keys of key period `p`: its own key (key_periods),
   * then each key a rewrap recorded for it (key_period_kms_keys, written only by paylog_keys,
   * each before its first use), in the order they were added.
   */
  async periodKmsKeys(p: Pick<KeyPeriodRow, 'granularity' | 'period_start' | 'kms_key_id'>): Promise<string[]> {
    const rows = (
      await this.d.keysDatabase.pool.query('SELECT kms_key_id FROM key_period_kms_keys WHERE granularity = $1 AND period_start = $2 ORDER BY added_at, round NULLS FIRST, kms_key_id', [
        p.granularity,
        p.period_start,
      ])
    ).rows as { kms_key_id: string }[];
    return [...new Set([p.kms_key_id, ...rows.map((r) => r.kms_key_id)])];
  }

  /**
   * What retention does with KMS key `k` of expiring period `p`: schedule its deletion; nothing
   * if KMS already has it pending deletion or deleted; keep it (with the reason) if it is a
   * service key, or if it still wraps live key material outside the period (a live epoch of
   * another period, or an envelope-v1 data key) — destroying it would destroy live data.
   */
  private async planKeyDeletion(k: string, p: KeyPeriodRow): Promise<PeriodKeyPlan> {
    if ((await this.serviceKeys.get()).has(k)) return { kmsKeyId: k, action: 'kept', reason: 'a configured data or signing key' };
    let state: string | undefined;
    try {
      state = await this.d.kms.keyState(k);
    } catch (e) {
      if (isPaylogError(e) && e.details?.kmsError === 'NotFoundException') return { kmsKeyId: k, action: 'deleted' };
      throw e;
    }
    if (state === 'PendingDeletion') return { kmsKeyId: k, action: 'pending_deletion' };
    const live = Number(
      (
        await this.d.keysDatabase.pool.query(
          `SELECT (SELECT count(*) FROM key_epochs WHERE kms_key_id = $1 AND shredded_at IS NULL AND NOT (granularity = $2 AND period_start = $3))
                + (SELECT count(*) FROM data_keys WHERE kms_key_id = $1 AND wrapped_key IS NOT NULL) AS n`,
          [k, p.granularity, p.period_start],
        )
      ).rows[0].n,
    );
    if (live > 0) return { kmsKeyId: k, action: 'kept', reason: `still wraps ${live} live key(s) outside this key period` };
    return { kmsKeyId: k, action: 'schedule' };
  }

  /** ScheduleKeyDeletion; a key KMS already has pending deletion counts as scheduled. */
  private async scheduleDeletion(k: string): Promise<Date> {
    try {
      return await this.d.kms.scheduleKeyDeletion(k, SHRED_PENDING_WINDOW_DAYS);
    } catch (e) {
      if (isPaylogError(e) && e.details?.kmsError === 'KMSInvalidStateException' && (await this.d.kms.keyState(k)) === 'PendingDeletion') return this.d.clock();
      throw e;
    }
  }
}
