/**
 * Release of plaintext payment data to the processor assigned to the transaction
 * (PCI DSS 7.2.2 need-to-know; 10.2.1.1 every access to cardholder data logged).
 *
 * Contract: every release and every refused release attempt appends an access entry to the
 * Merkle log, and `release()` returns plaintext only after that entry's batch has committed.
 * If the entry cannot be made durable, nothing is released (LOG_UNAVAILABLE → 503).
 * Rate-limited attempts are refused before any work and are not logged (a flood must not be
 * able to grow the log); they are counted in metrics.
 */
import { and, asc, eq, gt } from 'drizzle-orm';
import { z } from 'zod';
import type { AppDatabase } from '../db/connection.js';
import { accessEntries, dataKeys } from '../db/schema.js';
import { PaylogError, isPaylogError } from '../errors.js';
import { authorizeOnTransaction } from '../auth/policy.js';
import type { Principal } from '../auth/principal.js';
import type { ProcessorRegistry } from '../auth/processors.js';
import type { RateLimiter } from '../auth/rate-limit.js';
import { openEnvelope, type DataKeySource } from '../crypto/envelope.js';
import { openEnvelopeV2 } from '../crypto/envelope-v2.js';
import type { EpochKeyring } from '../kms/epoch-keys.js';
import { encodeLeaf, leafTime, LEAF_FORMAT_VERSION } from '../log/leaf.js';
import type { LogAppender } from '../log/appender.js';
import type { TransactionService } from './transactions.js';
import { containsIban, containsPanLikeNumber } from '../validation/transaction.js';
import { unknownTransactionRef } from '../crypto/fingerprint.js';
import type { Metrics } from '../metrics.js';

export const RELEASE_PURPOSES = ['authorize', 'capture', 'refund', 'chargeback', 'settlement'] as const;
export const REFERENCE_MAX = 128;
/** Largest page of access entries one request returns. */
export const MAX_ACCESSES_PAGE = 1000;
/** Transaction ids that can exist (same rule as submission); anything else is 404, unlogged. */
const TRANSACTION_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

