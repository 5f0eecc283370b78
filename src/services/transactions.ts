/**
 * Transactions: submit (validate → policy → envelope → appender) and read masked metadata.
 * Knows nothing about HTTP; routes call these functions with the authenticated principal.
 */
import { createHash } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type { AppDatabase } from '../db/connection.js';
import { transactions, merkleNodes } from '../db/schema.js';
import { and } from 'drizzle-orm';
import { PaylogError, isPaylogError } from '../errors.js';
import { authorize, authorizeOnTransaction } from '../auth/policy.js';
import type { Principal } from '../auth/principal.js';
import type { ProcessorRegistry } from '../auth/processors.js';
import { validateTransactionRequest, type TransactionRequest } from '../validation/transaction.js';
import { canonicalJson } from '../crypto/canonical-json.js';
import { maskedView } from '../crypto/masking.js';
import { fingerprint, requestMac } from '../crypto/fingerprint.js';
import { ciphertextDigest, sealEnvelope, type DataKeySource } from '../crypto/envelope.js';
import { ciphertextDigestV2, sealEnvelopeV2 } from '../crypto/envelope-v2.js';
import type { EpochKeyring } from '../kms/epoch-keys.js';
import { encodeLeaf, leafTime, LEAF_FORMAT_VERSION, transactionLeafV2, type MaskedPaymentMethodV2, type TransactionLeafInput } from '../log/leaf.js';
import type { LogAppender } from '../log/appender.js';
import type { ClientSideDecryption, CseMarker } from '../cse/jwe.js';

export interface TransactionReceipt {
  transactionId: string;
  logIndex: number;
  leafHash: string;
  paymentMethod: Record<string, unknown>;
  createdAt: string;
}

export interface TransactionView extends TransactionReceipt {
  processor: string;
  amount: { value: number; currency: string };
  fingerprint: string;
  metadata: Record<string, string> | null;
  /** True once the record's key material was crypto-shredded (retention or an admin shred). */
  shredded: boolean;
}

export interface TransactionDeps {
  database: AppDatabase;
  appender: LogAppender;
  dataKeys: DataKeySource;
  /** HMAC key for fingerprints and request MACs (held in memory, wrapped under KMS at rest). */
  macKey: Buffer;
  processors: ProcessorRegistry;
  /** Hierarchical key mode (envelope v2): the epoch keyring; absent → per-transaction (v1). */
  epochs?: EpochKeyring;
  /** Injectable clock (epoch rollover tests); default the system clock. */
  clock?: () => Date;
  /** Client-side encryption (JWE payment methods); absent → such bodies fail validation. */
  cse?: ClientSideDecryption;
}

const sha256b64 = (b: Uint8Array) => createHash('sha256').update(b).digest('base64');

export class TransactionService {
  constructor(private readonly deps: TransactionDeps) {}

