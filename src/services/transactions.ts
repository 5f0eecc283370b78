/**
 * Transactions: submit (validate → policy → envelope → appender) and read masked metadata.
 * Knows nothing about HTTP; routes call these functions with the authenticated principal.
 *
 * Leaf format v2/v3: the record IS the log entry. Submission writes a transaction leaf carrying
 * the masked view and the sealed ciphertext; the `transactions` row is a lookup (id → index,
 * idempotency MAC, and from issue 17 the assigned processor and the v2 fingerprint). Reads
 * decode the leaf; records written before v2 are served from their columns after checking them
 * against what their v1 leaf commits to.
 *
 * No oracle (issue 17; SECURITY.md "What each principal is served, and why it cannot be
 * correlated"): nothing a submitter receives depends on a digit it is not served.
 * - Served payment method: `maskedView` / `servedMaskedView` (no BIN), to every principal.
 * - Fingerprint (v2 key, per processor, outside the log): served to the assigned processor only.
 * - Leaf bytes of format v2 (BIN + v1 fingerprint, forever): never served to checkout.
 * - Idempotency: replay (200) vs conflict (409) compares the SERVED projection of the request
 *   (`servedProjection`), so a candidate card that agrees on every served field answers like the
 *   true one; a conflict is logged (warn) with the principal and nothing of the card. Decided
 *   ONCE per submission, in `replayOrConflict`, whichever way the stored id is found: the
 *   expired-card replay, the pre-check (`answerStored`), or the append (`answerStored`). The
 *   appender's own replayed/conflict verdict (stored MAC equality, src/log/append/plan.ts) only
 *   keeps the duplicate out of the log; this service MUST NOT answer from it.
 * - Revocation at commit: the submitter's certificate is checked by the append precondition
 *   (src/services/append-preconditions.ts, under the append lock, before idempotency), and by
 *   ONE query in `submit` only for answers the append did not give (see `submit`).
 * - Probing: new transactions per principal × served payment fields × hour are limited
 *   (src/services/probe-limit.ts), across processes; replays never are.
 * - Card security code (issue 18): `paymentMethod.cvc` is split off before validation and held
 *   (src/cvc/codes.ts) only after the leaf of a NEW transaction committed; replays never store it.
 * - A processor's read is authorized from the row's processor column BEFORE the leaf is decoded,
 *   a proof built or the shred state read: "not yours" and "does not exist" are one code path.
 */
import type { AppDatabase } from '../db/connection.js';
import { PaylogError, isPaylogError } from '../errors.js';
import { authorize, authorizeOnTransaction } from '../auth/policy.js';
import type { Principal } from '../auth/principal.js';
import { assertNotRevoked, certificateRevokedError, type RevocationCheck } from '../auth/revocations.js';
import type { ProcessorRegistry } from '../auth/processors.js';
import { validateTransactionRequest, type TransactionRequest } from '../validation/transaction.js';
import { isTransactionId } from '../validation/identifiers.js';
import { canonicalJson } from '../crypto/canonical-json.js';
import { maskedView, servedMaskedView, type MaskedPaymentMethod } from '../validation/masking.js';
import { macEqual, probeServedMac, servedRequestMac } from '../crypto/fingerprint.js';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics.js';
import type { ProbeLimiter } from './probe-limit.js';
import type { RecordKeyring } from '../keys/record-keys.js';
import type { EpochKeyring } from '../kms/epoch-keys.js';
import { decodeLeaf } from '../log/leaf.js';
import { hashLeaf } from '../log/merkle.js';
import type { Appender } from '../log/appender.js';
import { REFUSAL } from './append-preconditions.js';
import type { ClientSideDecryption, CseMarker } from '../cse/jwe.js';
import { takeCardSecurityCode } from '../validation/card-security-code.js';
import { recordFromRow, recordMismatch, type TransactionRecord } from './transaction-record.js';
import { readAssignment, readShredded, readSubmissionPrecheck, readTransactionRow } from './transaction-queries.js';
import { sealAndAppend } from './transaction-seal.js';
import { principalForLog, servedProjection, servedTransactionView, type ServedProof, type TransactionReceipt, type TransactionView } from './transaction-view.js';


