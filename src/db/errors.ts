/**
 * Which database failures are transient (the log is unavailable right now; the same request may
 * succeed later) — one rule, used by the appender, the services and the HTTP error mapping.
 *
 * Transient (answered 503 LOG_UNAVAILABLE with Retry-After, never 4xx and never 500):
 * - SQLSTATE class 08 (connection exception), 57P01–57P03 (admin/crash shutdown, cannot connect
 *   now: starting up, shutting down, in recovery), 53300 (too many connections), 3D000 (database
 *   does not exist yet);
 * - 57014 query_canceled (statement_timeout), 55P03 lock_not_available (lock_timeout, also for
 *   the append advisory lock), 25P03 idle_in_transaction_session_timeout, 40001 / 40P01
 *   (serialization failure / deadlock: safe to retry);
 * - socket errors (ECONNREFUSED, ECONNRESET, EPIPE, ETIMEDOUT, EHOSTUNREACH) and the node-postgres
 *   messages for a lost, closed or timed-out connection.
 */
import { isPaylogError } from '../errors.js';

const TRANSIENT_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '3D000', '57014', '55P03', '25P03', '40001', '40P01']);
const TRANSIENT_SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);
/** node-postgres / pg-pool wording for connections that are gone, closed or never came. */
const TRANSIENT_MESSAGE =
  /Connection terminated|connection timeout|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|Client was closed and is not queryable|not currently accepting connections|terminating connection/i;

/** True when `e` (or one of its causes: drizzle wraps driver errors) is a transient database failure. */
export function isTransientDatabaseError(e: unknown, depth = 0): boolean {
  if (e === null || typeof e !== 'object') return false;
  // Already classified (e.g. a KMS failure whose cause is a socket error): trust the code.
  if (isPaylogError(e)) return e.code === 'LOG_UNAVAILABLE';
  const cause = (e as { cause?: unknown }).cause;
  if (cause !== undefined && depth < 4 && isTransientDatabaseError(cause, depth + 1)) return true;
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' && (code.startsWith('08') || TRANSIENT_SQLSTATES.has(code) || TRANSIENT_SOCKET_CODES.has(code))) return true;
  const msg = (e as { message?: unknown }).message;
  return typeof msg === 'string' && TRANSIENT_MESSAGE.test(msg);
}
