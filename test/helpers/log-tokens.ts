/**
 * Log-line search for a short secret (a CVC): the secret counts as present when it is a token of its own.
 *
 * Tokens are split at every character other than letters, digits, '.' and '-', so a request id (UUID),
 * a certificate fingerprint (hex) or a response time that happens to contain the same four digits is one
 * longer token and not a false alarm. A leak such as `"cvc":"8315"`, `cvc=8315` or `code 8315` is found.
 */
export function logLinesWithToken(lines: readonly string[], secret: string): string[] {
  return lines.filter((line) => line.split(/[^0-9A-Za-z.-]+/).includes(secret));
}
