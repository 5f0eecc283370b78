/**
 * pino logger with card-data redaction (PCI DSS 3.5.1 / 10.3: no PAN, account number, CVV or
 * key material in logs). Request and response bodies are never logged; the redaction paths are
 * a second line of defence for anything that names such a field.
 */
import pino, { type DestinationStream, type Logger } from 'pino';

export const REDACT_PATHS = [
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
