/**
 * Pure checks of key rows read back from the database before the key lifecycle acts on them.
 * The runtime role may INSERT `key_epochs`, `transactions` and `data_keys` rows, so a row may
 * have been planted and may hold anything.
 *
 * Contracts:
 * - A row that fails a check MUST be skipped and reported (never rewrapped, never acted on);
 *   one bad row never stops a batch.
 * - A row's id is reported or logged only through {@link safeRowRef}: as itself if it has the
 *   shape of such ids, else as a digest.
 * - Key-period arithmetic is src/keys/periods.ts; nothing here re-derives it.
 * - Pure: no I/O.
 */
import { createHash } from 'node:crypto';
import { PaylogError, isPaylogError } from '../errors.js';
import { decodeLeaf } from '../log/leaf.js';
import { periodOf } from '../keys/periods.js';
import { epochIdOf, type EpochGranularity, type EpochRow } from '../kms/epoch-names.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest();

/** KMS errors that concern the wrapped key of ONE row (its blob, context or source key), once the target key is known to be enabled. */
const ROW_KMS_ERRORS = new Set([
  'InvalidCiphertextException',
  'IncorrectKeyException',
  'NotFoundException',
  'DisabledException',
  'KMSInvalidStateException',
  'InvalidKeyUsageException',
  'AccessDeniedException',
  'ValidationException',
]);

/** Why KMS refused to rewrap one row (e.g. `KMS InvalidCiphertextException`), or null for a failure that is not about the row (KMS unavailable: the batch stops). */
export function rowKmsRefusal(e: unknown): string | null {
  const name = isPaylogError(e) ? e.details?.kmsError : undefined;
  return typeof name === 'string' && ROW_KMS_ERRORS.has(name) ? `KMS ReEncrypt refused it (${name})` : null;
}

/** An id as it may be reported and logged: itself if it has the shape of such ids, else a digest (a planted row may hold anything). */
export function safeRowRef(id: string, shape: RegExp): string {
  return shape.test(id) ? id : `sha256:${sha256(Buffer.from(id, 'utf8')).toString('hex').slice(0, 32)}`;
}

/**
 * Why an epoch row cannot be rewrapped as it stands, or null. A row made by the service names
 * its own period (epoch id = `<processor>/<period label>/<generation>`, bounds = one whole
 * period), holds a wrapped private key matching its recorded digest, the KMS key wrapping it,
 * and a 32-byte X25519 public key. (KMS then checks the blob against the epoch id and public
 * key in its encryption context.)
 */
export function epochRowProblem(e: EpochRow): string | null {
  if (e.granularity !== 'month' && e.granularity !== 'day' && e.granularity !== 'hour') return 'unknown granularity';
  const period = periodOf(new Date(e.period_start), e.granularity as EpochGranularity);
  if (period.start.getTime() !== new Date(e.period_start).getTime() || period.end.getTime() !== new Date(e.period_end).getTime()) return 'its bounds are not one whole key period';
  if (epochIdOf(e.processor, period, e.generation) !== e.epoch_id) return 'its epoch id does not name its processor, period and generation';
  if (e.wrapped_private_key === null || e.kms_key_id === null) return 'it holds no wrapped key';
  if (e.wrapped_key_sha256 !== null && !sha256(Buffer.from(e.wrapped_private_key)).equals(Buffer.from(e.wrapped_key_sha256))) return 'its wrapped key does not match its digest';
  if (e.public_key === null || Buffer.from(e.public_key).length !== 32) return 'its public key is not 32 bytes';
  return null;
}

/** The processor of a transaction, from its leaf (format v2 lookup rows hold no processor column). */
export function processorOfLeaf(leaf: Buffer | null): string {
  if (leaf === null) throw new PaylogError('INTEGRITY_FAILURE', 'no transaction leaf');
  const l = decodeLeaf(leaf) as { type: string; p?: string; processor?: string };
  const p = l.p ?? l.processor;
  if (l.type !== 'transaction' || typeof p !== 'string') throw new PaylogError('INTEGRITY_FAILURE', 'transaction leaf without a processor');
  return p;
}