  /**
   * Submits one transaction. Resolves only after its log entry is committed:
   * `created` (first time), `replayed` (identical body), or throws IDEMPOTENCY_CONFLICT.
   */
  async submit(principal: Principal, raw: unknown, now = this.deps.clock?.() ?? new Date()): Promise<{ created: boolean; receipt: TransactionReceipt }> {
    authorize(principal, 'transaction:create');
    // A client-side encrypted payment method is decrypted first; from here on the body is
    // validated, MACed (idempotency over the decrypted content) and sealed like a plaintext one.
    let cse: CseMarker | null = null;
    if (this.deps.cse) ({ body: raw, cse } = await this.deps.cse.open(raw, now));
    let req: TransactionRequest;
    try {
      req = validateTransactionRequest(raw, now);
    } catch (e) {
      // An identical replay of a submission accepted earlier stays a replay after the card has
      // expired: validate it as of the original submission.
      const prior = isPaylogError(e) && e.code === 'CARD_EXPIRED' ? await this.findRow(rawTransactionId(raw)) : null;
      if (!prior) throw e;
      const original = validateTransactionRequest(raw, prior.createdAt);
      return { created: false, receipt: await this.replayOrConflict(prior, requestMac(this.deps.macKey, canonicalJson(original))) };
    }
    const mac = requestMac(this.deps.macKey, canonicalJson(req));

    // One round trip: is the processor active, and was this id submitted before?
    // In hierarchical mode the same round trip reads the processor's current epoch id, so a
    // rotation or retirement by another process is seen by the very next submission.
    const epochs = this.deps.epochs;
    const pre = await this.deps.database.pool.query(
      epochs
        ? {
            name: 'paylog_submit_precheck_epoch',
            text: `SELECT (SELECT status FROM processors WHERE name = $1) AS processor_status, t.transaction_id,
                     (SELECT e.epoch_id FROM key_epochs e WHERE e.processor = $1 AND e.granularity = $3 AND e.period_start <= $4
                        AND e.period_end > $4 AND e.retired_at IS NULL AND e.shredded_at IS NULL ORDER BY e.generation DESC LIMIT 1) AS epoch_id
                   FROM (SELECT 1) AS one LEFT JOIN transactions t ON t.transaction_id = $2`,
            values: [req.processor, req.transactionId, epochs.granularity, now],
          }
        : {
            name: 'paylog_submit_precheck',
            text: `SELECT (SELECT status FROM processors WHERE name = $1) AS processor_status, t.transaction_id
                   FROM (SELECT 1) AS one LEFT JOIN transactions t ON t.transaction_id = $2`,
            values: [req.processor, req.transactionId],
          },
    );
    const check = pre.rows[0] as { processor_status: string | null; transaction_id: string | null; epoch_id?: string | null };
    // Replays first (no KMS call, no append): an identical replay is 200 even if the processor
    // has been disabled since.
    if (check.transaction_id !== null) {
      const prior = await this.findRow(req.transactionId);
      if (prior) return { created: false, receipt: await this.replayOrConflict(prior, mac) };
    }
    if (check.processor_status !== 'active') {
      throw new PaylogError('UNKNOWN_PROCESSOR', 'the named processor is not registered or not active');
    }

    const binding = { transactionId: req.transactionId, processor: req.processor };
    const plaintext = Buffer.from(canonicalJson(req.paymentMethod), 'utf8');
    let envelope: { version: number; salt: Buffer; iv: Buffer; ciphertext: Buffer; tag: Buffer; keyCommitment: Buffer; wrappedKey: Buffer };
    let digest: Buffer;
    let keyRef: { kmsKeyId: string; epochId?: undefined } | { epochId: string; kmsKeyId?: undefined };
    try {
      if (epochs) {
        // Envelope v2: wrapped locally under the epoch public key; no KMS call.
        const epoch = await epochs.currentEpoch(req.processor, now, check.epoch_id ?? null);
        const v2 = sealEnvelopeV2(epoch.publicKey, { ...binding, epochId: epoch.epochId }, plaintext);
        envelope = v2;
        digest = ciphertextDigestV2(v2);
        keyRef = { epochId: v2.epochId };
      } else {
        const v1 = await sealEnvelope(this.deps.dataKeys, binding, plaintext);
        envelope = v1;
        digest = ciphertextDigest(v1);
        keyRef = { kmsKeyId: v1.kmsKeyId };
      }
    } finally {
      plaintext.fill(0);
    }
    const createdAt = now;
    const metadata = req.metadata ?? null;
    const masked = maskedView(req.paymentMethod);
    const fp = fingerprint(this.deps.macKey, req.paymentMethod);
    const leaf = cse !== null
      ? clientSideEncryptedLeaf(cse, {
          time: createdAt,
          transactionId: req.transactionId,
          processor: req.processor,
          amount: { value: req.amount.value, currency: req.amount.currency },
          paymentMethod: masked as MaskedPaymentMethodV2,
          fingerprint: fp,
          metadata,
          envelope: {
            version: envelope.version,
            key: transactionKeyRef(keyRef),
            salt: envelope.salt,
            iv: envelope.iv,
            ciphertext: envelope.ciphertext,
            tag: envelope.tag,
            keyCommitment: envelope.keyCommitment,
            wrappedKey: envelope.wrappedKey,
          },
        })
      : encodeLeaf({
      v: LEAF_FORMAT_VERSION,
      type: 'transaction',
      time: leafTime(createdAt),
      transactionId: req.transactionId,
      processor: req.processor,
      amount: { value: req.amount.value, currency: req.amount.currency },
      paymentMethodType: req.paymentMethod.type,
      envelope: {
        version: envelope.version,
        ciphertextSha256: digest.toString('base64'),
        keyCommitment: envelope.keyCommitment.toString('base64'),
        wrappedKeySha256: sha256b64(envelope.wrappedKey),
        ...transactionKeyRef(keyRef),
      },
      ...(metadata ? { metadataSha256: sha256b64(Buffer.from(canonicalJson(metadata), 'utf8')) } : {}),
    });
    const outcome = await this.deps.appender.append({
      kind: 'transaction',
      leaf,
      createdAt,
      transaction: {
        transactionId: req.transactionId,
        processor: req.processor,
        requestMac: mac,
        paymentMethodType: req.paymentMethod.type,
        masked,
        fingerprint: fp,
        amountValue: req.amount.value,
        currency: req.amount.currency,
        metadata,
        envelopeVersion: envelope.version,
        iv: envelope.iv,
        ciphertext: envelope.ciphertext,
        tag: envelope.tag,
        keyCommitment: envelope.keyCommitment,
        salt: envelope.salt,
      },
      dataKey: { transactionId: req.transactionId, wrappedKey: envelope.wrappedKey, kmsKeyId: keyRef.kmsKeyId ?? null, epochId: keyRef.epochId ?? null },
    });
    if (outcome.status === 'conflict') throw conflictError();
    if (outcome.status === 'replayed') {
      const row = await this.findRow(req.transactionId);
      if (!row) throw new PaylogError('INTERNAL', 'replayed transaction not found');
      return { created: false, receipt: await this.replayOrConflict(row, mac) };
    }
    return {
      created: true,
      receipt: {
        transactionId: req.transactionId,
        logIndex: outcome.logIndex,
        leafHash: outcome.leafHash.toString('base64'),
        paymentMethod: masked as unknown as Record<string, unknown>,
        createdAt: createdAt.toISOString(),
      },
    };
  }

