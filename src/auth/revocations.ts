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

/**
 * SQL condition: a `revoked_certificates` row names the certificate whose fingerprint and serial
 * are the parameters `fingerprint` and `serial` (e.g. '$1', '$2'). The one definition of
 * "revoked" for queries (also read beside a forward's first reads: src/services/forward/first-reads.ts).
 */
export function revokedCertificateSql(fingerprint: string, serial: string): string {
  return `EXISTS (SELECT 1 FROM revoked_certificates WHERE fingerprint = ${fingerprint} OR (serial IS NOT NULL AND serial = ${serial}))`;
}

export class RevocationList implements RevocationCheck {
  constructor(private readonly database: AppDatabase) {}

  /** One indexed lookup per request (prepared statement), so a revocation applies at once. */
  async isRevoked(certificateFingerprint: string, serialHex?: string): Promise<boolean> {
    const r = await this.database.pool.query({
      name: 'paylog_is_revoked',
      text: `SELECT ${revokedCertificateSql('$1::text', '$2::text')} AS revoked`,
      values: [certificateFingerprint, serialHex ?? null],
    });
    return (r.rows[0] as { revoked: boolean } | undefined)?.revoked === true;
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
