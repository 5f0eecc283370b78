/**
 * Transactions: submit (validate → policy → envelope → appender) and read masked metadata.
 * Knows nothing about HTTP; routes call these functions with the authenticated principal.
 *
 * Leaf format v2: the record IS the log entry. Submission writes a v2 transaction leaf carrying
 * the served view and the sealed ciphertext; the `transactions` row is a lookup (id → index,
 * idempotency MAC). Reads decode the leaf; records written before v2 are served from their
 * columns after checking them against what their v1 leaf commits to.
 */
import { createHash } from 'node:crypto';
import type { AppDatabase } from '../db/connection.js';
import { PaylogError, isPaylogError } from '../errors.js';
import { authorize, authorizeOnTransaction } from '../auth/policy.js';
import type { Principal } from '../auth/principal.js';
import { assertNotRevoked, certificateRevokedError, type RevocationCheck } from '../auth/revocations.js';
import type { ProcessorRegistry } from '../auth/processors.js';
import { validateTransactionRequest, type TransactionRequest } from '../validation/transaction.js';
import { isTransactionId } from '../validation/identifiers.js';
import { canonicalJson } from '../crypto/canonical-json.js';
import { maskedView } from '../crypto/masking.js';
import { fingerprint, macEqual, requestMac } from '../crypto/fingerprint.js';
import { sealEnvelope, type DataKeySource } from '../crypto/envelope.js';
import { sealEnvelopeV2 } from '../crypto/envelope-v2.js';
import type { EpochKeyring } from '../kms/epoch-keys.js';
import {
  decodeLeaf,
  encodeLeaf,
  envelopeFromLeaf,
  transactionLeaf,
  transactionViewFromLeaf,
  type KeyReference,
  type LeafEnvelope,
  type TransactionServedView,
} from '../log/leaf.js';
import { hashLeaf } from '../log/merkle.js';
import type { Appender } from '../log/appender.js';
import type { ClientSideDecryption, CseMarker } from '../cse/jwe.js';

export interface TransactionReceipt {
  transactionId: string;
  logIndex: number;
  leafHash: string;
  paymentMethod: Record<string, unknown>;
  createdAt: string;
}

/** What a caller needs to check a served view alone: the leaf, its inclusion proof, the checkpoint. */
export interface ServedProof {
  /** RFC 9162 §2.1.3 audit path of `logIndex` in the tree of `treeSize` (base64, leaf to root). */
  treeSize: number;
  hashes: string[];
  /** The signed checkpoint (C2SP signed note) for `treeSize`. */
  checkpoint: string;
}

export interface TransactionView extends TransactionReceipt {
  processor: string;
  amount: { value: number; currency: string };
  /** Records in leaf format v1/v2 only; v3 leaves carry none. */
  fingerprint?: string;
  metadata: Record<string, string> | null;
  /** True once the record's key material was crypto-shredded (retention or an admin shred). */
  shredded: boolean;
  clientSideEncryption?: { kid: string };
  /** Leaf format of the record's log entry. */
  leafFormat: number;
  /** base64 of the exact leaf bytes; for format 2 every value above is decoded from it. */
  leaf: string;
  /** Absent until a signed checkpoint covers the entry (published within a second). */
  proof?: ServedProof;
}

export interface TransactionDeps {
  database: AppDatabase;
  appender: Appender;
  dataKeys: DataKeySource;
  /** HMAC key for fingerprints and request MACs (held in memory, wrapped under KMS at rest). */
  macKey: Buffer;
  processors: ProcessorRegistry;
  /** The revocation list, for submissions whose revocation is decided here (`at-commit`). */
  revocations: RevocationCheck;
  /** Hierarchical key mode (envelope v2): the epoch keyring; absent → per-transaction (v1). */
  epochs?: EpochKeyring;
  /** Injectable clock (epoch rollover tests); default the system clock. */
  clock?: () => Date;
  /** Client-side encryption (JWE payment methods); absent → such bodies fail validation. */
  cse?: ClientSideDecryption;
  /** Inclusion proof + checkpoint for a log index, when a verified checkpoint covers it. */
  proofs?: (logIndex: number) => Promise<ServedProof | null>;
}

/** A stored transaction as the service serves and opens it. */
export interface TransactionRecord {
  transactionId: string;
  logIndex: number;
  requestMac: Buffer;
  leaf: Buffer;
  leafFormat: number;
  view: TransactionServedView;
  createdAt: Date;
  envelope: Omit<LeafEnvelope, 'wrappedKeySha256'>;
}

const sha256b64 = (b: Uint8Array) => createHash('sha256').update(b).digest('base64');

