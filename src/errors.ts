/**
 * The one error type of paylog. Every failure that reaches a caller is a PaylogError with a
 * stable machine code; the HTTP status for each code is decided in one place
 * (`src/api/errors.ts`). Messages never contain card or account numbers.
 */
export const ERROR_CODES = [
  'BAD_REQUEST',
  'INVALID_ENCODING',
  'PAYLOAD_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'VALIDATION_FAILED',
  'SENSITIVE_AUTHENTICATION_DATA',
  'INVALID_CARD_NUMBER',
  'CARD_EXPIRED',
  'INVALID_ROUTING_NUMBER',
  'INVALID_IBAN',
  'UNSUPPORTED_CURRENCY',
  'UNKNOWN_PROCESSOR',
  'IDEMPOTENCY_CONFLICT',
  'CLIENT_CERTIFICATE_REQUIRED',
  'CERTIFICATE_REVOKED',
  'FORBIDDEN',
  'NOT_FOUND',
  'RATE_LIMITED',
  // Issue 17: too many distinct payment methods agreeing on every served field (a probe).
  'PROBE_LIMIT_EXCEEDED',
  'LOG_UNAVAILABLE',
  'KMS_UNAVAILABLE',
  'INTEGRITY_FAILURE',
  'DATA_SHREDDED',
  'INCONSISTENT_TREE',
  'INTERNAL',
  // Client-side encryption (src/cse): the JWE could not be accepted.
  'CSE_KEY_UNKNOWN',
  'CSE_DECRYPT_FAILED',
  'CSE_BINDING_MISMATCH',
  'CSE_EXPIRED',
  // Forwards (issue 18): refused before anything left, or what the destination did.
  'TEMPLATE_INVALID',
  'DESTINATION_NOT_ALLOWED',
  'CVC_NOT_AVAILABLE',
  'FORWARD_IN_PROGRESS',
  'FORWARD_OUTCOME_UNKNOWN',
  'DESTINATION_UNREACHABLE',
  'DESTINATION_TIMEOUT',
  'DESTINATION_TLS_FAILED',
  'DESTINATION_RESPONSE_TOO_LARGE',
  'DESTINATION_RESPONSE_UNREADABLE',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class PaylogError extends Error {
  override readonly name = 'PaylogError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Non-sensitive structured details (field paths, limits); never card data. */
    readonly details?: Record<string, unknown>,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isPaylogError(e: unknown): e is PaylogError {
  return e instanceof PaylogError;
}
