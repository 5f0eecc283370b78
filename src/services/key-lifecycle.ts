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
 * - Every shred commits through {@link commitShred}: between two log batches (append lock), so
 *   no release whose access entry commits after the shred returns plaintext
 *   (src/services/append-preconditions.ts `keyMaterialRequires`), and with a notice to every paylog process
 *   (src/kms/key-notifications.ts) to zero cached epoch keys.
 * - Access entries (no card data) and log leaves are never touched.
 * - A key period's epoch keys are only ever wrapped under KMS keys of THAT period (its own key,
 *   and the `-r<n>` keys its rewraps create, each recorded in key_period_kms_keys before use);
 *   retention schedules the deletion of every one of them, so backups are shredded too.
 * - One row that cannot be rewrapped never stops a rewrap: it is skipped and reported.
 */
import { z } from 'zod';
import { PaylogError, isPaylogError } from '../errors.js';
import { authorize } from '../auth/policy.js';
import type { Principal } from '../auth/principal.js';
import type { AppDatabase } from '../db/connection.js';
import type { KmsBackend } from '../kms/backend.js';
import {
  epochEventSubject,
  epochIdOf,
  epochKmsContext,
  periodOf,
  periodRewrapKeyAlias,
  type EpochGranularity,
  type EpochKeyring,
  type EpochRow,
  type TrustedEpochRow,
} from '../kms/epoch-keys.js';
import { TRUST_COLUMNS } from '../kms/epoch-rows.js';
import { kmsEncryptionContext } from '../crypto/envelope.js';
import { actorOf, SYSTEM_ACTOR, type KeyEvent, type KeyEventActor, type KeyEventLog } from './key-events.js';
import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { decodeLeaf } from '../log/leaf.js';
import { MAX_SHRED_KMS_KEY_IDS } from '../log/leaf/key-event.js';
import { EPOCH_ID_PATTERN, PRINCIPAL_NAME_PATTERN, TRANSACTION_ID_PATTERN } from '../validation/identifiers.js';
import { retentionCutoff, subtractIsoDuration } from '../log/retention-policy.js';
import { APPEND_LOCK_KEY } from '../log/appender.js';
import { encodeKeyNotice, KEY_EVENTS_CHANNEL, type KeyNotice } from '../kms/key-notifications.js';
import type { CseKeyStore } from '../cse/keys.js';
import { destroyExpiredCseKeys, type CseKeyDestruction } from '../cse/retention.js';

export const DEFAULT_REWRAP_BATCH = 100;
export const MAX_REWRAP_BATCH = 1000;
/** KMS ScheduleKeyDeletion waiting period for a shredded key period (KMS allows 7–30 days). */
export const SHRED_PENDING_WINDOW_DAYS = 7;
/** Rewrap rounds of one key period (so a period's keys fit in one `epoch_shredded` leaf with room for sources). */
export const MAX_REWRAP_ROUNDS = 32;
/** Skipped rows listed (by id) in one rewrap batch result; `count` has them all. */
export const MAX_REPORTED_SKIPS = 100;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest();

/** How long a shred waits for the append lock (a log batch in flight) before failing; a rerun repeats it. */
export const SHRED_LOCK_TIMEOUT_MS = 10_000;

/**
 * Commits one shred (an UPDATE destroying key material) in a transaction of its own that:
 * 1. takes the log's append lock (src/log/append/pg-driver.ts `APPEND_LOCK_KEY`): the shred commits between two batches,
 *    never while a batch that has read its key-material preconditions is still open. A batch
 *    reading after this commit sees the shred and appends the release as denied. (The runtime
 *    role cannot lock data_keys rows FOR SHARE, so the append lock is what orders a data-key
 *    shred against the batch; epoch rows are also locked FOR SHARE by the batch.)
 * 2. sends `notice` on the key events channel, delivered to every paylog process only if the
 *    transaction commits.
 * Resolves only after COMMIT. MUST NOT be called while holding an append (it would wait for it).
 */
export async function commitShred(keysDatabase: AppDatabase, update: { text: string; values: unknown[] }, notice: KeyNotice | null): Promise<void> {
  const client = await keysDatabase.pool.connect();
  let broken = false;
  try {
    await client.query(`BEGIN; SET LOCAL lock_timeout = ${SHRED_LOCK_TIMEOUT_MS}; SELECT pg_advisory_xact_lock(${APPEND_LOCK_KEY.toString()})`);
    await client.query(update.text, update.values);
    if (notice) await client.query('SELECT pg_notify($1, $2)', [KEY_EVENTS_CHANNEL, encodeKeyNotice(notice)]);
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw e;
  } finally {
    client.release(broken);
  }
}