const SELECT_RECORD = `SELECT t.transaction_id, t.log_index, t.request_mac, t.processor, t.payment_method_type, t.masked,
    t.fingerprint, t.amount_value, t.currency, t.metadata, t.envelope_version, t.iv, t.ciphertext, t.tag,
    t.key_commitment, t.salt, t.created_at, e.leaf
  FROM transactions t LEFT JOIN log_entries e ON e.idx = t.log_index WHERE t.transaction_id = $1`;

/** A `transactions` row (with its leaf) as read by {@link SELECT_RECORD}. */
export interface TransactionRow {
  transaction_id: string;
  log_index: string | number;
  request_mac: Buffer;
  processor: string | null;
  payment_method_type: string | null;
  masked: Record<string, unknown> | null;
  fingerprint: string | null;
  amount_value: string | number | null;
  currency: string | null;
  metadata: Record<string, string> | null;
  envelope_version: number | null;
  iv: Buffer | null;
  ciphertext: Buffer | null;
  tag: Buffer | null;
  key_commitment: Buffer | null;
  salt: Buffer | null;
  created_at: Date;
  leaf: Buffer | null;
}

/** The view a v1 record's columns serve (format v1 records only; unchecked). */
export function legacyTransactionView(r: TransactionRow): TransactionServedView {
  return {
    transactionId: r.transaction_id,
    processor: r.processor ?? '',
    amount: { value: Number(r.amount_value), currency: r.currency ?? '' },
    paymentMethod: (r.masked ?? {}) as Record<string, unknown>,
    fingerprint: r.fingerprint ?? '',
    metadata: r.metadata ?? null,
    createdAt: r.created_at.toISOString(),
  };
}

function recordMismatch(): PaylogError {
  return new PaylogError('INTEGRITY_FAILURE', 'the stored record does not match its log entry');
}

/**
 * Builds the record from a row and its leaf, trusting only the leaf: the leaf must be a
 * transaction leaf for this id; v2 values come from the leaf; v1 columns must equal what the
 * v1 leaf commits to (processor, amount, payment method type, metadata digest, ciphertext
 * digest is checked by the envelope's key commitment and tag at release). Throws INTEGRITY_FAILURE.
 */
export function recordFromRow(r: TransactionRow): TransactionRecord {
  if (!r.leaf) throw recordMismatch();
  const leaf = decodeLeaf(r.leaf);
  if (leaf.type !== 'transaction') throw recordMismatch();
  const base = { transactionId: r.transaction_id, logIndex: Number(r.log_index), requestMac: r.request_mac, leaf: r.leaf, leafFormat: leaf.v };
  if (leaf.v !== 1) {
    if (leaf.id !== r.transaction_id) throw recordMismatch();
    const { wrappedKeySha256: _wk, ...envelope } = envelopeFromLeaf(leaf);
    return { ...base, view: transactionViewFromLeaf(leaf), createdAt: new Date(leaf.time), envelope };
  }
  const view = legacyTransactionView(r);
  const metadataSha256 = r.metadata ? sha256b64(Buffer.from(canonicalJson(r.metadata), 'utf8')) : undefined;
  if (
    leaf.transactionId !== r.transaction_id ||
    leaf.processor !== view.processor ||
    leaf.amount.value !== view.amount.value ||
    leaf.amount.currency !== view.amount.currency ||
    leaf.paymentMethodType !== r.payment_method_type ||
    (r.masked as { type?: unknown } | null)?.type !== leaf.paymentMethodType ||
    leaf.metadataSha256 !== metadataSha256 ||
    !r.iv || !r.ciphertext || !r.tag || !r.key_commitment
  ) {
    throw recordMismatch();
  }
  return {
    ...base,
    view,
    createdAt: r.created_at,
    envelope: {
      version: r.envelope_version ?? 1,
      key: transactionKeyRef(leaf.envelope),
      salt: r.salt ?? Buffer.alloc(0),
      iv: r.iv,
      ciphertext: r.ciphertext,
      tag: r.tag,
      keyCommitment: r.key_commitment,
    },
  };
}

/** How often a submission is sealed again when its key epoch was retired while it was sealed. */
export const MAX_EPOCH_RETRIES = 2;

const unknownProcessor = () =>
  new PaylogError('UNKNOWN_PROCESSOR', 'processor must name a registered, active processor (an admin registers one with PUT /v1/admin/processors/{name})', { path: 'processor' });

export class TransactionService {
  constructor(private readonly deps: TransactionDeps) {}

