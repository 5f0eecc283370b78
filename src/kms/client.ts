/**
 * The AWS KMS backend (src/kms/backend.ts `KmsBackend`): a thin wrapper over the real `@aws-sdk/client-kms`
 * `KMSClient`, pointed either at AWS KMS or at the local dev endpoint (`local/server.ts`).
 *
 * Contracts:
 * - Buffers in, Buffers out. Plaintext returned by the SDK is copied into a fresh Buffer and the
 *   SDK's Uint8Array is zeroed (the SDK's transient base64 JSON string cannot be wiped).
 * - Every failure is a `PaylogError` with the SDK error as `cause` (mapping in ./aws-errors.ts):
 *   InvalidCiphertextException / IncorrectKeyException / KMSInvalidSignatureException →
 *   `INTEGRITY_FAILURE`; no HTTP response (network, timeout, credentials), 5xx, throttling,
 *   and key/permission states that make the configured key unusable (NotFound, Disabled,
 *   KMSInvalidState, AccessDenied, ...) → `KMS_UNAVAILABLE`; anything else (a request paylog
 *   should never have built, e.g. ValidationException) → `INTERNAL`.
 *   Messages name the operation and the KMS error name only — never key material or plaintext.
 * - Installed SDK (3.1164) models `ECC_NIST_EDWARDS25519`, `ED25519_SHA_512` and `RAW`.
 */
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  GetPublicKeyCommand,
  KMSClient,
  ReEncryptCommand,
  ScheduleKeyDeletionCommand,
  SignCommand,
} from '@aws-sdk/client-kms';
import { createPublicKey } from 'node:crypto';
import { isPaylogError, PaylogError } from '../errors.js';
import { kmsErrorName, toPaylogError } from './aws-errors.js';
import type { KmsBackend, KmsKeyDescription, KmsKeySpec } from './backend.js';

interface KmsSettings {
  /** Endpoint URL (the local endpoint's `url`, or `AWS_ENDPOINT_URL_KMS`). */
  endpoint?: string;
  region: string;
  /** True for the local dev endpoint: dummy static credentials, few retries. */
  local?: boolean;
  /** Time budget per KMS operation (config.ts `TimeBudgets`); defaults below. */
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** Attempts per operation including the first (SDK standard retry mode, with backoff). */
  maxAttempts?: number;
}

/** Static credentials for the local dev endpoint only; they authorise nothing anywhere else. */
export const LOCAL_DEV_ONLY_ACCESS_KEY_ID = 'PAYLOGDEVONLYLOCALKMS';
export const LOCAL_DEV_ONLY_SECRET_ACCESS_KEY = 'paylog-dev-only-local-kms-not-a-secret';
/** A fresh object per call: the SDK annotates the credentials object it is given. */
const localDevOnlyCredentials = async (): Promise<{ accessKeyId: string; secretAccessKey: string }> => ({
  accessKeyId: LOCAL_DEV_ONLY_ACCESS_KEY_ID,
  secretAccessKey: LOCAL_DEV_ONLY_SECRET_ACCESS_KEY,
});
/** Attempts (1 + retries) against the local endpoint: it is on loopback, retries only hide bugs. */
const LOCAL_KMS_MAX_ATTEMPTS = 2;
/** Attempts against AWS KMS (SDK standard retry mode, with backoff). */
const AWS_KMS_MAX_ATTEMPTS = 3;
const KMS_CONNECTION_TIMEOUT_MS = 1_000;
/** No answer within this on an open connection: the attempt fails (TimeoutError). */
const KMS_REQUEST_TIMEOUT_MS = 2_000;

const DATA_KEY_SPEC = 'AES_256';
const DATA_KEY_BYTES = 32;
const SIGNING_ALGORITHM = 'ED25519_SHA_512';
const ED25519_SIGNATURE_BYTES = 64;
const ED25519_PUBLIC_KEY_BYTES = 32;

export function createKmsClient(s: KmsSettings): KMSClient {
  // Worst case per operation: maxAttempts × (connect + request timeout) plus the SDK's backoff.
  const requestHandler = {
    connectionTimeout: s.connectTimeoutMs ?? KMS_CONNECTION_TIMEOUT_MS,
    requestTimeout: s.requestTimeoutMs ?? KMS_REQUEST_TIMEOUT_MS,
    throwOnRequestTimeout: true,
  };
  if (s.local === true) {
    return new KMSClient({
      region: s.region,
      ...(s.endpoint !== undefined ? { endpoint: s.endpoint } : {}),
      credentials: localDevOnlyCredentials,
      maxAttempts: s.maxAttempts ?? LOCAL_KMS_MAX_ATTEMPTS,
      requestHandler,
    });
  }
  // Real AWS KMS: credentials from the default provider chain.
  return new KMSClient({
    region: s.region,
    ...(s.endpoint !== undefined ? { endpoint: s.endpoint } : {}),
    maxAttempts: s.maxAttempts ?? AWS_KMS_MAX_ATTEMPTS,
    requestHandler,
  });
}

