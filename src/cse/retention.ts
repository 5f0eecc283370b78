/**
 * Destruction of client-side encryption keys (issue 17): a CSE key exists only to carry card
 * data from the browser to paylog, for minutes. Once its period plus the overlap
 * (`PAYLOG_CSE_KEY_OVERLAP_S`) has passed, no genuine JWE can still need it, so retention
 * destroys it — in the live database AND in every copy of it, because its seed is wrapped only
 * under the kid's own KMS key (src/cse/keys.ts), and that KMS key is scheduled for deletion.
 *
 * Contract of {@link destroyExpiredCseKeys}, per expired key, in this order:
 * 1. `cse_key_destroyed` is committed to the log (KeyEvent, resolves after commit). If that
 *    fails nothing else happens; a rerun repeats the whole step.
 * 2. The kid's KMS key — the one paylog's own KMS resolves `alias/<kid>` to, NEVER the key a
 *    row names (the runtime role may INSERT rows) — is scheduled for deletion with the minimum
 *    pending window ({@link CSE_KEY_PENDING_WINDOW_DAYS}). From then on KMS refuses to unwrap
 *    the seed (KMSInvalidStateException), and after the window the key is gone for good.
 * 3. The wrapped seed is removed from the row (`paylog_keys` connection: the runtime role
 *    cannot UPDATE `cse_keys`) and this process's cached key is dropped.
 * A dry run only reports. Runs inside retention (src/services/key-retention.ts
 * `applyRetention`: the daily run in worker 0, and `npm run retention -- apply`).
 */
import type { AppDatabase } from '../db/connection.js';
import type { KmsBackend } from '../kms/backend.js';
import { isPaylogError } from '../errors.js';
import type { KeyEvent, KeyEventActor } from '../services/key-events.js';
import type { CseKeyStore } from './keys.js';
import { periodOfKid, resolveCseKmsKey } from './key-names.js';

/** KMS ScheduleKeyDeletion waiting period for a CSE key's KMS key: the minimum KMS allows (7–30). */
const CSE_KEY_PENDING_WINDOW_DAYS = 7;

export interface CseKeyDestruction {
  kid: string;
  periodStart: string;
  periodEnd: string;
  /** The kid's own KMS key (null when KMS no longer has it). */
  kmsKeyId: string | null;
  /** When KMS deletes that key (null: dry run, already pending, or no KMS key). */
  scheduledDeletion: string | null;
}

interface CseDestructionDeps {
  /** The paylog_keys connection. */
  keysDatabase: AppDatabase;
  kms: KmsBackend;
  keys: CseKeyStore;
  recordKeyEvent: (e: KeyEvent) => Promise<number>;
  clock: () => Date;
}

/** True once `kid`'s period plus the overlap has passed at `asOf` (kidAcceptedAt's upper bound). */
function cseKeyExpired(kid: string, asOf: Date, overlapS: number): boolean {
  const p = periodOfKid(kid);
  return p !== null && p.end + overlapS * 1000 <= asOf.getTime();
}

/** Destroys every CSE key whose period plus overlap ended at or before `asOf` (module doc). */
export async function destroyExpiredCseKeys(
  d: CseDestructionDeps,
  run: { asOf: Date; actor: KeyEventActor; dryRun: boolean },
): Promise<CseKeyDestruction[]> {
  const rows = (await d.keysDatabase.pool.query('SELECT kid, kms_key_id FROM cse_keys WHERE destroyed_at IS NULL ORDER BY period_start, kid')).rows as { kid: string; kms_key_id: string }[];
  const overlapS = d.keys.settings.overlapS;
  const out: CseKeyDestruction[] = [];
  for (const row of rows) {
    const period = periodOfKid(row.kid);
    if (period === null || !cseKeyExpired(row.kid, run.asOf, overlapS)) continue;
    const kmsKeyId = await resolveCseKmsKey(d.kms, row.kid, false);
    const done: CseKeyDestruction = {
      kid: row.kid,
      periodStart: new Date(period.start).toISOString(),
      periodEnd: new Date(period.end).toISOString(),
      kmsKeyId,
      scheduledDeletion: null,
    };
    out.push(done);
    if (run.dryRun) continue;
    await d.recordKeyEvent({
      event: 'cse_key_destroyed',
      time: d.clock(),
      actor: run.actor,
      keyName: row.kid,
      ...(kmsKeyId !== null ? { kmsKeyId } : {}),
      periodStart: new Date(period.start),
      periodEnd: new Date(period.end),
      asOf: run.asOf,
      reason: `period and overlap (PAYLOG_CSE_KEY_OVERLAP_S=${overlapS}) ended ${new Date(period.end + overlapS * 1000).toISOString()}`,
    });
    const deletion = kmsKeyId === null ? null : await scheduleDeletion(d.kms, kmsKeyId);
    done.scheduledDeletion = deletion?.toISOString() ?? null;
    await d.keysDatabase.pool.query('UPDATE cse_keys SET wrapped_seed = NULL, destroyed_at = $2, deletion_date = $3 WHERE kid = $1 AND destroyed_at IS NULL', [
      row.kid,
      d.clock(),
      deletion,
    ]);
    d.keys.forget(row.kid);
  }
  return out;
}

/** ScheduleKeyDeletion; a key already pending deletion (a rerun) is left as it is (null). */
async function scheduleDeletion(kms: KmsBackend, keyId: string): Promise<Date | null> {
  try {
    return await kms.scheduleKeyDeletion(keyId, CSE_KEY_PENDING_WINDOW_DAYS);
  } catch (e) {
    if (isPaylogError(e) && e.details?.kmsError === 'KMSInvalidStateException' && (await kms.keyState(keyId)) === 'PendingDeletion') return null;
    throw e;
  }
}
