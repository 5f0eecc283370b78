/**
 * Forward to the processor (issue 18 items 2, 3, 5): paylog fills the checkout's template with
 * the transaction's card data and sends it to one of the assigned processor's registered
 * destinations, once, and answers with the masked response.
 *
 * Contract:
 * - Only a destination of the transaction's ASSIGNED processor, verified against its admin
 *   event (DestinationService.verified), with the method and path it allows, receives data.
 * - Every attempt appends an access entry (action `forward`): refused ones as `denied`, the
 *   granted one — principal, destination, method, path, purpose, reference, SHA-256 of the
 *   TEMPLATE — committed BEFORE any byte leaves (and only while the record's key material is not
 *   shredded). After the answer or the failure, a `forward_result` entry (status, duration,
 *   masked count, error code). No leaf holds the filled request, the answer, or a digest of
 *   either.
 * - At most once per (transaction, Idempotency-Key) (ForwardLedger): a retry with the same
 *   request gets the recorded masked answer and nothing is sent; another request → 409
 *   IDEMPOTENCY_CONFLICT; while the first is in flight, the retry waits up to
 *   FORWARD_RETRY_WAIT_MS, then 409 FORWARD_IN_PROGRESS. Only the attempt whose granted entry's
 *   commit moved the ledger row to `sent` sends. A forward whose process stopped after that
 *   commit and before its result is `unknown` (FORWARD_OUTCOME_UNKNOWN), never re-sent; one that
 *   stopped before (nothing sent) is taken over by the next retry after FORWARD_STALE_GRACE_MS.
 * - The CVC is taken (consumed) only after the access entry committed, right before egress,
 *   and only when the template uses `{{card.cvc}}`; none held → result `refused`,
 *   CVC_NOT_AVAILABLE, nothing sent.
 * - Caller headers (an API key in Authorization) are passed on, never stored or logged.
 * - The route defers the principal's revocation here: it is read beside the first reads and
 *   decided before anything is logged, sent, or kept claimed, for every answer.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { createHash } from 'node:crypto';
import { PaylogError, isPaylogError, type ErrorCode } from '../../errors.js';
import { authorize } from '../../auth/policy.js';
import type { Principal } from '../../auth/principal.js';
import { certificateRevokedError, type RevocationCheck } from '../../auth/revocations.js';
import type { AppDatabase } from '../../db/connection.js';
import type { RecordKeyring } from '../../keys/record-keys.js';
import type { Appender } from '../../log/appender.js';
import { accessLeafV2, encodeLeaf, forwardResultLeaf, type ForwardOutcome } from '../../log/leaf.js';
import { isTransactionId } from '../../validation/identifiers.js';
import { macEqual, unknownTransactionRef } from '../../crypto/fingerprint.js';
import { isTransientDatabaseError } from '../../db/errors.js';
import { fillTemplate, parseTemplate, type ParsedTemplate, type PlaceholderName } from '../../forward/template.js';
import { MASKED_EXACT, placeholderValues } from '../../forward/values.js';
import { maskAnswer } from '../../forward/mask.js';
import { EgressError, FORWARD_MAX_RESPONSE_BYTES, egressFailure } from '../../net/forward-egress.js';
import { keyMaterialRequires } from '../append-preconditions.js';
import { keyMaterialOf, openRecordWith, type DataKeyRow } from '../open-record.js';
import type { TransactionRecord } from '../transaction-record.js';
import type { TakeCardSecurityCode } from './cvc-seam.js';
import type { Destination, DestinationService } from './destinations.js';
import { grantedWithKey, type GrantedKey } from './history.js';
import { readFirst } from './first-reads.js';
import { ForwardLedger, markSentWith, type ForwardAnswer, type StoredAnswer } from './ledger.js';
import { ForwardPools } from './pools.js';
import { forwardRequestMac, idempotencyKeyMac, idempotencyKeyOf, parseForwardRequest, pathAllowed, type ForwardRequest } from './request.js';

/** How long a retry waits for the first attempt with its key to finish. */
const FORWARD_RETRY_WAIT_MS = 5_000;
const RETRY_POLL_MS = 100;
/** Beyond its destination's timeout, how long an unfinished forward may take before it is `unknown`. */
const FORWARD_STALE_GRACE_MS = 30_000;

