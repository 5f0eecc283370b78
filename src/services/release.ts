/**
 * Release of plaintext payment data to the processor assigned to the transaction
 * (PCI DSS 7.2.2 need-to-know; 10.2.1.1 every access to cardholder data logged).
 *
 * Contract: every release and every refused release attempt appends ONE access entry to the
 * Merkle log, and `release()` returns plaintext only after that entry's batch has committed.
 * If the entry cannot be made durable, nothing is released (LOG_UNAVAILABLE → 503).
 * A granted entry commits only while the record's key material is not shredded (a commit-time
 * precondition, src/services/append-preconditions.ts `keyMaterialRequires`): when a shred committed first, the
 * appender logs the attempt as denied (DATA_SHREDDED) in its place, the plaintext decrypted in
 * memory is zeroed unreturned, and the answer is 410. So no release whose access entry commits
 * after a shred returns plaintext, in any worker or instance, whatever it caches; one whose
 * entry committed before the shred may still return it.
 * Card security code (issue 18): a granted release with purpose `authorize` of a card takes the
 * CVC held for the transaction, if any (src/cvc/codes.ts: atomically, once, AFTER its access entry
 * committed) and answers it as `paymentMethod.cvc`; every other purpose never touches it, and a
 * second `authorize` release answers without it.
 * Rate-limited attempts are refused by the route (@fastify/rate-limit, per certificate) before
 * this service runs, and are not logged (a flood must not be able to grow the log); they are
 * counted in metrics as 429s.
 */
import { z } from 'zod';
import type { AppDatabase } from '../db/connection.js';
import { PaylogError, isPaylogError } from '../errors.js';
import type { Principal } from '../auth/principal.js';
import type { ProcessorRegistry } from '../auth/processors.js';
import type { RecordKeyring } from '../keys/record-keys.js';
import { accessLeafV2, accessViewFromLeaf, decodeLeaf, encodeLeaf, type AccessServedView } from '../log/leaf.js';
import type { Appender } from '../log/appender.js';
import { DENIAL, keyMaterialRequires } from './append-preconditions.js';
import type { TransactionService } from './transactions.js';
import type { TakeCardSecurityCode } from './forward/cvc-seam.js';
import { containsIban } from '../validation/transaction.js';
import { containsPanLikeNumber, isTransactionId } from '../validation/identifiers.js';
import { unknownTransactionRef } from '../crypto/fingerprint.js';
import type { Metrics } from '../metrics.js';
import { isTransientDatabaseError } from '../db/errors.js';
import { keyMaterialOf, openRecord } from './open-record.js';

export const RELEASE_PURPOSES = ['authorize', 'capture', 'refund', 'chargeback', 'settlement'] as const;
const REFERENCE_MAX = 128;
/** Largest page of access entries one request returns. */
const MAX_ACCESSES_PAGE = 1000;

/** A release's or forward's `purpose` (one rule for both bodies). */
export const purposeSchema = z.enum(RELEASE_PURPOSES);
/** A release's or forward's optional `reference`: letters, digits, spaces and `. _ : # / -`. */
export const referenceSchema = z
  .string()
  .min(1)
  .max(REFERENCE_MAX)
  .regex(/^[\p{L}\p{N} ._:#/-]*$/u)
  .optional();
/** {@link purposeSchema} and {@link referenceSchema} in words (error messages, OpenAPI). */
export const PURPOSE_EXPECTATION = `purpose must be one of ${RELEASE_PURPOSES.join(', ')}`;
export const REFERENCE_EXPECTATION = `reference must be 1-${REFERENCE_MAX} characters of letters, digits, spaces and . _ : # / -`;

export const releaseRequestSchema = z.strictObject({ purpose: purposeSchema, reference: referenceSchema });
export type ReleaseRequest = z.infer<typeof releaseRequestSchema>;

/** What each release body field must be, in words (constants; never input). */
const RELEASE_FIELD_EXPECTATIONS: Readonly<Record<string, string>> = {
  purpose: PURPOSE_EXPECTATION,
  reference: REFERENCE_EXPECTATION,
  '*': 'the body may have only purpose and reference',
};

export interface ReleaseResult {
  transactionId: string;
  processor: string;
  amount: { value: number; currency: string };
  paymentMethod: Record<string, unknown>;
  accessLogIndex: number;
}

/** The refusal of a release whose key material was shredded before its access entry committed. */
const shreddedAtCommit = () => new PaylogError('DATA_SHREDDED', 'the card data of this transaction has been shredded');


/** One access entry as served: the view decoded from its leaf, and where it is in the log. */
type AccessView = AccessServedView & { logIndex: number };

interface ReleaseDeps {
  database: AppDatabase;
  appender: Appender;
  /** Opens records of every envelope version (src/keys/record-keys.ts). */
  recordKeys: RecordKeyring;
  transactions: TransactionService;
  processors: ProcessorRegistry;
  /** Keyed digests of unknown transaction ids (never logged in the clear). */
  macKey: Buffer;
  metrics?: Metrics;
  /** Takes the held card security code of a transaction (src/cvc/codes.ts `take`); absent → never answered. */
  takeCardSecurityCode?: TakeCardSecurityCode;
}

/** The one release purpose that takes the held card security code (PCI DSS 3.3.1: until authorization). */
const CVC_RELEASE_PURPOSE = 'authorize';

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
      issues: r.error.issues.slice(0, 5).map((i) => {
        const path = i.path.map(String).filter((p) => p === 'purpose' || p === 'reference').join('.') || '*';
        return { path, code: i.code, message: RELEASE_FIELD_EXPECTATIONS[path] ?? RELEASE_FIELD_EXPECTATIONS['*']! };
      }),
    });
  }
  if (r.data.reference && (containsPanLikeNumber(r.data.reference) || containsIban(r.data.reference))) {
    throw new PaylogError('VALIDATION_FAILED', 'reference must not contain a card number or IBAN', { issues: [{ path: 'reference', code: 'account_number_like', message: 'reference must not contain a card number or IBAN' }] });
  }
  return r.data;
}

