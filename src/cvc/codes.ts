/**
 * The card security code, held only until authorization (issue 18 item 4; PCI DSS v4.0.1
 * 3.3.1 / 3.3.2; SECURITY.md "The card security code").
 *
 * A CVC accepted with a card submission is handed here AFTER the transaction's leaf committed,
 * and only when the submission created it (a replay never stores a CVC again). It never reaches
 * the log, the sealed record or the idempotency MAC (the submission strips it first).
 *
 * Contracts:
 * - {@link CardSecurityCodes.hold}: the CVC is padded to a fixed length and HPKE-sealed (X25519,
 *   AES-256-GCM; info = SEAL_INFO, aad = transaction id + holder key id) to every live holder key
 *   (src/cvc/holder-keys.ts, private halves only in process memory), then stored with its expiry
 *   (`now + PAYLOG_CVC_TTL`) in `card_security_codes`, outside the append-only log. At most once
 *   per transaction id (ON CONFLICT DO NOTHING).
 * - {@link CardSecurityCodes.take}: ONE statement deletes the row and returns it (DELETE …
 *   RETURNING), so across workers and instances exactly one caller gets it; the destruction is
 *   counted in `cvc_destructions` in the same statement. An expired row is destroyed, never
 *   returned. A row this process holds no key for is left to the processes that do (or the TTL).
 *   The plaintext is returned to the caller, who MUST NOT store or log it.
 * - {@link CardSecurityCodes.sweep}: deletes every expired row (counted as `expired`).
 * Nothing here logs a CVC, a sealed CVC, or a transaction id together with a CVC.
 */
import type { AppDatabase } from '../db/connection.js';
import { AEAD_AES_256_GCM, HPKE_ENC_BYTES, HpkeError, sealBase } from '../crypto/hpke.js';
import { openBase } from '../crypto/hpke-receiver.js';
import type { CvcHolderKeys } from './holder-keys.js';
import { CVC_PATTERN } from '../validation/card-security-code.js';
import { CVC_DESTROYED_PERIOD_MS } from '../log/leaf.js';

/** HPKE info of a sealed CVC. */
const SEAL_INFO = Buffer.from('paylog cvc v1', 'utf8');
/** A CVC is padded to this many bytes before sealing (length byte + digits + zeros): 3 and 4 digits seal alike. */
const PADDED_BYTES = 8;

/** Destructions are counted, and logged, per clock hour (UTC): the period a `cvc_destroyed` leaf counts. */
function destructionPeriodStart(t: Date): Date {
  return new Date(Math.floor(t.getTime() / CVC_DESTROYED_PERIOD_MS) * CVC_DESTROYED_PERIOD_MS);
}

function aadOf(transactionId: string, keyId: string): Buffer {
  return Buffer.from(`${transactionId}\u0000${keyId}`, 'utf8');
}

function pad(cvc: string): Buffer {
  const b = Buffer.alloc(PADDED_BYTES);
  b[0] = cvc.length;
  b.write(cvc, 1, 'latin1');
  return b;
}

function unpad(b: Buffer): string | undefined {
  const n = b[0] ?? 0;
  const s = b.subarray(1, 1 + n).toString('latin1');
  b.fill(0);
  return CVC_PATTERN.test(s) ? s : undefined;
}

export class CardSecurityCodes {
  constructor(
    private readonly d: { database: AppDatabase; holders: CvcHolderKeys; ttlMs: number; clock: () => Date },
  ) {}

  /** Seals `cvc` to every live holder key and stores it until `now + ttl` (module doc). */
  async hold(transactionId: string, cvc: string): Promise<void> {
    if (!CVC_PATTERN.test(cvc)) throw new TypeError('not a card security code');
    const now = this.d.clock();
    const sealed: Record<string, string> = {};
    const plain = pad(cvc);
    try {
      for (const h of await this.d.holders.sealingKeys()) {
        const { enc, ciphertext } = sealBase(AEAD_AES_256_GCM, h.publicKey, SEAL_INFO, aadOf(transactionId, h.keyId), plain);
        sealed[h.keyId] = Buffer.concat([enc, ciphertext]).toString('base64');
      }
    } finally {
      plain.fill(0);
    }
    await this.d.database.pool.query({
      name: 'paylog_cvc_hold',
      text: 'INSERT INTO card_security_codes (transaction_id, sealed, expires_at) VALUES ($1, $2, $3) ON CONFLICT (transaction_id) DO NOTHING',
      values: [transactionId, JSON.stringify(sealed), new Date(now.getTime() + this.d.ttlMs)],
    });
  }

  /**
   * Takes the held CVC of `transactionId` (the seam of the forward service and of a release with
   * purpose `authorize`): atomically deleted, counted, opened in memory. Undefined when none is
   * held, it expired, or this process holds none of the keys it was sealed to.
   */
  async take(transactionId: string): Promise<string | undefined> {
    const keys = this.d.holders.privateKeys();
    if (keys.size === 0) return undefined;
    const now = this.d.clock();
    const r = await this.d.database.pool.query({
      name: 'paylog_cvc_take',
      text: `WITH gone AS (
               DELETE FROM card_security_codes WHERE transaction_id = $1 AND sealed ?| $2::text[] RETURNING sealed, expires_at > $3 AS live
             ), tally AS (
               INSERT INTO cvc_destructions (period_start, cause, count) SELECT $4::timestamptz, CASE WHEN live THEN 'used' ELSE 'expired' END, 1 FROM gone
               ON CONFLICT (period_start, cause) DO UPDATE SET count = cvc_destructions.count + EXCLUDED.count
             )
             SELECT sealed, live FROM gone`,
      values: [transactionId, [...keys.keys()], now, destructionPeriodStart(now)],
    });
    const row = r.rows[0] as { sealed: Record<string, string>; live: boolean } | undefined;
    if (!row?.live) return undefined;
    for (const [keyId, key] of keys) {
      const blob = row.sealed[keyId];
      if (blob === undefined) continue;
      const b = Buffer.from(blob, 'base64');
      try {
        return unpad(openBase(AEAD_AES_256_GCM, b.subarray(0, HPKE_ENC_BYTES), key, SEAL_INFO, aadOf(transactionId, keyId), b.subarray(HPKE_ENC_BYTES)));
      } catch (e) {
        if (!(e instanceof HpkeError)) throw e;
      }
    }
    return undefined;
  }

  /** Destroys every held CVC whose TTL has passed; returns how many. */
  async sweep(): Promise<number> {
    const now = this.d.clock();
    const r = await this.d.database.pool.query({
      name: 'paylog_cvc_sweep',
      text: `WITH gone AS (DELETE FROM card_security_codes WHERE expires_at <= $1 RETURNING 1),
             n AS (SELECT count(*) AS c FROM gone),
             tally AS (INSERT INTO cvc_destructions (period_start, cause, count) SELECT $2::timestamptz, 'expired', c FROM n WHERE c > 0
               ON CONFLICT (period_start, cause) DO UPDATE SET count = cvc_destructions.count + EXCLUDED.count)
             SELECT c FROM n`,
      values: [now, destructionPeriodStart(now)],
    });
    return Number((r.rows[0] as { c: string | number }).c);
  }
}