/** A promise's outcome, read later (reads started together, decided on in order). */
type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };
const settle = <T>(p: Promise<T>): Promise<Settled<T>> => p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }));

interface ForwardDeps {
  database: AppDatabase;
  appender: Appender;
  recordKeys: RecordKeyring;
  destinations: DestinationService;
  /** The revocation list, for forwards whose revocation is decided here (`at-commit`). */
  revocations: RevocationCheck;
  takeCardSecurityCode: TakeCardSecurityCode;
  /** MAC key: request MACs (idempotency) and keyed digests of unknown transaction ids. */
  macKey: Buffer;
  clock?: () => number;
}

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** What a refused forward is answered with and logged as. */
function refusalOf(e: unknown): PaylogError {
  if (isPaylogError(e)) return e;
  if (isTransientDatabaseError(e)) return new PaylogError('LOG_UNAVAILABLE', 'the log database is unavailable; nothing was sent', undefined, { cause: e });
  return new PaylogError('INTERNAL', 'forward refused', undefined, { cause: e });
}

function errorAnswer(e: PaylogError): StoredAnswer {
  return { kind: 'error', code: e.code, message: e.message };
}

export class ForwardService {
  private readonly ledger: ForwardLedger;
  private readonly pools: ForwardPools;
  private readonly now: () => number;

  constructor(private readonly deps: ForwardDeps) {
    this.ledger = new ForwardLedger(deps.database);
    this.pools = new ForwardPools(deps.destinations);
    this.now = deps.clock ?? (() => performance.now());
  }

  /** Closes every destination's connection pool. */
  async close(): Promise<void> {
    await this.pools.close();
  }

  /**
   * One forward (see the module contract). With `revocation: 'at-commit'` the route has not
   * checked the principal's revocation: it is read here, beside the first reads, and decided
   * before anything is logged, claimed for good or sent (and for every error answer).
   */
  async forward(principal: Principal, transactionId: string, raw: unknown, idempotencyHeader: string | string[] | undefined, sourceAddress: string, revocation: 'at-commit' | 'checked' = 'checked'): Promise<ForwardAnswer> {
    // The revocation is read by the first reads (`revocationRead`), or alone when they never ran.
    const revocationRead: { read?: Promise<boolean> } = {};
    const decideRevocation = async (): Promise<void> => {
      if (revocation !== 'at-commit') return;
      let isRevoked: boolean;
      try {
        isRevoked = await (revocationRead.read ??= this.deps.revocations.isRevoked(principal.certificateFingerprint, principal.serialHex));
      } catch (e) {
        throw refusalOf(e);
      }
      if (isRevoked) throw certificateRevokedError();
    };
    try {
      return await this.forwardDecided(principal, transactionId, raw, idempotencyHeader, sourceAddress, revocation === 'at-commit' ? revocationRead : undefined, decideRevocation);
    } catch (e) {
      if (!(isPaylogError(e) && e.code === 'CERTIFICATE_REVOKED')) await decideRevocation();
      throw e;
    }
  }