/** KMS errors that concern the wrapped key of ONE row (its blob, context or source key), once the target key is known to be enabled. */
const ROW_KMS_ERRORS = new Set([
  'InvalidCiphertextException',
  'IncorrectKeyException',
  'NotFoundException',
  'DisabledException',
  'KMSInvalidStateException',
  'InvalidKeyUsageException',
  'AccessDeniedException',
  'ValidationException',
]);

/** Why KMS refused to rewrap one row (e.g. `KMS InvalidCiphertextException`), or null for a failure that is not about the row (KMS unavailable: the batch stops). */
function rowKmsRefusal(e: unknown): string | null {
  const name = isPaylogError(e) ? e.details?.kmsError : undefined;
  return typeof name === 'string' && ROW_KMS_ERRORS.has(name) ? `KMS ReEncrypt refused it (${name})` : null;
}

/** An id as it may be reported and logged: itself if it has the shape of such ids, else a digest (a planted row may hold anything). */
function safeRowRef(id: string, shape: RegExp): string {
  return shape.test(id) ? id : `sha256:${sha256(Buffer.from(id, 'utf8')).toString('hex').slice(0, 32)}`;
}

/**
 * Why an epoch row cannot be rewrapped as it stands, or null. A row made by the service names
 * its own period (epoch id = `<processor>/<period label>/<generation>`, bounds = one whole
 * period), holds a wrapped private key matching its recorded digest, the KMS key wrapping it,
 * and a 32-byte X25519 public key. (KMS then checks the blob against the epoch id and public
 * key in its encryption context.)
 */
export function epochRowProblem(e: EpochRow): string | null {
  if (e.granularity !== 'month' && e.granularity !== 'day' && e.granularity !== 'hour') return 'unknown granularity';
  const period = periodOf(new Date(e.period_start), e.granularity as EpochGranularity);
  if (period.start.getTime() !== new Date(e.period_start).getTime() || period.end.getTime() !== new Date(e.period_end).getTime()) return 'its bounds are not one whole key period';
  if (epochIdOf(e.processor, period, e.generation) !== e.epoch_id) return 'its epoch id does not name its processor, period and generation';
  if (e.wrapped_private_key === null || e.kms_key_id === null) return 'it holds no wrapped key';
  if (e.wrapped_key_sha256 !== null && !sha256(Buffer.from(e.wrapped_private_key)).equals(Buffer.from(e.wrapped_key_sha256))) return 'its wrapped key does not match its digest';
  if (e.public_key === null || Buffer.from(e.public_key).length !== 32) return 'its public key is not 32 bytes';
  return null;
}

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
const V1_KEYS_TO_REWRAP = `d.kms_key_id IS NOT NULL AND d.kms_key_id <> $1 AND d.wrapped_key IS NOT NULL AND ($2::text IS NULL OR d.transaction_id > $2)`;

const REWRAP_REQUEST_EXPECTED =
  '{ "periodKeys": "new" (every live epoch key under a new KMS key of its own period) and/or "to": KMS key id (envelope-v1 data keys only), "run"?: uuid, "after"?: cursor from the previous batch, "batchSize"?: 1..1000 }';

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

/** The processor of a transaction, from its leaf (format v2 lookup rows hold no processor column). */
function processorOfLeaf(leaf: Buffer | null): string {
  if (leaf === null) throw new PaylogError('INTEGRITY_FAILURE', 'no transaction leaf');
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
  kms: KmsBackend;
  epochs: EpochKeyring;
  keyEvents: KeyEventLog;
  retention: string;
  /** True with the dev-only local KMS (then `asOf` is allowed). */
  devKms: boolean;
  clock: () => Date;
  /** KMS requests so far by operation (status). */
  kmsCounts?: () => Promise<Record<string, number>>;
  /** Client-side encryption keys, destroyed by retention after their period plus overlap. */
  cseKeys?: CseKeyStore;
  /** The data and signing keys: never a rewrap target, never scheduled for deletion by retention. */
  serviceKeyIds?: string[];
  /** Error lines for rows skipped by rewrap and KMS keys retention must keep (no key material). */
  logger?: Pick<Logger, 'error' | 'warn'>;
}