export class ReleaseService {
  constructor(private readonly deps: ReleaseDeps) {}

  /** Whether a transaction row exists (no leaf read): decides how a refused attempt names it in the log. */
  private async recordExists(transactionId: string): Promise<boolean> {
    const r = await this.deps.database.pool.query({ name: 'paylog_release_exists', text: 'SELECT 1 FROM transactions WHERE transaction_id = $1', values: [transactionId] });
    return r.rows.length > 0;
  }

  /**
   * Releases the plaintext payment method of `transactionId` to `principal`. The access entry
   * (granted or denied) is committed before this resolves or rejects with the refusal.
   */
  async release(principal: Principal, transactionId: string, raw: unknown, sourceAddress: string): Promise<ReleaseResult> {
    // Ids that cannot exist (submission's rule) are 404 at once, unlogged.
    if (!isTransactionId(transactionId)) throw new PaylogError('NOT_FOUND', 'no such transaction');
    // Authorized before the record is read or its leaf decoded (issue 19): "not yours" and
    // "does not exist" do the same work (authorizeFor's query, then recordExists, no leaf) and
    // are refused alike; both are logged as denied attempts.
    let assigned: string | null = null;
    let refusal: PaylogError | undefined;
    try {
      assigned = await this.deps.transactions.authorizeFor(principal, 'transaction:release', transactionId);
    } catch (e) {
      if (isPaylogError(e)) refusal = e;
      // The database failing to answer says nothing about the record: 503, and still a logged attempt.
      else if (isTransientDatabaseError(e)) refusal = new PaylogError('LOG_UNAVAILABLE', 'the log database is unavailable; nothing was released', undefined, { cause: e });
      else throw e;
    }
    const row = refusal ? null : await this.deps.transactions.findRow(transactionId);
    const exists = row !== null || (refusal !== undefined && (await this.recordExists(transactionId)));

    let body: ReleaseRequest | undefined;
    try {
      if (refusal) throw refusal;
      if (!row) throw new PaylogError('NOT_FOUND', 'no such transaction');
      // The lookup row only chose whom to ask; the leaf is what counts.
      if (assigned !== null && row.view.processor !== assigned) throw new PaylogError('INTEGRITY_FAILURE', 'the stored record does not match its log entry');
      body = parseReleaseRequest(raw);
    } catch (e) {
      refusal = isPaylogError(e) ? e : new PaylogError('INTERNAL', 'release refused');
    }

    // Decrypt in memory first; nothing leaves until the access entry is durable.
    let plaintext: Buffer | undefined;
    if (!refusal && row && body) {
      try {
        plaintext = await openRecord(this.deps.database, this.deps.recordKeys, row);
      } catch (e) {
        if (isPaylogError(e) && (e.code === 'KMS_UNAVAILABLE' || e.code === 'DATA_SHREDDED')) refusal = e;
        // The database failing to answer says nothing about the record: 503, not 422.
        else if (isTransientDatabaseError(e)) refusal = new PaylogError('LOG_UNAVAILABLE', 'the log database is unavailable; nothing was released', undefined, { cause: e });
        else refusal = new PaylogError('INTEGRITY_FAILURE', 'the stored record failed its integrity checks; nothing was released');
      }
    }

    // The log names an existing transaction by its id (validated at submission); an id that
    // does not exist is recorded only as a keyed digest.
    const loggedId = exists ? transactionId : unknownTransactionRef(this.deps.macKey, transactionId);
    try {
      const now = new Date();
      const accessLeaf = (outcome: 'granted' | 'denied', reason: string | undefined) =>
        encodeLeaf(
          accessLeafV2({
            time: now,
            transactionId: loggedId,
            action: 'release',
            principal,
            purpose: body?.purpose,
            reference: body?.reference,
            outcome,
            reason,
            sourceAddress,
          }),
        );
      const granting = !refusal && plaintext !== undefined && row !== null;
      const appended = await this.deps.appender.append({
        kind: 'access',
        leaf: granting ? accessLeaf('granted', undefined) : accessLeaf('denied', refusal?.code),
        createdAt: now,
        access: { transactionId: loggedId },
        // Granted only if the key material is still there when the entry commits.
        ...(granting ? { requires: keyMaterialRequires(keyMaterialOf(transactionId, row.envelope.key), () => accessLeaf('denied', 'DATA_SHREDDED')) } : {}),
      });
      if (appended.status === 'denied') {
        // A shred committed between the key checks above and this entry: nothing is released.
        if (appended.reason === DENIAL.epochShredded) this.deps.recordKeys.keyShredded(row!.envelope.key);
        refusal = shreddedAtCommit();
      }
      const outcome = refusal ? 'denied' : 'granted';
      this.deps.metrics?.releases.inc({ outcome });
      if (refusal || !plaintext || !row || appended.status !== 'appended') {
        throw refusal ?? new PaylogError('INTERNAL', 'release failed');
      }
      const paymentMethod = JSON.parse(plaintext.toString('utf8')) as Record<string, unknown>;
      // Taken only now that the access entry is durable: a refused or unlogged release never consumes it.
      const cvc = body?.purpose === CVC_RELEASE_PURPOSE && paymentMethod.type === 'card' ? await this.deps.takeCardSecurityCode?.(transactionId) : undefined;
      return {
        transactionId,
        processor: row.view.processor,
        amount: row.view.amount,
        paymentMethod: cvc !== undefined ? { ...paymentMethod, cvc } : paymentMethod,
        accessLogIndex: appended.logIndex,
      };
    } catch (e) {
      if (isPaylogError(e) && e.code === 'LOG_UNAVAILABLE' && e !== refusal) {
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
    // Authorized before the record is decoded (issue 17): "not yours" = "does not exist".
    const assigned = await this.deps.transactions.authorizeFor(principal, 'transaction:accesses', transactionId);
    const row = await this.deps.transactions.findRow(transactionId);
    if (!row) throw new PaylogError('NOT_FOUND', 'no such transaction');
    if (assigned !== null && row.view.processor !== assigned) throw new PaylogError('INTEGRITY_FAILURE', 'the stored record does not match its log entry');
    const limit = Math.min(page.limit ?? MAX_ACCESSES_PAGE, MAX_ACCESSES_PAGE);
    // Served from the leaves: the access_entries row only says where to look.
    const r = await this.deps.database.pool.query({
      name: 'paylog_accesses',
      text: `SELECT a.log_index, e.leaf FROM access_entries a LEFT JOIN log_entries e ON e.idx = a.log_index
             WHERE a.transaction_id = $1 AND a.log_index > $2 ORDER BY a.log_index LIMIT $3`,
      values: [transactionId, page.after ?? -1, limit + 1],
    });
    const rows = r.rows as { log_index: string; leaf: Buffer | null }[];
    const more = rows.length > limit;
    const pageRows = rows.slice(0, limit);
    // A forward's result entry (issue 18) is listed under its transaction too; it is served by
    // GET /v1/transactions/{id}/forwards, not here.
    const accesses = pageRows.filter((a) => !isForwardResult(a.leaf)).map((a) => ({ logIndex: Number(a.log_index), ...accessViewFromStoredLeaf(a.leaf, transactionId) }));
    const last = pageRows[pageRows.length - 1];
    return { accesses, ...(more && last ? { next: Number(last.log_index) } : {}) };
  }
}

/** True for a forward_result leaf (undecodable bytes are left to accessViewFromStoredLeaf to refuse). */
function isForwardResult(leafBytes: Buffer | null): boolean {
  if (!leafBytes) return false;
  try {
    return decodeLeaf(leafBytes).type === 'forward_result';
  } catch {
    return false;
  }
}

/**
 * The served view of one access entry, decoded from its leaf (v1 or v2), which must be an access
 * leaf for `transactionId`. Throws INTEGRITY_FAILURE otherwise.
 */
function accessViewFromStoredLeaf(leafBytes: Buffer | null, transactionId: string): AccessServedView {
  const bad = () => new PaylogError('INTEGRITY_FAILURE', 'a stored access entry does not match its log entry');
  if (!leafBytes) throw bad();
  const leaf = decodeLeaf(leafBytes);
  if (leaf.type !== 'access' || leaf.transactionId !== transactionId) throw bad();
  if (leaf.v !== 1) return accessViewFromLeaf(leaf);
  return {
    transactionId: leaf.transactionId,
    action: leaf.action,
    principal: { ...leaf.principal },
    purpose: leaf.purpose ?? null,
    reference: leaf.reference ?? null,
    outcome: leaf.outcome,
    reason: leaf.reason ?? null,
    sourceAddress: leaf.sourceAddress,
    time: leaf.time,
  };
}
