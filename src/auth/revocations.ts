/**
 * Revoked principal certificates. Checked on every request against the database, so a
 * revocation takes effect at once, on every instance, across restarts.
 */
import { eq, or } from 'drizzle-orm';
import type { AppDatabase } from '../db/connection.js';
import { revokedCertificates } from '../db/schema.js';

export class RevocationList {
  constructor(private readonly database: AppDatabase) {}

  async isRevoked(certificateFingerprint: string, serialHex?: string): Promise<boolean> {
    const cond = serialHex
      ? or(eq(revokedCertificates.fingerprint, certificateFingerprint), eq(revokedCertificates.serial, serialHex))
      : eq(revokedCertificates.fingerprint, certificateFingerprint);
    const rows = await this.database.db.select({ f: revokedCertificates.fingerprint }).from(revokedCertificates).where(cond).limit(1);
    return rows.length > 0;
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
