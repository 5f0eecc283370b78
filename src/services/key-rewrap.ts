/**
 * Rewrap: moving wrapped keys to new KMS keys in resumable batches (ReEncrypt inside KMS; card
 * data is never touched). Behind `KeyLifecycleService.rewrapBatch` (src/services/key-lifecycle.ts).
 *
 * Contracts:
 * - A key period's epoch keys are only ever wrapped under KMS keys of THAT period: its own key
 *   and the `-r<n>` keys its rewraps create, each recorded in key_period_kms_keys (paylog_keys
 *   only) BEFORE its first use. Envelope-v1 data keys move only to a `to` that is not a key
 *   period's key nor a service key.
 * - The key event (one per epoch; one per batch of envelope-v1 data keys) is committed
 *   (KeyEventLog.record resolves after commit) before the rows are written, through the
 *   `paylog_keys` connection only. A rerun redoes at most one batch.
 * - One row that cannot be rewrapped (planted, damaged, refused by KMS) never stops a rewrap:
 *   it is skipped, reported (by a safe reference, src/services/key-row-checks.ts) and never
 *   retried in the pass. A KMS failure that is not about the row stops the batch.
 * - Access entries and log leaves are never touched.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { PaylogError } from '../errors.js';
import { authorize } from '../auth/policy.js';
import type { Principal } from '../auth/principal.js';
import type { AppDatabase } from '../db/connection.js';
import type { KmsBackend } from '../kms/backend.js';
import type { EpochKeyring } from '../kms/epoch-keys.js';
import { epochEventSubject, epochKmsContext, periodRewrapKeyAlias, type EpochGranularity, type EpochRow, type TrustedEpochRow } from '../kms/epoch-names.js';
import { TRUST_COLUMNS } from '../kms/epoch-rows.js';
import { periodOf } from '../keys/periods.js';
import { kmsEncryptionContext } from '../crypto/envelope.js';
import { EPOCH_ID_PATTERN, TRANSACTION_ID_PATTERN } from '../validation/identifiers.js';
import { actorOf, type KeyEventLog } from './key-events.js';
import { DEFAULT_REWRAP_BATCH, REWRAP_REQUEST_EXPECTED, parseKeyRequest, rewrapRequestSchema } from './key-requests.js';
import { epochRowProblem, processorOfLeaf, rowKmsRefusal, safeRowRef } from './key-row-checks.js';
import type { ServiceKeyArns } from './service-key-arns.js';

/** Rewrap rounds of one key period (so a period's keys fit in one `epoch_shredded` leaf with room for sources). */
const MAX_REWRAP_ROUNDS = 32;
/** Skipped rows listed (by id) in one rewrap batch result; `count` has them all. */
const MAX_REPORTED_SKIPS = 100;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest();

/** Where one rewrap pass has got to: the last row visited (skipped rows included), in id order. */
interface RewrapCursor {
  kind: 'epoch' | 'v1';
  id: string;
}

function parseRewrapCursor(after: string | undefined): RewrapCursor | null {
  if (after === undefined) return null;
  const i = after.indexOf(':');
  return { kind: after.slice(0, i) as 'epoch' | 'v1', id: after.slice(i + 1) };
}

/**
 * Live epochs a pass of run $1 has still to visit after epoch id $2 (null = from the start):
 * those not yet under the run's key of their own period.
 */
const EPOCHS_TO_REWRAP = `e.shredded_at IS NULL AND ($2::text IS NULL OR e.epoch_id > $2)
  AND NOT EXISTS (SELECT 1 FROM key_period_kms_keys k WHERE k.granularity = e.granularity AND k.period_start = e.period_start
                  AND k.rewrap_run = $1 AND k.role = 'rewrap_target' AND k.kms_key_id = e.kms_key_id)`;
/** Live envelope-v1 data keys not yet under $1, after transaction id $2 (null = from the start). */
const V1_KEYS_TO_REWRAP = `d.kms_key_id IS NOT NULL AND d.kms_key_id <> $1 AND d.wrapped_key IS NOT NULL AND ($2::text IS NULL OR t.transaction_id > $2)`;
/** The v1 data keys with their transactions row (`t`, the paging key: `transaction_id`); data_keys is keyed by log index (migration 0018). */
const V1_KEYS_FROM = 'data_keys d JOIN transactions t ON t.log_index = d.log_index';