export const releaseRequestSchema = z.strictObject({
  purpose: z.enum(RELEASE_PURPOSES),
  reference: z
    .string()
    .min(1)
    .max(REFERENCE_MAX)
    .regex(/^[\p{L}\p{N} ._:#/-]*$/u)
    .optional(),
});
export type ReleaseRequest = z.infer<typeof releaseRequestSchema>;

export interface ReleaseResult {
  transactionId: string;
  processor: string;
  amount: { value: number; currency: string };
  paymentMethod: Record<string, unknown>;
  accessLogIndex: number;
}

export interface AccessView {
  logIndex: number;
  transactionId: string;
  action: string;
  principal: { role: string; name: string; certificateFingerprint: string };
  purpose: string | null;
  reference: string | null;
  outcome: string;
  reason: string | null;
  sourceAddress: string;
  time: string;
}

export interface ReleaseDeps {
  database: AppDatabase;
  appender: LogAppender;
  dataKeys: DataKeySource;
  transactions: TransactionService;
  processors: ProcessorRegistry;
  limiter: RateLimiter;
  /** Keyed digests of unknown transaction ids (never logged in the clear). */
  macKey: Buffer;
  metrics?: Metrics;
  /** Opens envelope v2 records (epoch private keys, cached); needed whenever v2 records exist. */
  epochs?: EpochKeyring;
}

/**
 * The release route hands over the raw body text (so that even an unparseable body is a logged,
 * refused attempt rather than a parser error before the service runs).
 */
function parseReleaseRequest(raw: unknown): ReleaseRequest {
  if (typeof raw === 'string' || Buffer.isBuffer(raw)) {
    try {
      raw = JSON.parse(String(raw));
    } catch {
      throw new PaylogError('VALIDATION_FAILED', 'release body must be JSON: { "purpose": ..., "reference"?: ... }');
    }
  }
  const r = releaseRequestSchema.safeParse(raw);
  if (!r.success) {
    throw new PaylogError('VALIDATION_FAILED', 'release body must be { "purpose": one of ' + RELEASE_PURPOSES.join('|') + ', "reference"?: short text }', {
      issues: r.error.issues.slice(0, 5).map((i) => ({ path: i.path.map(String).filter((p) => p === 'purpose' || p === 'reference').join('.') || '*', code: i.code })),
    });
  }
  if (r.data.reference && (containsPanLikeNumber(r.data.reference) || containsIban(r.data.reference))) {
    throw new PaylogError('VALIDATION_FAILED', 'reference must not contain a card number or IBAN', { issues: [{ path: 'reference', code: 'account_number_like' }] });
  }
  return r.data;
}

export class ReleaseService {
  constructor(private readonly deps: ReleaseDeps) {}

  private standing(p: Principal): Promise<boolean> {
    return this.deps.processors.inGoodStanding(p);
  }

  /**
   * Releases the plaintext payment method of `transactionId` to `principal`. The access entry
   * (granted or denied) is committed before this resolves or rejects with the refusal.
   */
  async release(principal: Principal, transactionId: string, raw: unknown, sourceAddress: string): Promise<ReleaseResult> {
    this.deps.limiter.take(principal.certificateFingerprint);
    if (!TRANSACTION_ID_RE.test(transactionId)) throw new PaylogError('NOT_FOUND', 'no such transaction');
    const row = await this.deps.transactions.findRow(transactionId);
    const active = await this.standing(principal);
    const resource = row && active ? { assignedProcessor: row.processor } : {};

    let body: ReleaseRequest | undefined;
    let refusal: PaylogError | undefined;
    try {
      authorizeOnTransaction(principal, 'transaction:release', resource);
      if (!row) throw new PaylogError('NOT_FOUND', 'no such transaction');
      body = parseReleaseRequest(raw);
    } catch (e) {
      refusal = isPaylogError(e) ? e : new PaylogError('INTERNAL', 'release refused');
    }

    // Decrypt in memory first; nothing leaves until the access entry is durable.
    let plaintext: Buffer | undefined;
    if (!refusal && row && body) {
      try {
        const key = (await this.deps.database.db.select().from(dataKeys).where(eq(dataKeys.transactionId, transactionId)).limit(1))[0];
        if (!key) throw new PaylogError('INTEGRITY_FAILURE', 'the data key of this record is no longer available');
        if (key.wrappedKey === null || key.shreddedAt !== null) throw new PaylogError('DATA_SHREDDED', 'the card data of this transaction has been shredded');
        const stored = { salt: row.salt ?? Buffer.alloc(0), iv: row.iv, ciphertext: row.ciphertext, tag: row.tag, keyCommitment: row.keyCommitment };
        if (row.envelopeVersion === 2 && key.epochId !== null) {
          const epochs = this.deps.epochs;
          if (!epochs) throw new PaylogError('INTERNAL', 'envelope v2 record but no epoch keyring');
          const binding = { transactionId, processor: row.processor, epochId: key.epochId };
          const wrappedKey = key.wrappedKey;
          plaintext = await epochs.withPrivateKey(key.epochId, (sk) => openEnvelopeV2(sk, binding, { version: 2, ...stored, wrappedKey, epochId: binding.epochId }));
        } else {
          if (key.kmsKeyId === null) throw new PaylogError('INTEGRITY_FAILURE', 'the data key of this record has no key reference');
          plaintext = await openEnvelope(
            this.deps.dataKeys,
            { transactionId, processor: row.processor },
            { version: 1, ...stored, wrappedKey: key.wrappedKey, kmsKeyId: key.kmsKeyId },
          );
        }
      } catch (e) {
        if (isPaylogError(e) && (e.code === 'KMS_UNAVAILABLE' || e.code === 'DATA_SHREDDED')) refusal = e;
        else refusal = new PaylogError('INTEGRITY_FAILURE', 'the stored record failed its integrity checks; nothing was released');
      }
    }

    // The log names an existing transaction by its id (validated at submission); an id that
    // does not exist is recorded only as a keyed digest.
    const loggedId = row ? transactionId : unknownTransactionRef(this.deps.macKey, transactionId);
    try {
      const now = new Date();
      const outcome = refusal ? 'denied' : 'granted';
      const leaf = encodeLeaf({
        v: LEAF_FORMAT_VERSION,
        type: 'access',
        time: leafTime(now),
        transactionId: loggedId,
        action: 'release',
        principal: { role: principal.role, name: principal.name, certificateFingerprint: principal.certificateFingerprint },
        ...(body?.purpose ? { purpose: body.purpose } : {}),
        ...(body?.reference ? { reference: body.reference } : {}),
        outcome,
        ...(refusal ? { reason: refusal.code } : {}),
        sourceAddress,
      });
      const appended = await this.deps.appender.append({
        kind: 'access',
        leaf,
        createdAt: now,
        access: {
          transactionId: loggedId,
          principalRole: principal.role,
          principalName: principal.name,
          certificateFingerprint: principal.certificateFingerprint,
          action: 'release',
          purpose: body?.purpose ?? null,
          reference: body?.reference ?? null,
          outcome: refusal ? `denied:${refusal.code}` : 'granted',
          sourceAddress,
        },
      });
      this.deps.metrics?.releases.inc({ outcome });
      if (refusal || !plaintext || !row || appended.status !== 'appended') {
        throw refusal ?? new PaylogError('INTERNAL', 'release failed');
      }
      return {
        transactionId,
        processor: row.processor,
        amount: { value: row.amountValue, currency: row.currency },
        paymentMethod: JSON.parse(plaintext.toString('utf8')) as Record<string, unknown>,
        accessLogIndex: appended.logIndex,
      };
    } catch (e) {
      if (isPaylogError(e) && e.code === 'LOG_UNAVAILABLE') {
        this.deps.metrics?.releases.inc({ outcome: 'log_unavailable' });
        throw new PaylogError('LOG_UNAVAILABLE', 'the access could not be logged durably; nothing was released', undefined, { cause: e });
      }
      throw e;
    } finally {
      plaintext?.fill(0);
    }
  }

  /**
   * Access entries of one transaction (auditors; the assigned processor for its own), in log
   * order, at most `limit` (≤ MAX_ACCESSES_PAGE) after log index `after`.
   */
  async accesses(principal: Principal, transactionId: string, page: { after?: number; limit?: number } = {}): Promise<{ accesses: AccessView[]; next?: number }> {
    const row = TRANSACTION_ID_RE.test(transactionId) ? await this.deps.transactions.findRow(transactionId) : null;
    const active = await this.standing(principal);
    authorizeOnTransaction(principal, 'transaction:accesses', row && active ? { assignedProcessor: row.processor } : {});
    if (!row) throw new PaylogError('NOT_FOUND', 'no such transaction');
    const limit = Math.min(page.limit ?? MAX_ACCESSES_PAGE, MAX_ACCESSES_PAGE);
    const rows = await this.deps.database.db
      .select()
      .from(accessEntries)
      .where(and(eq(accessEntries.transactionId, transactionId), gt(accessEntries.logIndex, page.after ?? -1)))
      .orderBy(asc(accessEntries.logIndex))
      .limit(limit + 1);
    const more = rows.length > limit;
    const accesses = rows.slice(0, limit).map((r) => {
      const [outcome, reason] = r.outcome.split(':', 2);
      return {
        logIndex: r.logIndex,
        transactionId: r.transactionId,
        action: r.action,
        principal: { role: r.principalRole, name: r.principalName, certificateFingerprint: r.certificateFingerprint },
        purpose: r.purpose,
        reference: r.reference,
        outcome: outcome ?? r.outcome,
        reason: reason ?? null,
        sourceAddress: r.sourceAddress,
        time: r.createdAt.toISOString(),
      };
    });
    const last = accesses[accesses.length - 1];
    return { accesses, ...(more && last ? { next: last.logIndex } : {}) };
  }
}
