/**
 * The KMS backend interface: every key operation paylog asks of a key-management service.
 * paylog's code depends on THIS type, never on a concrete backend; the AWS KMS backend
 * (`src/kms/client.ts` `PaylogKms`) is one implementation, a test-only local backend
 * (test/helpers/local-wrap-backend.ts) is another. Adding a backend (PKCS#11 HSM, GCP KMS,
 * Vault Transit) is one new file implementing this interface plus its construction in the
 * composition root (src/app.ts).
 *
 * Contracts every implementation MUST keep:
 * - Buffers in, Buffers out. Plaintext returned is a fresh Buffer the CALLER owns and zeroes;
 *   the backend keeps no copy.
 * - Every failure is a `PaylogError`: a blob of another key, a wrong encryption context or a bad
 *   signature → `INTEGRITY_FAILURE`; the service or the key unusable (unreachable, throttled,
 *   disabled, pending deletion, access denied) → `KMS_UNAVAILABLE`; anything else → `INTERNAL`.
 *   `details.kmsError` names the backend's error in AWS KMS terms where the callers decide on it
 *   (`NotFoundException`, `KMSInvalidStateException`, `AlreadyExistsException`).
 * - An encryption context is authenticated with the wrapped blob: unwrapping with any other
 *   context, or naming any other key id, MUST fail with `INTEGRITY_FAILURE`.
 * - Messages name the operation and the error name only, MUST NOT contain key material or
 *   plaintext.
 */

/** KMS key metadata paylog reads at start-up (readiness uses `ping`). */
export interface KmsKeyDescription {
  arn?: string;
  keySpec?: string;
  keyUsage?: string;
  enabled: boolean;
  keyState?: string;
}

/** Key specs paylog creates (dev setup, per-period and per-CSE-key keys). */
export type KmsKeySpec = 'SYMMETRIC_DEFAULT' | 'ECC_NIST_EDWARDS25519';

export interface KmsBackend {
  /** A fresh 32-byte data key (plaintext, caller zeroes) and its wrapped form; `keyId` = key ARN. */
  generateDataKey(keyId: string, context: Record<string, string>): Promise<{ plaintext: Buffer; wrappedKey: Buffer; keyId: string }>;
  /** Unwraps a 32-byte data key; MUST refuse a blob of any key but `keyId` (caller zeroes the result). */
  decryptDataKey(wrappedKey: Buffer, context: Record<string, string>, keyId: string): Promise<Buffer>;
  /** Wraps up to 4096 bytes directly under `keyId`, bound to `context`. */
  encrypt(keyId: string, plaintext: Buffer, context: Record<string, string>): Promise<Buffer>;
  /** Rewraps a blob inside the backend (the plaintext never leaves it). */
  reEncrypt(blob: Buffer, sourceContext: Record<string, string>, destKeyId: string, destContext?: Record<string, string>): Promise<Buffer>;
  /** Rewraps a blob of the NAMED source key only; returns both key ARNs as the backend reports them. */
  reEncryptFrom(blob: Buffer, context: Record<string, string>, sourceKeyId: string, destKeyId: string): Promise<{ blob: Buffer; sourceKeyId: string; keyId: string }>;
  /** Ed25519 signature (64 bytes) over `message`. */
  sign(keyId: string, message: Buffer): Promise<Buffer>;
  /** The signing key's public key as DER SubjectPublicKeyInfo. */
  getPublicKeySpki(keyId: string): Promise<Buffer>;
  /** The signing key's raw 32-byte Ed25519 public key. */
  getPublicKey(keyId: string): Promise<Buffer>;
  /** The ARN of a key id, ARN or alias. */
  keyArn(keyId: string): Promise<string>;
  /** The key's state (Enabled, Disabled, PendingDeletion, ...). */
  keyState(keyId: string): Promise<string | undefined>;
  describe(keyId: string): Promise<KmsKeyDescription>;
  /** The ARN of the key behind `alias`, creating key and alias when missing (idempotent). */
  ensureKey(alias: string, spec: KmsKeySpec): Promise<string>;
  /** Schedules the key's deletion (crypto-shredding); resolves with the deletion date. */
  scheduleKeyDeletion(keyId: string, pendingWindowInDays: number): Promise<Date>;
  /** Readiness: resolves only when the key exists and is enabled. */
  ping(keyId: string, signal?: AbortSignal): Promise<void>;
}