export interface RewrapResult {
  rewrapped: number;
  kind: 'epoch' | 'v1' | null;
  remaining: number;
  done: boolean;
  /** The run: pass it back with `after` for the next batch (and alone to resume a killed run). */
  run: string;
  periodKeys?: 'new';
  /** Envelope-v1 target (ARN), or null when v1 data keys are not being moved. */
  to: string | null;
  /** Cursor of this pass (`epoch:<id>` / `v1:<id>`), or null. */
  after: string | null;
  /** Rows left as they were because they cannot be rewrapped (each also an error log line). */
  skipped: { count: number; epochIds: string[]; transactionIds: string[] };
}

/** What a rewrap reads and writes (a subset of the key lifecycle's dependencies). */
interface RewrapDeps {
  /** The paylog_keys connection (the only one that may replace key material). */
  keysDatabase: AppDatabase;
  kms: KmsBackend;
  epochs: EpochKeyring;
  keyEvents: KeyEventLog;
  clock: () => Date;
  logger?: Pick<Logger, 'error' | 'warn'> | undefined;
}

export class KeyRewrap {
  constructor(
    private readonly d: RewrapDeps,
    private readonly serviceKeys: ServiceKeyArns,
  ) {}

  /**
   * Rewraps ONE batch of wrapped keys (ReEncrypt inside KMS; card data is never touched).
   *
   * - `periodKeys: "new"`: every live epoch private key moves to a NEW KMS key of its OWN key
   *   period (alias `alias/paylog-epoch-<granularity>-<label>-r<round>`, created or taken once
   *   per period per run, {@link periodRewrapTarget}); an epoch key is never wrapped under a key
   *   of another period, so retention can destroy every key of a period and with it every copy
   *   of the period's epoch keys, backups included. The target is recorded in
   *   key_period_kms_keys (paylog_keys only) BEFORE the first ReEncrypt to it.
   * - `to`: envelope-v1 per-record data keys only, to that KMS key (which MUST NOT be a key
   *   period's key). Epoch keys never move to `to`.
   *
   * Epochs first, then v1 data keys. Each epoch's key event is committed before its row is
   * written (v1: one event per batch). Call again with the returned `run` and `after` until
   * `done`: one pass visits each row once, so a row that cannot be rewrapped (no KMS key will
   * open it, it names another period, a digest mismatch — e.g. planted by the runtime role)
   * is skipped, reported (`skipped`, error log) and never retried in the pass. Killed and
   * called again with the same `run` (no `after`), rows already under the run's keys are not
   * redone: at most one batch is repeated. A new `run` moves every live epoch again, under a
   * further new key per period.
   */
  async rewrapBatch(principal: Principal, raw: unknown): Promise<RewrapResult> {
    authorize(principal, 'admin:keys');
    const req = parseKeyRequest(rewrapRequestSchema, raw, REWRAP_REQUEST_EXPECTED);
    const batch = req.batchSize ?? DEFAULT_REWRAP_BATCH;
    const run = req.run ?? randomUUID();
    const cursorIn = parseRewrapCursor(req.after);
    const after = cursorIn?.kind === 'epoch' && req.periodKeys !== 'new' ? null : cursorIn; // an epoch cursor means nothing to a v1-only run
    const to = req.to === undefined ? null : await this.resolveV1Target(req.to);
    const actor = actorOf(principal);
    const skipped: RewrapResult['skipped'] = { count: 0, epochIds: [], transactionIds: [] };
    let kind: 'epoch' | 'v1' | null = null;
    let n = 0;
    let cursor: RewrapCursor | null = after;
    if (req.periodKeys === 'new' && (after === null || after.kind === 'epoch')) {
      const rows = (
        await this.d.keysDatabase.pool.query(`SELECT e.*, ${TRUST_COLUMNS}, p.state AS period_state FROM key_epochs e LEFT JOIN key_periods p USING (granularity, period_start) WHERE ${EPOCHS_TO_REWRAP} ORDER BY e.epoch_id LIMIT $3`, [
          run,
          after?.id ?? null,
          batch,
        ])
      ).rows as (TrustedEpochRow & { period_state: string | null })[];
      if (rows.length > 0) {
        kind = 'epoch';
        const targets = new Map<string, string>();
        for (const e of rows) {
          cursor = { kind: 'epoch', id: e.epoch_id };
          // Only rows paylog created (issue 17): a row planted by the runtime role (no valid MAC) is
          // skipped and reported, never rewrapped under a paylog key.
          const problem =
            (this.d.epochs.trustedOnly([e]).length === 0 ? 'it was not created by paylog (its MAC does not verify)' : null) ??
            epochRowProblem(e) ??
            (e.period_state !== 'active' ? 'its key period is shredded or unknown' : null);
          if (problem !== null) {
            this.skipEpoch(skipped, e.epoch_id, problem);
            continue;
          }
          const target = await this.periodRewrapTarget(e, run, targets);
          if (e.kms_key_id === target) continue; // already there (another batch of this run)
          let out: { blob: Buffer; sourceKeyId: string };
          try {
            out = await this.d.kms.reEncryptFrom(e.wrapped_private_key!, epochKmsContext(e.epoch_id, Buffer.from(e.public_key)), e.kms_key_id!, target);
          } catch (err) {
            const why = rowKmsRefusal(err);
            if (why === null) throw err;
            this.skipEpoch(skipped, e.epoch_id, why);
            continue;
          }
          await this.recordSourceKey(e, out.sourceKeyId);
          await this.d.keyEvents.record({
            event: 'epoch_rewrapped',
            time: this.d.clock(),
            actor,
            ...epochEventSubject(e),
            kmsKeyId: target,
            wrappedKey: out.blob,
            previousKmsKeyId: out.sourceKeyId,
          });
          await this.d.keysDatabase.pool.query(
            'UPDATE key_epochs SET kms_key_id = $2, wrapped_private_key = $3, wrapped_key_sha256 = $4 WHERE epoch_id = $1 AND shredded_at IS NULL',
            [e.epoch_id, target, out.blob, sha256(out.blob)],
          );
          this.d.epochs.evict(e.epoch_id);
          n++;
        }
      } else {
        cursor = null; // epochs done: the v1 pass (if any) starts
      }
    }
    if (kind === null && to !== null && (cursor === null || cursor.kind === 'v1')) {
      const rows = (
        await this.d.keysDatabase.pool.query(
          `SELECT t.transaction_id, d.log_index, d.kms_key_id, d.wrapped_key, t.processor, e.leaf FROM ${V1_KEYS_FROM}
           LEFT JOIN log_entries e ON e.idx = t.log_index WHERE ${V1_KEYS_TO_REWRAP} ORDER BY t.transaction_id LIMIT $3`,
          [to, cursor?.id ?? null, batch],
        )
      ).rows as { transaction_id: string; log_index: string; kms_key_id: string; wrapped_key: Buffer; processor: string | null; leaf: Buffer | null }[];
      if (rows.length > 0) {
        kind = 'v1';
        const fresh: { id: string; logIndex: string; blob: Buffer }[] = [];
        for (const r of rows) {
          cursor = { kind: 'v1', id: r.transaction_id };
          let processor: string;
          try {
            processor = r.processor ?? processorOfLeaf(r.leaf);
          } catch {
            this.skipRecord(skipped, r.transaction_id, 'no transaction leaf names its processor');
            continue;
          }
          try {
            const ctx = kmsEncryptionContext({ transactionId: r.transaction_id, processor });
            fresh.push({ id: r.transaction_id, logIndex: r.log_index, blob: await this.d.kms.reEncrypt(r.wrapped_key, ctx, to) });
          } catch (err) {
            const why = rowKmsRefusal(err);
            if (why === null) throw err;
            this.skipRecord(skipped, r.transaction_id, why);
          }
        }
        if (fresh.length > 0) {
          // One event per batch of v1 data keys: the first and last transaction and the count.
          await this.d.keyEvents.record({
            event: 'record_rewrapped',
            time: this.d.clock(),
            actor,
            kmsKeyId: to,
            reason: `envelope v1 data keys ${fresh[0]!.id} .. ${fresh[fresh.length - 1]!.id}`,
            counts: { v1DataKeys: fresh.length },
          });
          for (const f of fresh) {
            await this.d.keysDatabase.pool.query('UPDATE data_keys SET kms_key_id = $2, wrapped_key = $3 WHERE log_index = $1 AND wrapped_key IS NOT NULL', [f.logIndex, to, f.blob]);
          }
        }
        n = fresh.length;
      }
    }
    const epochsLeft =
      req.periodKeys === 'new' && (cursor === null || cursor.kind === 'epoch')
        ? Number((await this.d.keysDatabase.pool.query(`SELECT count(*)::int AS n FROM key_epochs e WHERE ${EPOCHS_TO_REWRAP}`, [run, cursor?.id ?? null])).rows[0].n)
        : 0;
    const v1Left =
      to !== null
        ? Number(
            (
              await this.d.keysDatabase.pool.query(`SELECT count(*)::int AS n FROM ${V1_KEYS_FROM} WHERE ${V1_KEYS_TO_REWRAP}`, [
                to,
                cursor?.kind === 'v1' ? cursor.id : null,
              ])
            ).rows[0].n,
          )
        : 0;
    const remaining = epochsLeft + v1Left;
    return {
      rewrapped: n,
      kind,
      remaining,
      done: remaining === 0,
      run,
      ...(req.periodKeys === 'new' ? { periodKeys: 'new' as const } : {}),
      to,
      after: cursor === null ? null : `${cursor.kind}:${cursor.id}`,
      skipped,
    };
  }