interface TransactionDeps {
  database: AppDatabase;
  appender: Appender;
  /** Seals records (src/keys/record-keys.ts); the service never chooses an envelope version. */
  recordKeys: RecordKeyring;
  /** HMAC key for request MACs (held in memory, wrapped under KMS at rest). */
  macKey: Buffer;
  /**
   * Key of v2 fingerprints and probe MACs (keyring `fingerprint-hmac-v2`, issue 17). Absent →
   * no fingerprint is stored and no probe limit applies (unit tests only).
   */
  fingerprintKey?: Buffer;
  /** The probe limit (required in the service; see src/services/probe-limit.ts). */
  probes?: ProbeLimiter;
  logger?: Logger;
  metrics?: Pick<Metrics, 'idempotencyConflicts'>;
  processors: ProcessorRegistry;
  /** The revocation list, for submissions whose revocation is decided here (`at-commit`). */
  revocations: RevocationCheck;
  /**
   * Hierarchical key mode: the epoch keyring, read by the submission pre-check (the current
   * epoch id in the same round trip); MUST be given exactly when `recordKeys` seals to epochs.
   */
  epochs?: EpochKeyring;
  /** Injectable clock (epoch rollover tests); default the system clock. */
  clock?: () => Date;
  /** Client-side encryption (JWE payment methods); absent → such bodies fail validation. */
  cse?: ClientSideDecryption;
  /** Held card security codes (src/cvc/codes.ts); absent → a submitted CVC is dropped. */
  cardSecurityCodes?: { hold(transactionId: string, cvc: string): Promise<void> };
  /** Inclusion proof + checkpoint for a log index, when a verified checkpoint covers it. */
  proofs?: (logIndex: number) => Promise<ServedProof | null>;
}