export const rewrapRequestSchema = z
  .strictObject({
    periodKeys: z.literal('new').optional(),
    to: z.string().min(1).max(2048).optional(),
    run: z.uuid().optional(),
    after: z
      .string()
      .max(300)
      .regex(/^(epoch|v1):.+$/)
      .optional(),
    batchSize: z.number().int().min(1).max(MAX_REWRAP_BATCH).optional(),
  })
  .refine((r) => r.periodKeys !== undefined || r.to !== undefined, { message: 'periodKeys or to' });
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
    const req = parse(rotateRequestSchema, raw, '{ "processor"?: name, "reason"?: short text }');
    const names = req.processor
      ? [req.processor]
      : ((await this.d.database.pool.query("SELECT name FROM processors WHERE status = 'active' ORDER BY name")).rows as { name: string }[]).map((r) => r.name);
    const out: string[] = [];
    for (const p of names) out.push((await this.d.epochs.rotate(p, this.d.clock(), actorOf(principal), req.reason ?? 'rotation requested by an administrator')).epochId);
    return { epochs: out };
  }

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
    const req = parse(rewrapRequestSchema, raw, REWRAP_REQUEST_EXPECTED);
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
          `SELECT d.transaction_id, d.kms_key_id, d.wrapped_key, t.processor, e.leaf FROM data_keys d LEFT JOIN transactions t USING (transaction_id)
           LEFT JOIN log_entries e ON e.idx = t.log_index WHERE ${V1_KEYS_TO_REWRAP} ORDER BY d.transaction_id LIMIT $3`,
          [to, cursor?.id ?? null, batch],
        )
      ).rows as { transaction_id: string; kms_key_id: string; wrapped_key: Buffer; processor: string | null; leaf: Buffer | null }[];
      if (rows.length > 0) {
        kind = 'v1';
        const fresh: { id: string; blob: Buffer }[] = [];
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
            fresh.push({ id: r.transaction_id, blob: await this.d.kms.reEncrypt(r.wrapped_key, ctx, to) });
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
            await this.d.keysDatabase.pool.query('UPDATE data_keys SET kms_key_id = $2, wrapped_key = $3 WHERE transaction_id = $1 AND wrapped_key IS NOT NULL', [f.id, to, f.blob]);
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
              await this.d.keysDatabase.pool.query(`SELECT count(*)::int AS n FROM data_keys d WHERE ${V1_KEYS_TO_REWRAP}`, [
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
    if ((await this.serviceKeyArns()).has(kmsKeyId)) throw new PaylogError('INTEGRITY_FAILURE', 'a rewrap target must not be a data or signing key');
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
    await commitShred(this.d.keysDatabase, { text: 'UPDATE data_keys SET wrapped_key = NULL, shredded_at = $2 WHERE transaction_id = $1', values: [transactionId, this.d.clock()] }, null);
    return { transactionId, shredded: true, logIndex };
  }

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
    const req = parse(retentionRequestSchema, raw, '{ "dryRun"?: boolean, "asOf"?: ISO time (dev-only local KMS) }');
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
        'SELECT d.transaction_id FROM data_keys d JOIN transactions t USING (transaction_id) WHERE d.kms_key_id IS NOT NULL AND d.wrapped_key IS NOT NULL AND t.created_at < $1',
        [cutoff],
      )
    ).rows as { transaction_id: string }[];
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
          { text: 'UPDATE data_keys SET wrapped_key = NULL, shredded_at = $2 WHERE transaction_id = ANY($1)', values: [v1.map((r) => r.transaction_id), this.d.clock()] },
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
    if ((await this.serviceKeyArns()).has(k)) return { kmsKeyId: k, action: 'kept', reason: 'a configured data or signing key' };
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

  private serviceArns: Promise<Set<string>> | undefined;
  /** ARNs of the configured data and signing keys (DescribeKey once). */
  private async serviceKeyArns(): Promise<Set<string>> {
    this.serviceArns ??= Promise.all((this.d.serviceKeyIds ?? []).map((id) => this.d.kms.keyArn(id))).then((a) => new Set([...(this.d.serviceKeyIds ?? []), ...a]));
    try {
      return await this.serviceArns;
    } catch (e) {
      this.serviceArns = undefined;
      throw e;
    }
  }
}