  /**
   * The KMS key that run `run` rewraps epoch `e` to: a key of e's own period, created (alias
   * `...-r<round>`, round = 1 + the period's last) or taken on the run's first epoch of that
   * period and recorded in key_period_kms_keys BEFORE any ReEncrypt to it. Refused
   * (INTEGRITY_FAILURE) if that key is already another period's key or a service key.
   */
  private async periodRewrapTarget(e: EpochRow, run: string, cache: Map<string, string>): Promise<string> {
    const at = `${e.granularity}|${new Date(e.period_start).toISOString()}`;
    const cached = cache.get(at);
    if (cached !== undefined) return cached;
    const find = async () =>
      (
        (
          await this.d.keysDatabase.pool.query("SELECT kms_key_id FROM key_period_kms_keys WHERE granularity = $1 AND period_start = $2 AND rewrap_run = $3 AND role = 'rewrap_target'", [
            e.granularity,
            e.period_start,
            run,
          ])
        ).rows[0] as { kms_key_id: string } | undefined
      )?.kms_key_id;
    let arn = await find();
    for (let attempt = 0; arn === undefined && attempt < 3; attempt++) {
      const round = Number(
        (await this.d.keysDatabase.pool.query('SELECT coalesce(max(round), 0) + 1 AS r FROM key_period_kms_keys WHERE granularity = $1 AND period_start = $2', [e.granularity, e.period_start]))
          .rows[0].r,
      );
      if (round > MAX_REWRAP_ROUNDS) throw new PaylogError('VALIDATION_FAILED', `expected at most ${MAX_REWRAP_ROUNDS} rewraps of one key period`);
      const candidate = await this.d.kms.ensureKey(periodRewrapKeyAlias(periodOf(new Date(e.period_start), e.granularity as EpochGranularity), round), 'SYMMETRIC_DEFAULT');
      await this.requireOnlyThisPeriodsKey(candidate, e);
      await this.d.keysDatabase.pool.query(
        `INSERT INTO key_period_kms_keys (granularity, period_start, kms_key_id, role, round, rewrap_run, added_at) VALUES ($1, $2, $3, 'rewrap_target', $4, $5, $6) ON CONFLICT DO NOTHING`,
        [e.granularity, e.period_start, candidate, round, run, this.d.clock()],
      );
      arn = await find();
    }
    if (arn === undefined) throw new PaylogError('INTERNAL', 'the key period rewrap target could not be recorded');
    await this.d.kms.ping(arn); // enabled: a refusal below is then about the row, not the target
    cache.set(at, arn);
    return arn;
  }

