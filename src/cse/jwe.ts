/**
 * Opening a client-side encrypted submission: `paymentMethod: { "type": "encrypted", "jwe" }`.
 *
 * ## Ciphertext format
 * JWE Compact Serialization (RFC 7516 §3.1, §7.1), `alg` = `ECDH-ES` (direct key agreement,
 * RFC 7518 §4.6, P-256), `enc` = `A256GCM` (RFC 7518 §5.3). Protected header:
 *
 * | member          | meaning                                                             |
 * |-----------------|---------------------------------------------------------------------|
 * | `alg`, `enc`    | exactly `ECDH-ES`, `A256GCM` (anything else → CSE_DECRYPT_FAILED)   |
 * | `kid`           | a key id from `GET /v1/cse/jwks.json`                               |
 * | `epk`           | the sender's ephemeral P-256 public key (RFC 7518 §4.6.1.1)         |
 * | `transactionId` | the submission's `transactionId` (binding)                          |
 * | `processor`     | the submission's `processor` (binding)                              |
 * | `iat`           | issue time, seconds since the epoch (binding; NumericDate)          |
 *
 * The plaintext is the UTF-8 JSON of one plaintext payment method (`card`, `us_bank_account`
 * or `iban`, exactly as in a plaintext submission).
 *
 * ## Order of checks (`open`)
 * 1. The body as sent passes steps 1–5 of the plaintext validation (SAD, reserved keys, schema
 *    with an encrypted payment method, card numbers in free text, currency).
 * 2. `kid` selects the key: unknown, retired past its overlap or not yet valid → CSE_KEY_UNKNOWN.
 * 3. Authenticated decryption (AES-GCM over ciphertext and the protected header as AAD,
 *    RFC 7516 §5.2 steps 14–16). Any failure — tampering, wrong key, other algorithms, bad
 *    encoding — → CSE_DECRYPT_FAILED, with no further detail.
 * 4. ONLY THEN the binding, read from the now-authenticated header: `transactionId` and
 *    `processor` MUST equal the body's → else CSE_BINDING_MISMATCH; `iat` MUST be no older than
 *    the maximum age on paylog's clock (`PAYLOG_CSE_MAX_AGE_S`, default 900 s) and no more than
 *    `CSE_MAX_FUTURE_IAT_S` ahead of it → else CSE_EXPIRED.
 * 5. The plaintext must be a JSON object (else VALIDATION_FAILED); the caller then validates
 *    the reassembled plaintext body exactly like a plaintext submission.
 *
 * Errors never contain header values, plaintext or ciphertext.
 */
import { compactDecrypt } from 'jose';
import { PaylogError, isPaylogError } from '../errors.js';
import { assertStorableStrings } from '../validation/encoding.js';
import { isEncryptedSubmission, validateEncryptedTransactionRequest } from '../validation/transaction.js';
import type { CseKeyStore } from './keys.js';
import { CSE_CONTENT_ENCRYPTION_ALGORITHM, CSE_KEY_MANAGEMENT_ALGORITHM } from './p256-key.js';

/** How far ahead of paylog's clock an `iat` may be (browser clocks are a little off). */
const CSE_MAX_FUTURE_IAT_S = 5 * 60;

/** What the transaction leaf records about a client-side encrypted submission. */
export interface CseMarker {
  /** The key id the JWE was encrypted to. */
  kid: string;
}

interface OpenedSubmission {
  /** The body to validate: as sent, with the decrypted payment method in place of the JWE. */
  body: unknown;
  /** Null for a plaintext submission. */
  cse: CseMarker | null;
}

interface JweBinding {
  transactionId: string;
  processor: string;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Step 4: the binding in the authenticated protected header (module doc). */
function checkJweBinding(header: Record<string, unknown>, expected: JweBinding, now: Date, maxAgeS: number): void {
  if (header['transactionId'] !== expected.transactionId || header['processor'] !== expected.processor) {
    throw new PaylogError('CSE_BINDING_MISMATCH', 'the JWE was encrypted for another transaction or processor');
  }
  const iat = header['iat'];
  if (typeof iat !== 'number' || !Number.isSafeInteger(iat)) {
    throw new PaylogError('CSE_BINDING_MISMATCH', 'the JWE protected header has no issue time (iat, integer seconds)');
  }
  const nowS = Math.floor(now.getTime() / 1000);
  if (nowS - iat > maxAgeS) {
    throw new PaylogError('CSE_EXPIRED', `the JWE is older than ${maxAgeS} seconds; encrypt again`, { maxAgeSeconds: maxAgeS });
  }
  if (iat - nowS > CSE_MAX_FUTURE_IAT_S) {
    throw new PaylogError('CSE_EXPIRED', 'the JWE issue time is in the future; check the client clock and encrypt again');
  }
}

/** Step 5: the decrypted bytes as a JSON object; the bytes are zeroed. */
function parseDecryptedPaymentMethod(plaintext: Uint8Array): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(UTF8.decode(plaintext));
  } catch {
    // fall through: never report what the content was
  } finally {
    plaintext.fill(0);
  }
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    // The same rule as for every request body (the server's hook never saw these bytes).
    assertStorableStrings(v, 'encrypted payment method');
    return v as Record<string, unknown>;
  }
  throw new PaylogError('VALIDATION_FAILED', 'Request body failed validation', {
    issues: [{ path: 'paymentMethod', code: 'encrypted_content_not_a_json_object' }],
  });
}

export class ClientSideDecryption {
  constructor(
    private readonly keys: CseKeyStore,
    private readonly settings: { maxAgeS: number },
  ) {}

  /**
   * Opens `raw` if it is a client-side encrypted submission (module doc, steps 1–5); plaintext
   * submissions pass through unchanged. Throws PaylogError only.
   */
  async open(raw: unknown, now = new Date()): Promise<OpenedSubmission> {
    if (!isEncryptedSubmission(raw)) return { body: raw, cse: null };
    const outer = validateEncryptedTransactionRequest(raw);
    let kid = '';
    let result;
    try {
      result = await compactDecrypt(
        outer.paymentMethod.jwe,
        async (header) => {
          const key = await this.keys.privateKeyFor(header.kid, now);
          kid = header.kid as string;
          return key;
        },
        { keyManagementAlgorithms: [CSE_KEY_MANAGEMENT_ALGORITHM], contentEncryptionAlgorithms: [CSE_CONTENT_ENCRYPTION_ALGORITHM] },
      );
    } catch (e) {
      if (isPaylogError(e)) throw e; // CSE_KEY_UNKNOWN, KMS_UNAVAILABLE from the key lookup
      throw new PaylogError('CSE_DECRYPT_FAILED', 'the JWE could not be decrypted (tampered, truncated, or not encrypted to a paylog key)');
    }
    try {
      checkJweBinding(result.protectedHeader as Record<string, unknown>, outer, now, this.settings.maxAgeS);
    } catch (e) {
      result.plaintext.fill(0);
      throw e;
    }
    const paymentMethod = parseDecryptedPaymentMethod(result.plaintext);
    return { body: { ...(raw as Record<string, unknown>), paymentMethod }, cse: { kid } };
  }
}
