/**
 * How a failed AWS KMS call becomes a PaylogError (the error contract of src/kms/client.ts):
 * InvalidCiphertextException / IncorrectKeyException / KMSInvalidSignatureException →
 * `INTEGRITY_FAILURE`; no HTTP response (network, timeout, credentials), 5xx, throttling, and key
 * or permission states that make the configured key unusable → `KMS_UNAVAILABLE`; anything else
 * (a request paylog should never have built, e.g. ValidationException) → `INTERNAL`.
 *
 * MUST: keep the SDK error as `cause` and name only the operation and the KMS error name.
 * MUST NOT: put key material, plaintext or server-chosen text other than a plain error name into
 *       a message or details.
 */
import { PaylogError, type ErrorCode } from '../errors.js';

const INTEGRITY_ERRORS = new Set(['InvalidCiphertextException', 'IncorrectKeyException', 'KMSInvalidSignatureException']);
const UNAVAILABLE_ERRORS = new Set([
  'ThrottlingException',
  'ThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'LimitExceededException',
  'KMSInternalException',
  'DependencyTimeoutException',
  'KeyUnavailableException',
  'NotFoundException',
  'DisabledException',
  'KMSInvalidStateException',
  'AccessDeniedException',
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'ExpiredTokenException',
  'TimeoutError',
  'RequestTimeout',
]);

/** Decide the PaylogError code for a failed KMS call (contract above). */
function classifyKmsError(e: unknown): ErrorCode {
  const err = (e ?? {}) as { name?: unknown; $fault?: unknown; $metadata?: { httpStatusCode?: number } };
  const name = typeof err.name === 'string' ? err.name : '';
  if (INTEGRITY_ERRORS.has(name)) return 'INTEGRITY_FAILURE';
  if (UNAVAILABLE_ERRORS.has(name)) return 'KMS_UNAVAILABLE';
  const status = err.$metadata?.httpStatusCode;
  if (status === undefined || status >= 500 || status === 429 || err.$fault === 'server') return 'KMS_UNAVAILABLE';
  return 'INTERNAL';
}

/** The KMS error name, if it is a plain identifier (never anything the server could smuggle in). */
export function kmsErrorName(e: unknown): string {
  const n = (e as { name?: unknown } | null)?.name;
  return typeof n === 'string' && /^[A-Za-z0-9_.]{1,100}$/.test(n) ? n : 'Error';
}

/** A failed KMS call as a PaylogError naming the operation and the KMS error, with the SDK error as cause. */
export function toPaylogError(operation: string, e: unknown): PaylogError {
  const name = kmsErrorName(e);
  const status = (e as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
  return new PaylogError(
    classifyKmsError(e),
    `KMS ${operation} failed: ${name}`,
    { kmsOperation: operation, kmsError: name, ...(status !== undefined ? { httpStatus: status } : {}) },
    { cause: e },
  );
}