  /** INTEGRITY_FAILURE unless `kmsKeyId` is neither a service key nor recorded for another key period or v1 records. */
  private async requireOnlyThisPeriodsKey(kmsKeyId: string, e: Pick<EpochRow, 'granularity' | 'period_start'>): Promise<void> {
    if ((await this.serviceKeys.get()).has(kmsKeyId)) throw new PaylogError('INTEGRITY_FAILURE', 'a rewrap target must not be a data or signing key');
    const others = Number(
      (
        await this.d.keysDatabase.pool.query(
          `SELECT (SELECT count(*) FROM key_periods WHERE kms_key_id = $1 AND NOT (granularity = $2 AND period_start = $3))
                + (SELECT count(*) FROM key_period_kms_keys WHERE kms_key_id = $1 AND NOT (granularity = $2 AND period_start = $3))
                + (SELECT count(*) FROM data_keys WHERE kms_key_id = $1) AS n`,
          [kmsKeyId, e.granularity, e.period_start],
        )
      ).rows[0].n,
    );
    if (others > 0) throw new PaylogError('INTEGRITY_FAILURE', 'the KMS key a rewrap found for this key period is already another key period\'s key');
  }

  /**
   * KMS confirmed (ReEncrypt's SourceKeyId) that `sourceKeyId` wrapped an epoch of e's period:
   * recorded as a key of the period if it is not already (keys of an earlier version's shared
   * `rewrap --to` target), so retention destroys it with the period.
   */
  private async recordSourceKey(e: EpochRow, sourceKeyId: string): Promise<void> {
    await this.d.keysDatabase.pool.query(
      `INSERT INTO key_period_kms_keys (granularity, period_start, kms_key_id, role, added_at)
       SELECT $1, $2, $3, 'rewrap_source', $4
       WHERE NOT EXISTS (SELECT 1 FROM key_periods WHERE granularity = $1 AND period_start = $2 AND kms_key_id = $3)
       ON CONFLICT DO NOTHING`,
      [e.granularity, e.period_start, sourceKeyId, this.d.clock()],
    );
  }