  /**
   * The first reads run together, in one statement (./first-reads.ts): the claim of the key in
   * the ledger (given back when the attempt is refused), the revocation (when `revocationRead`
   * asks for it), the record, its data key row, the destination row of the processor the
   * record's row names, and the log's granted entries with this key. Decisions are then taken
   * in the order of the contract.
   */
  private async forwardDecided(
    principal: Principal,
    transactionId: string,
    raw: unknown,
    idempotencyHeader: string | string[] | undefined,
    sourceAddress: string,
    revocationRead: { read?: Promise<boolean> } | undefined,
    decideRevocation: () => Promise<void>,
  ): Promise<ForwardAnswer> {
    authorize(principal, 'transaction:forward');
    if (!isTransactionId(transactionId)) throw new PaylogError('NOT_FOUND', 'no such transaction');
    const key = idempotencyKeyOf(idempotencyHeader);
    let parsed: ForwardRequest | undefined;
    let parseError: unknown;
    try {
      parsed = parseForwardRequest(raw);
    } catch (e) {
      parseError = e;
    }
    const mac = parsed ? forwardRequestMac(this.deps.macKey, transactionId, parsed) : undefined;
    const first = settle(readFirst(this.deps.database, this.deps.macKey, { transactionId, key, mac, destination: parsed?.destination, principal: revocationRead ? principal : undefined }));
    if (revocationRead) revocationRead.read = first.then((r) => (r.ok ? r.value.revoked : Promise.reject(r.error)));
    // A claim this attempt made is given back when the attempt is refused before its access entry.
    const giveBack = async () => {
      const c = await first;
      if (c.ok && c.value.claimed) await this.ledger.abandon(transactionId, key).catch(() => undefined);
    };
    try {
      await decideRevocation();
    } catch (e) {
      await giveBack();
      throw e;
    }
    const read = await first;
    const rowRead = read.ok ? read.value.record : read;
    const row = rowRead.ok ? rowRead.value : null;
    let req: ForwardRequest | undefined;
    let dest: Destination | undefined;
    let template: ParsedTemplate | undefined;
    try {
      if (!rowRead.ok) throw rowRead.error;
      if (!row) throw new PaylogError('NOT_FOUND', 'no such transaction');
      if (!parsed) throw parseError;
      req = parsed;
      dest = await this.deps.destinations.verified(row.view.processor, req.destination, read.ok ? read.value.destination : null);
      if (!dest.config.methods.includes(req.method) || !pathAllowed(dest.config.paths, req.path)) {
        throw new PaylogError('DESTINATION_NOT_ALLOWED', `destination ${req.destination} does not allow ${req.method} on this path`);
      }
      template = req.template !== undefined ? parseTemplate(req.template, req.kind!) : undefined;
    } catch (e) {
      const refusal = await this.denied(principal, transactionId, row !== null, req, refusalOf(e), sourceAddress, key);
      await giveBack();
      throw refusal;
    }
    if (!read.ok) throw refusalOf(read.error);
    let granted: Promise<Settled<GrantedKey | null>> = Promise.resolve({ ok: true, value: read.value.granted });
    // Not claimed by the first read: the ledger's own claim reads the row that holds the key.
    const claim = read.value.claimed ? { claimed: true } : await this.ledger.claim(transactionId, key, mac!).catch((e: unknown) => Promise.reject(refusalOf(e)));
    if (!claim.claimed) {
      const earlier = await this.retry(transactionId, key, mac!, dest);
      if (earlier !== 'taken-over') return earlier;
    }
    if (!read.value.claimed) granted = settle(grantedWithKey(this.deps.database, this.deps.macKey, transactionId, key)); // read again: the wait may have outlived the first read
    return await this.firstAttempt(principal, row, key, req, dest, template, sourceAddress, read.value.dataKey, granted);
  }

  /** Logs a refused attempt (denied access entry); returns the refusal to throw. */
  private async denied(principal: Principal, transactionId: string, exists: boolean, req: ForwardRequest | undefined, refusal: PaylogError, sourceAddress: string, key: string): Promise<PaylogError> {
    const loggedId = exists ? transactionId : unknownTransactionRef(this.deps.macKey, transactionId);
    try {
      await this.appendAccess(principal, loggedId, req, 'denied', refusal.code, sourceAddress, key);
    } catch (e) {
      return new PaylogError('LOG_UNAVAILABLE', 'the attempt could not be logged durably; nothing was sent', undefined, { cause: e });
    }
    return refusal;
  }

