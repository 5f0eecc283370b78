/**
 * Service keys wrapped under KMS and stored in the `keyring` table. The plaintext exists only
 * in this process's memory; the database holds the KMS-wrapped form.
 */
import { createHmac } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type { AppDatabase } from './db/connection.js';
import { keyring } from './db/schema.js';
import type { KmsBackend } from './kms/backend.js';
import { PaylogError, isPaylogError } from './errors.js';

export const MAC_KEY_NAME = 'fingerprint-hmac';
/**
 * The key of fingerprints v2 and of the probe limit's MACs (issue 17): a key of its own, so
 * nothing computed with it can be compared with the v1 fingerprints that leaves written before
 * leaf format v3 carry (those used `MAC_KEY_NAME`, which still derives request MACs, tree-head
 * MACs and database passwords).
 */
export const FINGERPRINT_KEY_V2_NAME = 'fingerprint-hmac-v2';

const contextFor = (name: string) => ({ 'paylog:keyring': name });

/**
 * Returns the plaintext of keyring key `name`, creating it (KMS GenerateDataKey) on first use.
 * Safe with several instances starting at once: the first insert wins, everyone decrypts it.
 *
 * The runtime role may INSERT keyring rows, so a row's `kms_key_id` is not trusted: the row is
 * decrypted with KMS Decrypt's KeyId set to `kmsKeyId` (the configured key), so a row planted
 * before the service created it (a seed the planter chose, wrapped under a KMS key the planter
 * controls) is refused by KMS (IncorrectKeyException) instead of becoming a service key. The
 * error names the row, never its content.
 */
export async function loadOrCreateServiceKey(
  database: AppDatabase,
  kms: KmsBackend,
  kmsKeyId: string,
  name: string,
): Promise<Buffer> {
  const read = async () =>
    (await database.db.select().from(keyring).where(eq(keyring.name, name)).limit(1))[0];
  let row = await read();
  if (!row) {
    const fresh = await kms.generateDataKey(kmsKeyId, contextFor(name));
    fresh.plaintext.fill(0);
    await database.db
      .insert(keyring)
      .values({ name, kmsKeyId: fresh.keyId, wrappedKey: fresh.wrappedKey })
      .onConflictDoNothing();
    row = await read();
  }
  if (!row) throw new Error(`keyring entry ${name} could not be created`);
  try {
    return await kms.decryptDataKey(row.wrappedKey, contextFor(name), kmsKeyId);
  } catch (e) {
    if (isPaylogError(e) && e.details?.kmsError === 'IncorrectKeyException') {
      throw new PaylogError('INTEGRITY_FAILURE', `keyring entry ${name} is not wrapped under the configured KMS key: refusing to use it`, undefined, { cause: e });
    }
    throw e;
  }
}

/**
 * The service login role's database password, derived from the keyring key so that every
 * instance sharing the database computes the same value and no extra secret is stored.
 */
export function serviceDatabasePassword(macKey: Buffer): string {
  return createHmac('sha256', macKey).update('paylog/db-service-login-password/v1').digest('base64url');
}

/** The key-destruction login role's password (paylog_keys member), derived like the service one. */
export function keysDatabasePassword(macKey: Buffer): string {
  return createHmac('sha256', macKey).update('paylog/db-keys-login-password/v1').digest('base64url');
}

/** The processor-registration login role's password (paylog_admin member), derived like the service one. */
export function adminDatabasePassword(macKey: Buffer): string {
  return createHmac('sha256', macKey).update('paylog/db-admin-login-password/v1').digest('base64url');
}
