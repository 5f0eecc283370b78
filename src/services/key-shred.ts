/**
 * Committing a shred: the one way key material is destroyed (an early shred of one transaction,
 * retention of a key period, the expiry of envelope-v1 data keys).
 *
 * Contracts:
 * - Every shred MUST commit through {@link commitShred}: between two log batches (append lock),
 *   so no release whose access entry commits after the shred returns plaintext
 *   (src/services/append-preconditions.ts `keyMaterialRequires`), and with a notice to every
 *   paylog process (src/kms/key-notifications.ts) to zero cached epoch keys.
 * - It runs on the `paylog_keys` connection only (the runtime role cannot UPDATE wrapped keys),
 *   after the shred's key event has committed (the caller's duty).
 * - MUST NOT be called while holding an append (it would wait for it).
 */
import type { AppDatabase } from '../db/connection.js';
import { APPEND_LOCK_KEY } from '../log/appender.js';
import { encodeKeyNotice, KEY_EVENTS_CHANNEL, type KeyNotice } from '../kms/key-notifications.js';

/** How long a shred waits for the append lock (a log batch in flight) before failing; a rerun repeats it. */
const SHRED_LOCK_TIMEOUT_MS = 10_000;

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