  private skipEpoch(skipped: RewrapResult['skipped'], epochId: string, why: string): void {
    const ref = safeRowRef(epochId, EPOCH_ID_PATTERN);
    skipped.count++;
    if (skipped.epochIds.length < MAX_REPORTED_SKIPS) skipped.epochIds.push(ref);
    this.d.logger?.error({ epochId: ref, problem: why }, 'rewrap skipped a key epoch row it cannot rewrap (left as it is; the rest of the batch continues)');
  }

  private skipRecord(skipped: RewrapResult['skipped'], transactionId: string, why: string): void {
    const ref = safeRowRef(transactionId, TRANSACTION_ID_PATTERN);
    skipped.count++;
    if (skipped.transactionIds.length < MAX_REPORTED_SKIPS) skipped.transactionIds.push(ref);
    this.d.logger?.error({ transactionId: ref, problem: why }, 'rewrap skipped an envelope-v1 data key it cannot rewrap (left as it is; the rest of the batch continues)');
  }


  /** The `to` of an envelope-v1 rewrap: enabled (DescribeKey), and not a key period's key nor a service key. */
  private async resolveV1Target(keyId: string): Promise<string> {
    // DescribeKey: the destination must exist and be enabled; its ARN is what rows record.
    await this.d.kms.ping(keyId);
    const arn = await this.d.kms.keyArn(keyId);
    const periodKey = Number(
      (await this.d.keysDatabase.pool.query('SELECT (SELECT count(*) FROM key_periods WHERE kms_key_id = $1) + (SELECT count(*) FROM key_period_kms_keys WHERE kms_key_id = $1) AS n', [arn])).rows[0].n,
    );
    if (periodKey > 0) throw new PaylogError('VALIDATION_FAILED', 'expected as "to" a KMS key that is not a key period\'s key (epoch keys move with "periodKeys": "new")');
    return arn;
  }
}