  /**
   * Submits one transaction. Resolves only after its log entry is committed:
   * `created` (first time), `replayed` (identical body), or throws IDEMPOTENCY_CONFLICT.
   *
   * Revocation: every entry requires, at commit, that the submitter's certificate is not
   * revoked (CERTIFICATE_REVOKED otherwise, replays included). With `revocation: 'at-commit'`
   * the caller has not checked it, and this method MUST decide it for every answer: by that
   * commit-time check when the answer comes from the append, by one query for any other answer
   * (a replay found before the append, or an error). In per-transaction key mode the query runs
   * first instead (sealing there costs a KMS call).
   */
  async submit(
    principal: Principal,
    raw: unknown,
    opts: { now?: Date; revocation?: 'at-commit' | 'checked' } = {},
  ): Promise<{ created: boolean; receipt: TransactionReceipt }> {
    const now = opts.now ?? this.deps.clock?.() ?? new Date();
    const answer = ({ created, receipt }: { created: boolean; receipt: TransactionReceipt }) => ({ created, receipt });
    if (opts.revocation === 'at-commit' && !this.deps.epochs) {
      // Per-transaction keys: a submission costs a KMS call before it reaches the append, so a
      // revoked certificate is refused first (it must not spend the account's KMS quota).
      await assertNotRevoked(this.deps.revocations, principal);
      return answer(await this.submitUnchecked(principal, raw, now));
    }
    if (opts.revocation !== 'at-commit') return answer(await this.submitUnchecked(principal, raw, now));
    let r: { created: boolean; receipt: TransactionReceipt; checkedAtCommit?: boolean };
    try {
      r = await this.submitUnchecked(principal, raw, now);
    } catch (e) {
      if (!(isPaylogError(e) && e.code === 'CERTIFICATE_REVOKED')) await assertNotRevoked(this.deps.revocations, principal);
      throw e;
    }
    if (!r.checkedAtCommit) await assertNotRevoked(this.deps.revocations, principal);
    return answer(r);
  }

  private async submitUnchecked(
    principal: Principal,
    raw: unknown,
    now: Date,
  ): Promise<{ created: boolean; receipt: TransactionReceipt; checkedAtCommit?: boolean }> {
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
    return await this.submitValidated(principal, req, mac, cse, now, MAX_EPOCH_RETRIES);
  }

  /**
   * Seals and appends a validated submission. In hierarchical mode, once this process knows the
   * processor's current epoch, there is no database read before the append: the append itself
   * requires (under the append lock, at commit) that the processor is still active and the
   * epoch still encrypts. If another process disabled the processor or retired the epoch
   * meanwhile, the entry is refused, the hint dropped and the submission sealed again after a
   * fresh pre-check (at most `retries` times).
   */
  private async submitValidated(
    principal: Principal,
    req: TransactionRequest,
    mac: Buffer,
    cse: CseMarker | null,
    now: Date,
    retries: number,
  ): Promise<{ created: boolean; receipt: TransactionReceipt; checkedAtCommit?: boolean }> {
    const epochs = this.deps.epochs;
    const known = epochs?.knownCurrent(req.processor, now) ?? null;
    let epoch = known;
    if (!known) {
      const check = await this.precheck(req, now);
      // Replays first (no KMS call, no append): an identical replay is 200 even if the processor
      // has been disabled since.
      if (check.transaction_id !== null) {
        const prior = await this.findRow(req.transactionId);
        if (prior) return { created: false, receipt: await this.replayOrConflict(prior, mac) };
      }
      if (check.processor_status !== 'active') throw unknownProcessor();
      if (epochs) epoch = await epochs.currentEpoch(req.processor, now, check.epoch_id ?? null);
    }

    const binding = { transactionId: req.transactionId, processor: req.processor };
    const plaintext = Buffer.from(canonicalJson(req.paymentMethod), 'utf8');
    let envelope: { version: number; salt: Buffer; iv: Buffer; ciphertext: Buffer; tag: Buffer; keyCommitment: Buffer; wrappedKey: Buffer };
    let keyRef: { kmsKeyId: string; epochId?: undefined } | { epochId: string; kmsKeyId?: undefined };
    let epochPublicKeySha256: Buffer | undefined;
    try {
      if (epoch) {
        // Envelope v2: wrapped locally under the epoch public key; no KMS call.
        const v2 = sealEnvelopeV2(epoch.publicKey, { ...binding, epochId: epoch.epochId }, plaintext);
        envelope = v2;
        keyRef = { epochId: v2.epochId };
        epochPublicKeySha256 = createHash('sha256').update(epoch.publicKey.raw).digest();
      } else {
        const v1 = await sealEnvelope(this.deps.dataKeys, binding, plaintext);
        envelope = v1;
        keyRef = { kmsKeyId: v1.kmsKeyId };
      }
    } finally {
      plaintext.fill(0);
    }
    const createdAt = now;
    const masked = maskedView(req.paymentMethod);
    const leaf = encodeLeaf(
      transactionLeaf({
        time: createdAt,
        transactionId: req.transactionId,
        processor: req.processor,
        amount: { value: req.amount.value, currency: req.amount.currency },
        paymentMethod: masked,
        metadata: req.metadata ?? null,
        ...(cse ? { cse: { kid: cse.kid } } : {}),
        envelope: {
          version: envelope.version,
          key: transactionKeyRef(keyRef),
          salt: envelope.salt,
          iv: envelope.iv,
          ciphertext: envelope.ciphertext,
          tag: envelope.tag,
          keyCommitment: envelope.keyCommitment,
          wrappedKey: envelope.wrappedKey,
          ...(epochPublicKeySha256 ? { epochPublicKeySha256 } : {}),
        },
      }),
    );
    const outcome = await this.deps.appender.append({
      kind: 'transaction',
      leaf,
      createdAt,
      transaction: { transactionId: req.transactionId, requestMac: mac },
      dataKey: { transactionId: req.transactionId, wrappedKey: envelope.wrappedKey, kmsKeyId: keyRef.kmsKeyId ?? null, epochId: keyRef.epochId ?? null },
      requires: {
        principal: { certificateFingerprint: principal.certificateFingerprint, serialHex: principal.serialHex },
        processor: req.processor,
        ...(keyRef.epochId ? { epochId: keyRef.epochId } : {}),
      },
    });
    if (outcome.status === 'conflict') throw conflictError();
    if (outcome.status === 'replayed') {
      const row = await this.findRow(req.transactionId);
      if (!row) throw new PaylogError('INTERNAL', 'replayed transaction not found');
      return { created: false, receipt: await this.replayOrConflict(row, mac), checkedAtCommit: true };
    }
    if (outcome.status === 'refused') {
      if (outcome.reason === 'principal_revoked') throw certificateRevokedError();
      epochs?.forgetCurrent(req.processor);
      if (outcome.reason === 'processor_inactive') throw unknownProcessor();
      if (keyRef.epochId) epochs?.forget(keyRef.epochId);
      if (retries > 0) return await this.submitValidated(principal, req, mac, cse, now, retries - 1);
      throw new PaylogError('LOG_UNAVAILABLE', 'the key epoch changed while this submission was sealed; retry later', { retryAfterSeconds: 1 });
    }
    return {
      created: true,
      checkedAtCommit: true,
      receipt: {
        transactionId: req.transactionId,
        logIndex: outcome.logIndex,
        leafHash: outcome.leafHash.toString('base64'),
        paymentMethod: masked as unknown as Record<string, unknown>,
        createdAt: createdAt.toISOString(),
      },
    };
  }