/** Copy SDK-owned secret bytes into a paylog Buffer and wipe the SDK's array. */
function takeSecret(bytes: Uint8Array): Buffer {
  const out = Buffer.alloc(bytes.length); // not from the shared allocation pool
  out.set(bytes);
  bytes.fill(0);
  return out;
}

function integrity(operation: string, what: string): PaylogError {
  return new PaylogError('INTEGRITY_FAILURE', `KMS ${operation} returned ${what}`, { kmsOperation: operation });
}

/** RFC 8410 §4: SubjectPublicKeyInfo with id-Ed25519 → the raw 32-byte public key. */
export function ed25519RawFromSpki(spki: Buffer): Buffer {
  let key;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (e) {
    throw new PaylogError('INTEGRITY_FAILURE', 'KMS public key is not a valid SubjectPublicKeyInfo', undefined, { cause: e });
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new PaylogError('INTEGRITY_FAILURE', 'KMS public key is not an Ed25519 key');
  }
  const x = key.export({ format: 'jwk' }).x;
  const raw = typeof x === 'string' ? Buffer.from(x, 'base64url') : Buffer.alloc(0);
  if (raw.length !== ED25519_PUBLIC_KEY_BYTES) throw new PaylogError('INTEGRITY_FAILURE', 'KMS Ed25519 public key has the wrong length');
  return raw;
}

/** Observer of every KMS request (metrics): operation and `ok` or the KMS error name. */
type KmsRequestObserver = (operation: string, outcome: string) => void;
/** Told the duration of every KMS request paylog makes (metrics: paylog_kms_request_duration_seconds). */
type KmsDurationObserver = (operation: string, seconds: number) => void;

/** The AWS KMS backend (`@aws-sdk/client-kms`): the only file that knows the AWS SDK's key API. */
export class PaylogKms implements KmsBackend {
  constructor(
    private readonly client: KMSClient,
    private readonly observe: KmsRequestObserver = () => {},
    private readonly observeDuration?: KmsDurationObserver,
  ) {}