  /** Masked metadata + log position; never plaintext. Unknown and not-yours look the same. */
  async get(principal: Principal, transactionId: string): Promise<TransactionView> {
    const row = await this.findRow(transactionId);
    const active = await this.deps.processors.inGoodStanding(principal);
    authorizeOnTransaction(principal, 'transaction:read', row && active ? { assignedProcessor: row.processor } : {});
    if (!row) throw new PaylogError('NOT_FOUND', 'no such transaction');
    return {
      transactionId: row.transactionId,
      processor: row.processor,
      amount: { value: row.amountValue, currency: row.currency },
      paymentMethod: row.masked as Record<string, unknown>,
      fingerprint: row.fingerprint,
      metadata: (row.metadata as Record<string, string> | null) ?? null,
      logIndex: row.logIndex,
      leafHash: (await this.leafHash(row.logIndex)).toString('base64'),
      createdAt: row.createdAt.toISOString(),
      shredded: await this.isShredded(row.transactionId),
    };
  }

  /** Whether the record's data key, or its epoch's private key, has been destroyed. */
  async isShredded(transactionId: string): Promise<boolean> {
    const r = await this.deps.database.pool.query({
      name: 'paylog_is_shredded',
      text: `SELECT (dk.wrapped_key IS NULL OR dk.shredded_at IS NOT NULL OR e.shredded_at IS NOT NULL) AS shredded
             FROM data_keys dk LEFT JOIN key_epochs e ON e.epoch_id = dk.epoch_id WHERE dk.transaction_id = $1`,
      values: [transactionId],
    });
    return (r.rows[0] as { shredded: boolean } | undefined)?.shredded ?? true;
  }

  /** The stored row for a transaction id, or null. */
  async findRow(transactionId: string) {
    if (typeof transactionId !== 'string' || transactionId.length === 0 || transactionId.length > 128) return null;
    const rows = await this.deps.database.db
      .select()
      .from(transactions)
      .where(eq(transactions.transactionId, transactionId))
      .limit(1);
    return rows[0] ?? null;
  }

  private async leafHash(logIndex: number): Promise<Buffer> {
    const rows = await this.deps.database.db
      .select({ hash: merkleNodes.hash })
      .from(merkleNodes)
      .where(and(eq(merkleNodes.level, 0), eq(merkleNodes.idx, logIndex)));
    const h = rows[0]?.hash;
    if (!h) throw new PaylogError('INTERNAL', 'leaf hash missing for a stored transaction');
    return h;
  }

  private async replayOrConflict(
    row: NonNullable<Awaited<ReturnType<TransactionService['findRow']>>>,
    mac: Buffer,
  ): Promise<TransactionReceipt> {
    if (!row.requestMac.equals(mac)) throw conflictError();
    return {
      transactionId: row.transactionId,
      logIndex: row.logIndex,
      leafHash: (await this.leafHash(row.logIndex)).toString('base64'),
      paymentMethod: row.masked as Record<string, unknown>,
      createdAt: row.createdAt.toISOString(),
    };
  }
}

/**
 * The transaction leaf's key reference: a KMS key id (envelope v1) or a key epoch id (envelope
 * v2). The one place to change when leaf format v2 defines the reference.
 */
export function transactionKeyRef(ref: { kmsKeyId?: string | undefined; epochId?: string | undefined }): { kmsKeyId: string } | { epochId: string } {
  return ref.epochId !== undefined ? { epochId: ref.epochId } : { kmsKeyId: ref.kmsKeyId! };
}

/**
 * The one place the client-side encryption marker meets the leaf: leaf format v1 has no field
 * for it, so a client-side encrypted submission is logged as a leaf format v2 transaction leaf
 * with `cse: { kid }` (src/log/leaf/transaction.ts). Plaintext submissions keep their leaf.
 */
function clientSideEncryptedLeaf(cse: CseMarker, input: Omit<TransactionLeafInput, 'cse'>): Buffer {
  return encodeLeaf(transactionLeafV2({ ...input, cse: { kid: cse.kid } }));
}

function rawTransactionId(raw: unknown): string {
  const id = (raw as { transactionId?: unknown } | null)?.transactionId;
  return typeof id === 'string' ? id : '';
}

function conflictError(): PaylogError {
  return new PaylogError(
    'IDEMPOTENCY_CONFLICT',
    'a transaction with this transactionId was already submitted with a different body',
  );
}

export type { TransactionRequest };