  /**
   * One round trip: is the processor active, and was this id submitted before? In hierarchical
   * mode the same round trip reads the processor's current epoch id, so a rotation or
   * retirement by another process is seen by the very next submission that reads it.
   */
  private async precheck(req: TransactionRequest, now: Date): Promise<{ processor_status: string | null; transaction_id: string | null; epoch_id?: string | null }> {
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
    return pre.rows[0] as { processor_status: string | null; transaction_id: string | null; epoch_id?: string | null };
  }

  /**
   * Masked metadata + log position; never plaintext. Unknown and not-yours look the same.
   * For format-2 records every value is decoded from the leaf, which is served with its
   * inclusion proof and the signed checkpoint so the caller can check it alone.
   */
  async get(principal: Principal, transactionId: string): Promise<TransactionView> {
    const record = await this.findRow(transactionId);
    const active = await this.deps.processors.inGoodStanding(principal);
    authorizeOnTransaction(principal, 'transaction:read', record && active ? { assignedProcessor: record.view.processor } : {});
    if (!record) throw new PaylogError('NOT_FOUND', 'no such transaction');
    const proof = (await this.deps.proofs?.(record.logIndex)) ?? null;
    const { createdAt: _c, ...view } = record.view;
    return {
      ...view,
      logIndex: record.logIndex,
      leafHash: hashLeaf(record.leaf).toString('base64'),
      createdAt: record.view.createdAt,
      leafFormat: record.leafFormat,
      leaf: record.leaf.toString('base64'),
      ...(proof ? { proof } : {}),
      shredded: await this.isShredded(record.transactionId),
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

  /** The stored record for a transaction id (checked against its leaf), or null. Throws INTEGRITY_FAILURE. */
  async findRow(transactionId: string): Promise<TransactionRecord | null> {
    if (!isTransactionId(transactionId)) return null; // cannot exist: no query
    const r = await this.deps.database.pool.query({ name: 'paylog_tx_record', text: SELECT_RECORD, values: [transactionId] });
    const row = r.rows[0] as TransactionRow | undefined;
    return row ? recordFromRow(row) : null;
  }

  private async replayOrConflict(record: TransactionRecord, mac: Buffer): Promise<TransactionReceipt> {
    if (!macEqual(record.requestMac, mac)) throw conflictError();
    return {
      transactionId: record.transactionId,
      logIndex: record.logIndex,
      leafHash: hashLeaf(record.leaf).toString('base64'),
      paymentMethod: record.view.paymentMethod,
      createdAt: record.view.createdAt,
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
