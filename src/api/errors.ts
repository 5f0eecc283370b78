/**
 * The one mapping from error codes to HTTP. Every error response is
 * `{ "error": { "code", "message" } }`; messages are ours, never a stack, never input data.
 */
import type { FastifyError } from 'fastify';
import { PaylogError, isPaylogError, type ErrorCode } from '../errors.js';
import { isTransientDatabaseError } from '../db/errors.js';

/**
 * Every 503 carries `Retry-After` (RFC 9110 §10.2.3), in seconds: the log, its database or KMS
 * is unavailable right now, or the request ran out of its time budget. Retrying the same
 * request is safe (submissions are idempotent by transactionId).
 */
export const RETRY_AFTER_SECONDS = 1;

export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  BAD_REQUEST: 400,
  // NUL, lone surrogates or bytes that are not UTF-8: PostgreSQL could not store them.
  INVALID_ENCODING: 400,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  VALIDATION_FAILED: 422,
  SENSITIVE_AUTHENTICATION_DATA: 422,
  INVALID_CARD_NUMBER: 422,
  CARD_EXPIRED: 422,
  INVALID_ROUTING_NUMBER: 422,
  INVALID_IBAN: 422,
  UNSUPPORTED_CURRENCY: 422,
  UNKNOWN_PROCESSOR: 422,
  IDEMPOTENCY_CONFLICT: 409,
  CLIENT_CERTIFICATE_REQUIRED: 401,
  CERTIFICATE_REVOKED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  RATE_LIMITED: 429,
  // Carries Retry-After: the end of the hour the limit counts (src/services/probe-limit.ts).
  PROBE_LIMIT_EXCEEDED: 429,
  LOG_UNAVAILABLE: 503,
  KMS_UNAVAILABLE: 503,
  // A stored record failing its integrity checks is refused without a 5xx and without data.
  INTEGRITY_FAILURE: 422,
  // Card data destroyed by crypto-shredding (retention or an admin shred): gone for good.
  DATA_SHREDDED: 410,
  INCONSISTENT_TREE: 503,
  INTERNAL: 500,
  // Client-side encryption: the request is well-formed but its JWE cannot be used (never a 5xx).
  CSE_KEY_UNKNOWN: 422,
  CSE_DECRYPT_FAILED: 422,
  CSE_BINDING_MISMATCH: 422,
  CSE_EXPIRED: 422,
  // Forwards: the request is refused before egress (4xx), or the destination failed (502/504:
  // paylog is a gateway here). FORWARD_OUTCOME_UNKNOWN: a crash between egress and the result
  // entry; never re-sent.
  TEMPLATE_INVALID: 422,
  DESTINATION_NOT_ALLOWED: 403,
  CVC_NOT_AVAILABLE: 422,
  FORWARD_IN_PROGRESS: 409,
  FORWARD_OUTCOME_UNKNOWN: 502,
  DESTINATION_UNREACHABLE: 502,
  DESTINATION_TIMEOUT: 504,
  DESTINATION_TLS_FAILED: 502,
  DESTINATION_RESPONSE_TOO_LARGE: 502,
  DESTINATION_RESPONSE_UNREADABLE: 502,
};

export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: Record<string, unknown> };
}

/** Converts anything thrown into a PaylogError without leaking its message. */
export function toPaylogError(e: unknown): PaylogError {
  if (isPaylogError(e)) return e;
  const fe = e as Partial<FastifyError> & { type?: string };
  switch (fe?.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new PaylogError('PAYLOAD_TOO_LARGE', 'request body is too large');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new PaylogError('UNSUPPORTED_MEDIA_TYPE', 'request body must be application/json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new PaylogError('BAD_REQUEST', 'request body is not valid JSON');
  }
  if (isTransientDatabaseError(e)) {
    return new PaylogError('LOG_UNAVAILABLE', 'the log database is unavailable; retry later', undefined, { cause: e });
  }
  if (fe?.statusCode === 400 || e instanceof SyntaxError) return new PaylogError('BAD_REQUEST', 'malformed request');
  if (fe?.statusCode === 404) return new PaylogError('NOT_FOUND', 'no such route');
  if (fe?.statusCode === 413) return new PaylogError('PAYLOAD_TOO_LARGE', 'request body is too large');
  if (fe?.statusCode === 415) return new PaylogError('UNSUPPORTED_MEDIA_TYPE', 'request body must be application/json');
  return new PaylogError('INTERNAL', 'internal error', undefined, { cause: e });
}

/** The Retry-After value (seconds) an answer with this error carries, if any. */
export function retryAfterSeconds(e: PaylogError): number | undefined {
  const given = e.details?.retryAfterSeconds;
  if (typeof given === 'number' && Number.isInteger(given) && given >= 0) return given;
  return HTTP_STATUS[e.code] === 503 ? RETRY_AFTER_SECONDS : undefined;
}

export function errorResponse(e: PaylogError): { status: number; body: ErrorBody; headers: Record<string, string> } {
  const retryAfter = retryAfterSeconds(e);
  return {
    status: HTTP_STATUS[e.code],
    headers: retryAfter !== undefined ? { 'retry-after': String(retryAfter) } : {},
    body: { error: { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) } },
  };
}