  private accessLeaf(principal: Principal, loggedId: string, req: ForwardRequest | undefined, outcome: 'granted' | 'denied', reason: string | undefined, sourceAddress: string, now: Date, key?: string): Buffer {
    return encodeLeaf(
      accessLeafV2({
        time: now,
        transactionId: loggedId,
        action: 'forward',
        principal,
        purpose: req?.purpose,
        reference: req?.reference,
        outcome,
        reason,
        sourceAddress,
        ...(req && key !== undefined ? { forward: { destination: req.destination, method: req.method, path: req.path, templateSha256: sha256(req.template ?? ''), keyMac: idempotencyKeyMac(this.deps.macKey, loggedId, key) } } : {}),
      }),
    );
  }

  private async appendAccess(principal: Principal, loggedId: string, req: ForwardRequest | undefined, outcome: 'granted' | 'denied', reason: string | undefined, sourceAddress: string, key: string) {
    const now = new Date();
    return await this.deps.appender.append({ kind: 'access', leaf: this.accessLeaf(principal, loggedId, req, outcome, reason, sourceAddress, now, key), createdAt: now, access: { transactionId: loggedId } });
  }

  /** Appends the result entry; resolves its log index, or null when it could not be made durable. */
  private async appendResult(transactionId: string, accessLogIndex: number, outcome: ForwardOutcome, r: { status?: number; durationMs: number; masked: number; error?: string }): Promise<number | null> {
    const now = new Date();
    const leaf = encodeLeaf(forwardResultLeaf({ time: now, transactionId, accessLogIndex, outcome, status: r.status, durationMs: r.durationMs, masked: r.masked, error: r.error }));
    try {
      const appended = await this.deps.appender.append({ kind: 'access', leaf, createdAt: now, access: { transactionId } });
      return 'logIndex' in appended ? appended.logIndex : null;
    } catch {
      return null; // verify-log shows the forward without its result
    }
  }