  private async call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      const out = await fn();
      this.observe(operation, 'ok');
      return out;
    } catch (e) {
      this.observe(operation, kmsErrorName(e));
      throw toPaylogError(operation, e);
    } finally {
      this.observeDuration?.(operation, (performance.now() - started) / 1000);
    }
  }

  /** ScheduleKeyDeletion (crypto-shredding a key period); returns the deletion date. */
  async scheduleKeyDeletion(keyId: string, pendingWindowInDays: number): Promise<Date> {
    const out = await this.call('ScheduleKeyDeletion', () =>
      this.client.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: pendingWindowInDays })),
    );
    return out.DeletionDate ?? new Date(Date.now() + pendingWindowInDays * 86_400_000);
  }

  /** The ARN of a key id, ARN or alias (DescribeKey). */
  async keyArn(keyId: string): Promise<string> {
    const out = await this.call('DescribeKey', () => this.client.send(new DescribeKeyCommand({ KeyId: keyId })));
    if (out.KeyMetadata?.Arn === undefined) throw integrity('DescribeKey', 'no key ARN');
    return out.KeyMetadata.Arn;
  }

  /** The key's KMS state (Enabled, Disabled, PendingDeletion, ...). */
  async keyState(keyId: string): Promise<string | undefined> {
    const out = await this.call('DescribeKey', () => this.client.send(new DescribeKeyCommand({ KeyId: keyId })));
    return out.KeyMetadata?.KeyState;
  }

  /** DescribeKey: the key's ARN, spec, usage and state (start-up checks; readiness uses `ping`). */
  async describe(keyId: string): Promise<KmsKeyDescription> {
    const out = await this.call('DescribeKey', () => this.client.send(new DescribeKeyCommand({ KeyId: keyId })));
    const m = out.KeyMetadata;
    return {
      ...(m?.Arn ? { arn: m.Arn } : {}),
      ...(m?.KeySpec ? { keySpec: m.KeySpec } : {}),
      ...(m?.KeyUsage ? { keyUsage: m.KeyUsage } : {}),
      enabled: m?.Enabled === true,
      ...(m?.KeyState ? { keyState: m.KeyState } : {}),
    };
  }

  /** GenerateDataKey (AES_256) under `keyId`, bound to `context`. `keyId` returned = key ARN. */
  async generateDataKey(
    keyId: string,
    context: Record<string, string>,
  ): Promise<{ plaintext: Buffer; wrappedKey: Buffer; keyId: string }> {
    const out = await this.call('GenerateDataKey', () =>
      this.client.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: DATA_KEY_SPEC, EncryptionContext: context })),
    );
    if (out.Plaintext === undefined || out.CiphertextBlob === undefined || out.KeyId === undefined) {
      out.Plaintext?.fill(0);
      throw integrity('GenerateDataKey', 'an incomplete response');
    }
    const plaintext = takeSecret(out.Plaintext);
    if (plaintext.length !== DATA_KEY_BYTES) {
      plaintext.fill(0);
      throw integrity('GenerateDataKey', 'a data key of the wrong length');
    }
    return { plaintext, wrappedKey: Buffer.from(out.CiphertextBlob), keyId: out.KeyId };
  }

  /** Decrypt a wrapped data key; `keyId` is sent so KMS refuses blobs of any other key. */
  async decryptDataKey(wrappedKey: Buffer, context: Record<string, string>, keyId: string): Promise<Buffer> {
    const plaintext = await this.decrypt('Decrypt', wrappedKey, context, keyId);
    if (plaintext.length !== DATA_KEY_BYTES) {
      plaintext.fill(0);
      throw integrity('Decrypt', 'a data key of the wrong length');
    }
    return plaintext;
  }

  private async decrypt(op: string, blob: Buffer, context: Record<string, string>, keyId: string): Promise<Buffer> {
    const out = await this.call(op, () =>
      this.client.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: context, KeyId: keyId })),
    );
    if (out.Plaintext === undefined) throw integrity(op, 'no plaintext');
    return takeSecret(out.Plaintext);
  }

  /** Encrypt (≤ 4096 bytes) directly under a KMS key, bound to `context`. */
  async encrypt(keyId: string, plaintext: Buffer, context: Record<string, string>): Promise<Buffer> {
    const out = await this.call('Encrypt', () =>
      this.client.send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext, EncryptionContext: context })),
    );
    if (out.CiphertextBlob === undefined) throw integrity('Encrypt', 'no ciphertext');
    return Buffer.from(out.CiphertextBlob);
  }

  /** ReEncrypt (key rewrap) inside KMS; destination context defaults to the source context. */
  async reEncrypt(
    blob: Buffer,
    sourceContext: Record<string, string>,
    destKeyId: string,
    destContext?: Record<string, string>,
  ): Promise<Buffer> {
    const out = await this.call('ReEncrypt', () =>
      this.client.send(
        new ReEncryptCommand({
          CiphertextBlob: blob,
          SourceEncryptionContext: sourceContext,
          DestinationKeyId: destKeyId,
          DestinationEncryptionContext: destContext ?? sourceContext,
        }),
      ),
    );
    if (out.CiphertextBlob === undefined) throw integrity('ReEncrypt', 'no ciphertext');
    return Buffer.from(out.CiphertextBlob);
  }

  /**
   * ReEncrypt from a NAMED source key (KMS refuses a blob of any other key: IncorrectKeyException)
   * to `destKeyId`, same context. Returns the new blob and the source and destination key ARNs
   * as KMS reports them (evidence of which key wrapped the blob before).
   */
  async reEncryptFrom(
    blob: Buffer,
    context: Record<string, string>,
    sourceKeyId: string,
    destKeyId: string,
  ): Promise<{ blob: Buffer; sourceKeyId: string; keyId: string }> {
    const out = await this.call('ReEncrypt', () =>
      this.client.send(
        new ReEncryptCommand({
          CiphertextBlob: blob,
          SourceEncryptionContext: context,
          SourceKeyId: sourceKeyId,
          DestinationKeyId: destKeyId,
          DestinationEncryptionContext: context,
        }),
      ),
    );
    if (out.CiphertextBlob === undefined || out.SourceKeyId === undefined || out.KeyId === undefined) throw integrity('ReEncrypt', 'an incomplete response');
    return { blob: Buffer.from(out.CiphertextBlob), sourceKeyId: out.SourceKeyId, keyId: out.KeyId };
  }

  /** Ed25519 (ED25519_SHA_512, MessageType RAW) signature over `message`: 64 bytes. */
  async sign(keyId: string, message: Buffer): Promise<Buffer> {
    const out = await this.call('Sign', () =>
      this.client.send(
        new SignCommand({ KeyId: keyId, Message: message, MessageType: 'RAW', SigningAlgorithm: SIGNING_ALGORITHM }),
      ),
    );
    if (out.Signature === undefined || out.Signature.length !== ED25519_SIGNATURE_BYTES) {
      throw integrity('Sign', 'a signature of the wrong length');
    }
    return Buffer.from(out.Signature);
  }

  /** The key's public key as DER SubjectPublicKeyInfo (must be an Ed25519 signing key). */
  async getPublicKeySpki(keyId: string): Promise<Buffer> {
    const out = await this.call('GetPublicKey', () => this.client.send(new GetPublicKeyCommand({ KeyId: keyId })));
    if (out.PublicKey === undefined) throw integrity('GetPublicKey', 'no public key');
    if (out.KeySpec !== 'ECC_NIST_EDWARDS25519' || out.KeyUsage !== 'SIGN_VERIFY') {
      throw new PaylogError('INTERNAL', 'KMS key is not an ECC_NIST_EDWARDS25519 SIGN_VERIFY key', {
        kmsOperation: 'GetPublicKey',
        keySpec: out.KeySpec,
        keyUsage: out.KeyUsage,
      });
    }
    return Buffer.from(out.PublicKey);
  }

  /** The raw 32-byte Ed25519 public key (RFC 8032 encoding). */
  async getPublicKey(keyId: string): Promise<Buffer> {
    return ed25519RawFromSpki(await this.getPublicKeySpki(keyId));
  }

  /**
   * Dev setup: the ARN of the key behind `alias/<alias>`, creating key + alias when missing.
   * Idempotent. Production configures key ids and never calls this.
   */
  async ensureKey(alias: string, spec: KmsKeySpec): Promise<string> {
    const aliasName = alias.startsWith('alias/') ? alias : `alias/${alias}`;
    const existing = await this.describeArnOrUndefined(aliasName);
    if (existing !== undefined) return existing;
    const created = await this.call('CreateKey', () =>
      this.client.send(
        new CreateKeyCommand({
          KeySpec: spec,
          KeyUsage: spec === 'SYMMETRIC_DEFAULT' ? 'ENCRYPT_DECRYPT' : 'SIGN_VERIFY',
          Description: `paylog dev key (${aliasName})`,
        }),
      ),
    );
    const arn = created.KeyMetadata?.Arn;
    if (arn === undefined) throw integrity('CreateKey', 'no key ARN');
    try {
      // Metered like every other KMS request (paylog_kms_requests_total{operation="CreateAlias"}).
      await this.call('CreateAlias', () => this.client.send(new CreateAliasCommand({ AliasName: aliasName, TargetKeyId: arn })));
    } catch (e) {
      // Lost a race with another process: use the key the alias now names.
      if (!isPaylogError(e) || e.details?.kmsError !== 'AlreadyExistsException') throw e;
      const winner = await this.describeArnOrUndefined(aliasName);
      if (winner === undefined) throw e;
      return winner;
    }
    return arn;
  }

  private async describeArnOrUndefined(keyId: string): Promise<string | undefined> {
    try {
      const out = await this.client.send(new DescribeKeyCommand({ KeyId: keyId }));
      const arn = out.KeyMetadata?.Arn;
      if (arn === undefined) throw integrity('DescribeKey', 'no key ARN');
      return arn;
    } catch (e) {
      if (e instanceof PaylogError) throw e;
      if (kmsErrorName(e) === 'NotFoundException') return undefined;
      throw toPaylogError('DescribeKey', e);
    }
  }

  /** Readiness probe: DescribeKey must succeed and the key must be Enabled; `signal` aborts it. */
  async ping(keyId: string, signal?: AbortSignal): Promise<void> {
    const out = await this.call('DescribeKey', () =>
      this.client.send(new DescribeKeyCommand({ KeyId: keyId }), signal ? { abortSignal: signal } : {}),
    );
    if (out.KeyMetadata?.Enabled !== true) {
      throw new PaylogError('KMS_UNAVAILABLE', 'KMS key is not enabled', {
        kmsOperation: 'DescribeKey',
        keyState: out.KeyMetadata?.KeyState,
      });
    }
  }
}
