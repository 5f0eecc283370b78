/**
 * Sealing one validated submission and appending its transaction leaf: the payment method is
 * sealed by the record keyring (src/keys/record-keys.ts), the leaf built from the masked view and
 * the sealed record, and the entry handed to the appender with its commit-time preconditions.
 *
 * Contracts:
 * - The plaintext payment method exists only for the seal and is zeroed right after, whatever
 *   the seal's outcome. Nothing derived from card data other than the masked view and the
 *   sealed record goes into the leaf; the v2 fingerprint goes to the lookup row only.
 * - The entry MUST carry `submissionRequires` (src/services/append-preconditions.ts): the
 *   submitter not revoked, the processor active and (hierarchical mode) the epoch still
 *   encrypting, decided under the append lock at commit.
 * - This module MUST NOT answer the submission: the outcome (created, replayed, conflict,
 *   refused) is returned as the appender gave it; idempotency, revocation and the retry are
 *   decided by src/services/transactions.ts. It never chooses an envelope version.
 */
import { createHash } from 'node:crypto';
import type { Principal } from '../auth/principal.js';
import type { TransactionRequest } from '../validation/transaction.js';
import type { MaskedPaymentMethod } from '../validation/masking.js';
import { canonicalJson } from '../crypto/canonical-json.js';
import { fingerprintV2Digest } from '../crypto/fingerprint.js';
import type { RecordKeyring, SealedRecord } from '../keys/record-keys.js';
import { encodeLeaf, transactionLeaf } from '../log/leaf.js';
import type { Appender } from '../log/appender.js';
import type { CseMarker } from '../cse/jwe.js';
import { submissionRequires } from './append-preconditions.js';
import { transactionKeyRef } from './transaction-record.js';

interface SealDeps {
  appender: Appender;
  recordKeys: RecordKeyring;
  /** Key of v2 fingerprints (absent: no fingerprint is stored; unit tests only). */
  fingerprintKey?: Buffer | undefined;
}

/**
 * Bytes of the idempotency MAC stored in `transactions.request_mac` (issue 20, storage): the
 * first 8 of the 32-byte served MAC. The stored value authenticates nothing: it only lets the
 * append tell a replay from a conflict under its lock, and the service then decides either from
 * the record's leaf (src/services/transactions.ts `replayOrConflict`, which recomputes the
 * served MAC of the stored view), so a shorter — or, for rows from before, longer (16 since
 * storage3, 32 before) — stored MAC changes no answer: a conflict whose 8 bytes happen to match
 * (2^-64) only costs the replay's leaf-hash read. 8 bytes instead of 16 take exactly 8 off the
 * row (nothing after it is aligned).
 */
export const STORED_REQUEST_MAC_BYTES = 8;

/**
 * Id of a key-wrap window's `key_wrap_windows` row: the first 8 bytes of SHA-256(enc) as a
 * signed bigint (decimal). Derived from the enc itself, so a row planted under a future id
 * would have to guess a fresh HPKE encapsulation.
 */
function keyWrapWindowId(enc: Buffer): string {
  return createHash('sha256').update(enc).digest().readBigInt64BE(0).toString();
}

/**
 * The `data_keys` columns of a sealed record (issue 20, storage): a window-form wrapped key is
 * stored as its window's `enc` once (`key_wrap_windows`) and the rest in the record's row; the
 * readers put them back together (src/services/transaction-queries.ts `WRAPPED_KEY_SQL`), so
 * `wrappedKey` as read is byte for byte what the leaf's `wk` hashes.
 */
function storedWrappedKey(s: Pick<SealedRecord, 'wrappedKey' | 'windowEnc'>): { wrappedKey: Buffer; window?: { id: string; enc: Buffer } } {
  const enc = s.windowEnc;
  if (!enc || !s.wrappedKey.subarray(0, enc.length).equals(enc)) return { wrappedKey: s.wrappedKey };
  return { wrappedKey: s.wrappedKey.subarray(enc.length), window: { id: keyWrapWindowId(enc), enc } };
}

/** One sealed submission: what the appender answered and the key the record was sealed under. */
interface SealedAppend {
  outcome: Awaited<ReturnType<Appender['append']>>;
  keyRef: SealedRecord['keyRef'];
}

/**
 * Seals `req`'s payment method (to `currentKeyId` when the pre-check read it: null = none yet,
 * undefined = not read), builds its transaction leaf at `now` and appends it with the
 * idempotency MAC `mac`. Resolves when the appender has answered (committed or not).
 */
export async function sealAndAppend(
  d: SealDeps,
  principal: Principal,
  submission: { req: TransactionRequest; masked: MaskedPaymentMethod; mac: Buffer; cse: CseMarker | null },
  now: Date,
  currentKeyId: string | null | undefined,
): Promise<SealedAppend> {
  const { req, masked, mac, cse } = submission;
  const binding = { transactionId: req.transactionId, processor: req.processor };
  const plaintext = Buffer.from(canonicalJson(req.paymentMethod), 'utf8');
  let envelope: SealedRecord;
  try {
    envelope = await d.recordKeys.seal(binding, plaintext, { now, ...(currentKeyId !== undefined ? { currentKeyId } : {}) });
  } finally {
    plaintext.fill(0);
  }
  const keyRef = envelope.keyRef;
  const createdAt = now;
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
        ...(envelope.epochPublicKeySha256 ? { epochPublicKeySha256: envelope.epochPublicKeySha256 } : {}),
      },
    }),
  );
  const outcome = await d.appender.append({
    kind: 'transaction',
    leaf,
    createdAt,
    transaction: {
      transactionId: req.transactionId,
      requestMac: mac.subarray(0, STORED_REQUEST_MAC_BYTES),
      processor: req.processor,
      ...(d.fingerprintKey ? { fingerprint: fingerprintV2Digest(d.fingerprintKey, req.processor, req.paymentMethod) } : {}),
    },
    dataKey: { ...storedWrappedKey(envelope), kmsKeyId: keyRef.kmsKeyId ?? null, epochId: keyRef.epochId ?? null },
    requires: submissionRequires({
      principal: { certificateFingerprint: principal.certificateFingerprint, serialHex: principal.serialHex },
      processor: req.processor,
      ...(keyRef.epochId ? { epochId: keyRef.epochId } : {}),
    }),
  });
  return { outcome, keyRef };
}