/** How often a submission is sealed again when its key epoch was retired while it was sealed. */
const MAX_EPOCH_RETRIES = 2;

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
    // The card security code (issue 18) leaves the body here: nothing below — validation, the
    // sealed record, the leaf, the idempotency MAC, the probe limit — ever sees it.
    let cvc: string | undefined;
    ({ body: raw, cvc } = takeCardSecurityCode(raw));
    let req: TransactionRequest;
    try {
      req = validateTransactionRequest(raw, now);
    } catch (e) {
      // A replay of a submission accepted earlier stays a replay after the card has expired:
      // validate it as of the original submission.
      const prior = isPaylogError(e) && e.code === 'CARD_EXPIRED' ? await this.findRow(rawTransactionId(raw)) : null;
      if (!prior) throw e;
      const original = validateTransactionRequest(raw, prior.createdAt);
      const masked = maskedView(original.paymentMethod);
      // A replay: never counted or refused by the probe limit.
      return { created: false, receipt: this.replayOrConflict(principal, prior, this.servedMac(original, masked)) };
    }
    const masked = maskedView(req.paymentMethod);
    await this.admitProbe(principal, req, masked, now);
    const r = await this.submitValidated(principal, req, masked, this.servedMac(req, masked), cse, now, MAX_EPOCH_RETRIES);
    if (r.created && cvc !== undefined) await this.holdCardSecurityCode(req.transactionId, cvc);
    return r;
  }

  /**
   * Holds the CVC of a transaction this submission CREATED (its leaf committed): a replay never
   * stores one again. A failure to store it does not undo the committed submission: it is
   * logged (no value) and the authorization will go without a CVC.
   */
  private async holdCardSecurityCode(transactionId: string, cvc: string): Promise<void> {
    try {
      await this.deps.cardSecurityCodes?.hold(transactionId, cvc);
    } catch (e) {
      this.deps.logger?.error({ event: 'cvc_not_held', transactionId, code: isPaylogError(e) ? e.code : 'INTERNAL' }, 'the card security code could not be stored; the transaction is committed without it');
    }
  }

  /** The idempotency MAC of a request: over its served projection only (issue 17). */
  private servedMac(req: TransactionRequest, masked: MaskedPaymentMethod): Buffer {
    return servedRequestMac(this.deps.macKey, servedProjection({ ...req, paymentMethod: masked as unknown as Record<string, unknown> }));
  }

  /**
   * The probe limit (src/services/probe-limit.ts): a validated submission of a new transactionId
   * takes a slot in its principal's group of transactions with the same served payment fields
   * this hour; a replay passes. Throws PROBE_LIMIT_EXCEEDED beyond the limit. Decided on the
   * served fields and the transactionId only, never on a hidden digit.
   */
  private async admitProbe(principal: Principal, req: TransactionRequest, masked: MaskedPaymentMethod, now: Date): Promise<void> {
    const { probes, fingerprintKey } = this.deps;
    if (!probes || !fingerprintKey) return;
    const served = probeServedMac(fingerprintKey, canonicalJson(masked));
    await probes.admit({ principal: `${principal.role}:${principal.name}`, served, transactionId: req.transactionId }, now);
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
    masked: MaskedPaymentMethod,
    mac: Buffer,
    cse: CseMarker | null,
    now: Date,
    retries: number,
  ): Promise<{ created: boolean; receipt: TransactionReceipt; checkedAtCommit?: boolean }> {
    const keys = this.deps.recordKeys;
    let currentKeyId: string | null | undefined;
    if (!keys.knowsSealingKey(req.processor, now)) {
      const check = await readSubmissionPrecheck(this.deps.database.pool, { processor: req.processor, transactionId: req.transactionId, epochGranularity: this.deps.epochs?.granularity, now });
      // Replays first (no KMS call, no append): an identical replay is 200 even if the processor
      // has been disabled since.
      if (check.transaction_id !== null) {
        const receipt = await this.answerStored(principal, req.transactionId, mac);
        if (receipt) return { created: false, receipt };
      }
      if (check.processor_status !== 'active') throw unknownProcessor();
      if (this.deps.epochs) currentKeyId = check.epoch_id ?? null;
    }

    const { outcome, keyRef } = await sealAndAppend(this.deps, principal, { req, masked, mac, cse }, now, currentKeyId);
    if (outcome.status === 'conflict' || outcome.status === 'replayed') {
      // The append found the id stored (and kept the duplicate out of the log); its MAC verdict
      // is not this service's rule: the record decides (a record stored before issue 17 holds a
      // v1 MAC over the whole body, and its replays are judged on the served projection).
      const receipt = await this.answerStored(principal, req.transactionId, mac);
      if (!receipt) throw new PaylogError('INTERNAL', 'replayed transaction not found');
      return { created: false, receipt, checkedAtCommit: true };
    }
    if (outcome.status === 'refused') {
      if (outcome.reason === REFUSAL.principalRevoked) throw certificateRevokedError();
      keys.sealingKeyRefused(req.processor, keyRef, outcome.reason !== REFUSAL.processorInactive);
      if (outcome.reason === REFUSAL.processorInactive) throw unknownProcessor();
      if (retries > 0) return await this.submitValidated(principal, req, masked, mac, cse, now, retries - 1);
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
        createdAt: now.toISOString(),
      },
    };
  }

  /**
   * Masked metadata + log position; never plaintext. For leaf format 2+ every value is decoded
   * from the leaf, which is served (where `principal` may see it, `leafServedTo`) with its
   * inclusion proof and the signed checkpoint so the caller can check it alone.
   *
   * Unknown and not-yours MUST look the same to a processor, in body, headers and time: the read
   * is authorized first (`authorizeFor`: one small query, no leaf decoded), and both refusals
   * are the one NOT_FOUND thrown there, before the record is read, its leaf decoded, a proof
   * built or its shred state queried.
   */
  async get(principal: Principal, transactionId: string): Promise<TransactionView> {
    const assigned = await this.authorizeFor(principal, 'transaction:read', transactionId);
    const record = await this.findRow(transactionId);
    if (!record) throw notFound();
    // The row's processor column only chose whom to ask; the leaf is what counts.
    if (assigned !== null && record.view.processor !== assigned) throw recordMismatch();
    const proof = (await this.deps.proofs?.(record.logIndex)) ?? null;
    return servedTransactionView(principal, record, proof, await this.isShredded(record.transactionId));
  }

  /**
   * Authorizes `principal` for a per-transaction `action` (read, accesses, release) on
   * `transactionId` before anything of the record is read or decoded. Roles whose rule does not
   * depend on the record (checkout, auditor, admin) are decided by the role. A processor may act
   * only on transactions assigned to it while it is in good standing: its processor name and
   * standing and the row's processor come from ONE query of two small rows (no leaf, except
   * for a record stored in leaf format 2 in per-transaction key mode before issue 17, whose row
   * names no processor: then that leaf is decoded for its processor, still before any other
   * work). Unknown, invalid and not-yours ids all throw the same NOT_FOUND from here.
   * Returns the processor the record must name (processor principals), else null.
   */
  async authorizeFor(principal: Principal, action: 'transaction:read' | 'transaction:accesses' | 'transaction:release', transactionId: string): Promise<string | null> {
    if (principal.role !== 'processor') {
      authorizeOnTransaction(principal, action, {});
      return null;
    }
    const owner = isTransactionId(transactionId) ? await this.assignedProcessor(principal, transactionId) : null;
    authorizeOnTransaction(principal, action, owner !== null ? { assignedProcessor: owner } : {});
    return owner;
  }

  /**
   * The processor a transaction is assigned to, if the processor principal asking is in good
   * standing (else null, like an unknown id). From the lookup row's `processor` column (rows
   * since issue 17, and v1 rows), else the key epoch's processor (hierarchical mode), else the
   * leaf (per-transaction v2 rows only).
   */
  private async assignedProcessor(principal: Principal, transactionId: string): Promise<string | null> {
    const row = await readAssignment(this.deps.database.pool, transactionId, principal.name);
    if (!row || row.standing !== 'active') return null;
    if (row.processor !== null) return row.processor;
    if (row.leaf === null) return null;
    const l = decodeLeaf(row.leaf);
    return l.type !== 'transaction' ? null : l.v === 1 ? l.processor : l.p;
  }

  /** Whether the record's data key, or its epoch's private key, has been destroyed. */
  async isShredded(transactionId: string): Promise<boolean> {
    return await readShredded(this.deps.database.pool, transactionId);
  }

  /** The stored record for a transaction id (checked against its leaf), or null. Throws INTEGRITY_FAILURE. */
  async findRow(transactionId: string): Promise<TransactionRecord | null> {
    if (!isTransactionId(transactionId)) return null; // cannot exist: no query
    const row = await readTransactionRow(this.deps.database.pool, transactionId);
    return row ? recordFromRow(row) : null;
  }

  /**
   * The answer to a submission whose transaction id is stored (null: it is not): its record,
   * read and checked against its leaf, judged by `replayOrConflict`. The pre-check and the
   * append both end here, so a submission is judged once, on one rule.
   */
  private async answerStored(principal: Principal, transactionId: string, mac: Buffer): Promise<TransactionReceipt | null> {
    const prior = await this.findRow(transactionId);
    return prior ? this.replayOrConflict(principal, prior, mac) : null;
  }

  /**
   * Replay (the original receipt) or IDEMPOTENCY_CONFLICT, decided ONLY on the served projection
   * (issue 17): `mac` is the served MAC of the new request, compared with the served MAC of the
   * stored record's view (for every leaf format, so records stored before issue 17, whose stored
   * MAC covered the whole body, are judged the same way). A replay with another payment method
   * that agrees on every served field is a replay (documented). A conflict is logged (warn) with
   * the principal and the transaction id, nothing of the payment method.
   */
  private replayOrConflict(principal: Principal, record: TransactionRecord, mac: Buffer): TransactionReceipt {
    const stored = servedRequestMac(this.deps.macKey, servedProjection(record.view));
    if (!macEqual(stored, mac)) {
      this.deps.metrics?.idempotencyConflicts.inc();
      this.deps.logger?.warn(
        { event: 'idempotency_conflict', transactionId: record.transactionId, principal: principalForLog(principal) },
        'replay of a transactionId with different served fields refused (409)',
      );
      throw conflictError();
    }
    return {
      transactionId: record.transactionId,
      logIndex: record.logIndex,
      leafHash: hashLeaf(record.leaf).toString('base64'),
      paymentMethod: servedMaskedView(record.view.paymentMethod),
      createdAt: record.view.createdAt,
    };
  }
}

function notFound(): PaylogError {
  return new PaylogError('NOT_FOUND', 'no such transaction');
}


function rawTransactionId(raw: unknown): string {
  const id = (raw as { transactionId?: unknown } | null)?.transactionId;
  return typeof id === 'string' ? id : '';
}

function conflictError(): PaylogError {
  return new PaylogError(
    'IDEMPOTENCY_CONFLICT',
    'a transaction with this transactionId was already submitted with different processor, amount, masked payment method or metadata',
  );
}