  private async firstAttempt(principal: Principal, row: TransactionRecord, key: string, req: ForwardRequest, dest: Destination, template: ParsedTemplate | undefined, sourceAddress: string,
    dataKey: DataKeyRow | undefined, grantedBefore: Promise<Settled<GrantedKey | null>>): Promise<ForwardAnswer> {
    const transactionId = row.transactionId;
    let plaintext: Buffer | undefined;
    let values: Partial<Record<PlaceholderName, string>>;
    try {
      plaintext = await openRecordWith(this.deps.recordKeys, row, dataKey);
      values = placeholderValues(JSON.parse(plaintext.toString('utf8')) as Record<string, unknown>, { transactionId, amount: row.view.amount });
      const missing = [...(template?.names ?? [])].find((n) => n !== 'card.cvc' && values[n] === undefined);
      if (missing) throw new PaylogError('TEMPLATE_INVALID', `{{${missing}}} has no value for this transaction's payment method`);
      if (template?.names.has('card.cvc') && values['card.number'] === undefined) throw new PaylogError('TEMPLATE_INVALID', '{{card.cvc}} is for card payment methods only');
    } catch (e) {
      plaintext?.fill(0);
      const refusal = isPaylogError(e) && e.code !== 'INTERNAL' ? e : isTransientDatabaseError(e) ? refusalOf(e) : new PaylogError('INTEGRITY_FAILURE', 'the stored record failed its integrity checks; nothing was sent');
      const logged = await this.denied(principal, transactionId, true, req, refusal, sourceAddress, key);
      await (logged === refusal ? this.ledger.finish(transactionId, key, 'pending', errorAnswer(refusal), null) : this.ledger.abandon(transactionId, key)).catch(() => undefined);
      throw logged;
    }
    plaintext.fill(0);

    // The ledger row is writable by the runtime role; the log is not. A key the log shows was
    // granted before is never sent again, whatever happened to its row.
    const grantedRead = await grantedBefore;
    if (!grantedRead.ok) {
      await this.ledger.abandon(transactionId, key).catch(() => undefined);
      throw new PaylogError('LOG_UNAVAILABLE', 'the log could not be read; nothing was sent', undefined, { cause: grantedRead.error });
    }
    const granted = grantedRead.value;
    if (granted) {
      const unknown = new PaylogError('FORWARD_OUTCOME_UNKNOWN', 'the log shows a forward with this Idempotency-Key already granted; it is never sent again');
      const resultLogIndex = granted.hasResult ? null : await this.appendResult(transactionId, granted.accessLogIndex, 'unknown', { durationMs: 0, masked: 0, error: unknown.code });
      await this.ledger.finish(transactionId, key, 'pending', errorAnswer(unknown), resultLogIndex).catch(() => undefined);
      throw unknown;
    }

    // The access entry: committed before any byte leaves, with the ledger row's move to `sent`.
    const now = new Date();
    let accessLogIndex: number, movedToSent: boolean;
    try {
      const appended = await this.deps.appender.append({
        kind: 'access',
        leaf: this.accessLeaf(principal, transactionId, req, 'granted', undefined, sourceAddress, now, key),
        createdAt: now,
        access: { transactionId },
        // The denied leaf is encoded only if a check fails.
        requires: keyMaterialRequires(keyMaterialOf(transactionId, row.envelope.key), () => this.accessLeaf(principal, transactionId, req, 'denied', 'DATA_SHREDDED', sourceAddress, now, key)),
        companion: markSentWith(transactionId, key),
      });
      if (appended.status !== 'appended') {
        const shredded = new PaylogError('DATA_SHREDDED', 'the card data of this transaction has been shredded');
        await this.ledger.finish(transactionId, key, 'pending', errorAnswer(shredded), null).catch(() => undefined);
        throw shredded;
      }
      accessLogIndex = appended.logIndex;
      movedToSent = appended.companion === true;
    } catch (e) {
      if (isPaylogError(e) && e.code === 'DATA_SHREDDED') throw e;
      await this.ledger.abandon(transactionId, key).catch(() => undefined);
      throw new PaylogError('LOG_UNAVAILABLE', 'the forward could not be logged durably; nothing was sent', undefined, { cause: e });
    }
    if (!movedToSent) throw new PaylogError('FORWARD_IN_PROGRESS', 'another attempt holds this Idempotency-Key');
    return await this.send(transactionId, key, req, dest, template, values, accessLogIndex);
  }

