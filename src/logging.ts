/**
 * pino logger with card-data redaction (PCI DSS 3.5.1 / 10.3: no PAN, account number, CVV or
 * key material in logs). Request and response bodies are never logged; the redaction paths are
 * a second line of defence for anything that names such a field.
 */
import pino, { type DestinationStream, type Logger } from 'pino';

const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'body',
  '*.body',
  'paymentMethod',
  '*.paymentMethod',
  'pan',
  '*.pan',
  'accountNumber',
  '*.accountNumber',
  'iban',
  '*.iban',
  'cvv',
  '*.cvv',
  'cvc',
  '*.cvc',
  'plaintext',
  '*.plaintext',
  'dataKey',
  '*.dataKey',
  'privateKey',
  '*.privateKey',
];

export type { Logger };

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'paylog' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: {
        err: pino.stdSerializers.err,
      },
    },
    destination,
  );
}

/** Longest error message kept in a log line. */
const LOGGED_MESSAGE_MAX = 300;
/**
 * Log scrubbing, deliberately broader than the PAN rule of src/validation/identifiers.ts (no
 * Luhn, no length window): any 6+ characters of digits and separators between two digits.
 */
const DIGIT_RUN = /\d[\d .-]{4,}\d/g;
const IBAN_LIKE = /\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){10,30}\b/gi;

/**
 * An error message fit for a log line: any run of 6 or more digits (card, account and routing
 * numbers, with or without separators) and anything shaped like an IBAN is replaced, and the
 * text is cut at LOGGED_MESSAGE_MAX. A driver message can quote input ("invalid input syntax
 * for type bigint: \"4111…\""); this keeps the cause readable without the data.
 */
function scrubMessage(message: string): string {
  const cut = message.length > LOGGED_MESSAGE_MAX ? `${message.slice(0, LOGGED_MESSAGE_MAX)}…` : message;
  return cut.replace(IBAN_LIKE, '[redacted]').replace(DIGIT_RUN, '[digits]');
}

interface LoggedError {
  type: string;
  code?: string;
  message: string;
  cause?: LoggedError;
}

/**
 * What is logged of an error (and its causes, up to 4 deep): type, code and scrubbed message;
 * never the stack's data, never a driver's `detail`/`where` fields or query parameters (drizzle
 * puts the SQL and its parameters into its message; only the driver's own message is kept).
 */
export function errorForLog(e: unknown, depth = 0): LoggedError {
  const o = (e ?? {}) as { name?: unknown; code?: unknown; message?: unknown; cause?: unknown };
  const type = typeof o.name === 'string' ? o.name.slice(0, 100) : typeof e;
  const code = typeof o.code === 'string' || typeof o.code === 'number' ? String(o.code).slice(0, 100) : undefined;
  const raw = typeof o.message === 'string' ? o.message : typeof e === 'string' ? e : '';
  const message = /^Failed query:/.test(raw) ? 'database query failed' : scrubMessage(raw);
  const cause = o.cause !== undefined && o.cause !== null && depth < 4 ? errorForLog(o.cause, depth + 1) : undefined;
  return { type, ...(code !== undefined ? { code } : {}), message, ...(cause ? { cause } : {}) };
}
