/**
 * Revoked principal certificates. Checked on every request against the database, so a
 * revocation takes effect at once, on every instance, across restarts: by a query before the
 * route runs, or — for a submission (RouteSpec.revocation 'at-commit') — by the append batch
 * that commits its entry (src/services/append-preconditions.ts) and by a query for any other answer.
 */
import type { AppDatabase } from '../db/connection.js';
import { revokedCertificates } from '../db/schema.js';
import { PaylogError } from '../errors.js';
import type { Principal } from './principal.js';

/** What authentication needs of the revocation list. */
export interface RevocationCheck {
  isRevoked(certificateFingerprint: string, serialHex?: string): Promise<boolean>;
}

export function certificateRevokedError(): PaylogError {
  return new PaylogError('CERTIFICATE_REVOKED', 'this client certificate has been revoked');
}

/** Throws CERTIFICATE_REVOKED when the principal's certificate is revoked (one query). */
export async function assertNotRevoked(check: RevocationCheck, principal: Principal): Promise<void> {
  if (await check.isRevoked(principal.certificateFingerprint, principal.serialHex)) throw certificateRevokedError();
}

export class RevocationList implements RevocationCheck {
  constructor(private readonly database: AppDatabase) {}

  /** One indexed lookup per request (prepared statement), so a revocation applies at once. */
  async isRevoked(certificateFingerprint: string, serialHex?: string): Promise<boolean> {
    const r = await this.database.pool.query({
      name: 'paylog_is_revoked',
      text: 'SELECT 1 FROM revoked_certificates WHERE fingerprint = $1 OR (serial IS NOT NULL AND serial = $2) LIMIT 1',
      values: [certificateFingerprint, serialHex ?? null],
    });
    return (r.rowCount ?? 0) > 0;
  }

  /** Records a revocation (by fingerprint and/or serial). Idempotent. */
  async revoke(entry: { fingerprint?: string; serial?: string; reason?: string; revokedBy: string }): Promise<void> {
    const fingerprint = entry.fingerprint ?? `serial:${entry.serial}`;
    await this.database.db
      .insert(revokedCertificates)
      .values({ fingerprint, serial: entry.serial ?? null, reason: entry.reason ?? null, revokedBy: entry.revokedBy })
      .onConflictDoNothing();
  }
}