  /** After the access entry: CVC, fill, egress, mask, result entry, ledger. */
  private async send(transactionId: string, key: string, req: ForwardRequest, dest: Destination, template: ParsedTemplate | undefined, values: Partial<Record<PlaceholderName, string>>, accessLogIndex: number): Promise<ForwardAnswer> {
    const started = this.now();
    const elapsed = () => Math.round(this.now() - started);
    const fail = async (e: PaylogError, outcome: ForwardOutcome, status?: number): Promise<never> => {
      const resultLogIndex = await this.appendResult(transactionId, accessLogIndex, outcome, { ...(status !== undefined ? { status } : {}), durationMs: elapsed(), masked: 0, error: e.code });
      await this.ledger.finish(transactionId, key, 'sent', errorAnswer(e), resultLogIndex).catch(() => undefined);
      throw e;
    };
    if (template?.names.has('card.cvc')) {
      const cvc = await this.deps.takeCardSecurityCode(transactionId).catch(() => undefined);
      if (cvc === undefined) return await fail(new PaylogError('CVC_NOT_AVAILABLE', 'no card security code is held for this transaction (never submitted, already used, or expired); nothing was sent'), 'refused');
      values = { ...values, 'card.cvc': cvc };
    }
    let body: string | undefined;
    let substituted: Map<PlaceholderName, string> = new Map();
    try {
      if (template) ({ body, substituted } = fillTemplate(template, values));
    } catch (e) {
      return await fail(refusalOf(e), 'refused');
    }
    let res;
    try {
      const client = await this.pools.clientFor(dest);
      res = await client.request(`${dest.config.url}${req.path}`, { method: req.method, headers: req.headers, ...(body !== undefined ? { body } : {}) });
    } catch (e) {
      const failure = e instanceof EgressError || !isPaylogError(e) ? egressFailure(e) : e;
      return await fail(failure instanceof EgressError ? new PaylogError(failure.code, failure.message) : failure, 'failed');
    }
    const exact = [...substituted].filter(([n]) => MASKED_EXACT.has(n)).map(([, v]) => v);
    let masked: { body: string; headers: Record<string, string>; count: number };
    try {
      masked = maskAnswer(res.body, res.headers, exact, FORWARD_MAX_RESPONSE_BYTES);
    } catch (e) {
      return await fail(refusalOf(e), 'failed', res.status);
    }
    const durationMs = elapsed();
    const resultLogIndex = await this.appendResult(transactionId, accessLogIndex, 'completed', { status: res.status, durationMs, masked: masked.count });
    const answer: ForwardAnswer = { status: res.status, headers: masked.headers, body: masked.body, masked: masked.count, accessLogIndex, resultLogIndex, durationMs };
    // Not awaited: the answer does not wait for the ledger (a retry meanwhile waits for `done`;
    // a lost write leaves a `sent` row, which a retry after its stale time answers `unknown`).
    void this.ledger.finish(transactionId, key, 'sent', { kind: 'answer', answer }, resultLogIndex).catch(() => undefined);
    return answer;
  }

  /**
   * A retry of a claimed key: the recorded answer, a conflict, a bounded wait, `unknown` (a stale
   * `sent` row), or 'taken-over' (a stale `pending` row: nothing was sent; this attempt goes on).
   */
  private async retry(transactionId: string, key: string, mac: Buffer, dest: Destination): Promise<ForwardAnswer | 'taken-over'> {
    const deadline = Date.now() + FORWARD_RETRY_WAIT_MS;
    for (;;) {
      const row = await this.ledger.read(transactionId, key);
      if (!row) throw new PaylogError('FORWARD_IN_PROGRESS', 'the first attempt with this Idempotency-Key was given up; retry');
      if (!macEqual(row.requestMac, mac)) throw new PaylogError('IDEMPOTENCY_CONFLICT', 'this Idempotency-Key was used for a different forward request');
      if (row.state === 'done' && row.answer) {
        if (row.answer.kind === 'answer') return row.answer.answer;
        throw new PaylogError(row.answer.code as ErrorCode, row.answer.message);
      }
      if (row.ageMs > (row.state === 'pending' ? FORWARD_STALE_GRACE_MS : dest.config.timeoutMs + FORWARD_STALE_GRACE_MS)) {
        // The process that held it stopped between claiming and finishing: never sent again.
        const unknown = new PaylogError('FORWARD_OUTCOME_UNKNOWN', 'the first attempt with this Idempotency-Key stopped before its outcome was recorded; it is never sent again');
        if (row.state === 'pending') {
          if (await this.ledger.takeOver(transactionId, key, mac, FORWARD_STALE_GRACE_MS)) return 'taken-over';
          continue;
        }
        if (row.accessLogIndex !== null) {
          const resultLogIndex = await this.appendResult(transactionId, row.accessLogIndex, 'unknown', { durationMs: row.ageMs, masked: 0, error: unknown.code });
          await this.ledger.finish(transactionId, key, 'sent', errorAnswer(unknown), resultLogIndex);
        }
        continue;
      }
      if (Date.now() >= deadline) throw new PaylogError('FORWARD_IN_PROGRESS', 'a forward with this Idempotency-Key is still in flight; retry later');
      await sleep(RETRY_POLL_MS);
    }
  }
}
