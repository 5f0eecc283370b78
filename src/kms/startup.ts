/**
 * Start-up checks of the configured KMS keys, with errors that name the setting, the key, the
 * KMS operation that failed, and the permission or fix it needs (docs/operations.md has the
 * policies). Runs only against AWS KMS; the dev endpoint creates its own keys.
 */
import { isPaylogError } from '../errors.js';
import type { KmsBackend } from './backend.js';

/** The KMS actions paylog calls on each kind of key (exactly; see docs/operations.md). */
export const KMS_PERMISSIONS = {
  /**
   * Symmetric keys: the data key, and the per-period epoch keys (alias/paylog-epoch-*) the
   * service creates (CreateKey) and wraps epoch private keys under (Encrypt, Decrypt).
   */
  data: ['kms:DescribeKey', 'kms:GenerateDataKey', 'kms:Decrypt', 'kms:Encrypt', 'kms:CreateKey'],
  signing: ['kms:DescribeKey', 'kms:GetPublicKey', 'kms:Sign'],
} as const;

const REQUIRED = {
  data: { keySpec: 'SYMMETRIC_DEFAULT', keyUsage: 'ENCRYPT_DECRYPT' },
  signing: { keySpec: 'ECC_NIST_EDWARDS25519', keyUsage: 'SIGN_VERIFY' },
} as const;

class KmsStartupError extends Error {
  override readonly name = 'KmsStartupError';
}

export interface KeyRef {
  /** The setting the key id came from, e.g. PAYLOG_KMS_DATA_KEY_ID. */
  setting: string;
  keyId: string;
  kind: 'data' | 'signing';
}

export interface KmsWhere {
  region: string;
  endpoint?: string;
}

/** Words for a failed KMS call at start-up: which key, which operation, what it needs. */
export function describeKmsStartupFailure(e: unknown, key: KeyRef, operation: string, where: KmsWhere): string {
  const kmsError = isPaylogError(e) && typeof e.details?.kmsError === 'string' ? e.details.kmsError : (e as Error)?.name ?? 'Error';
  const at = `region ${where.region}${where.endpoint ? `, endpoint ${where.endpoint}` : ''}`;
  const head = `${key.setting}=${key.keyId}: KMS ${operation} failed with ${kmsError} (${at}).`;
  const perms = KMS_PERMISSIONS[key.kind].join(', ');
  switch (kmsError) {
    case 'AccessDeniedException':
      return `${head} The service's IAM principal needs ${operation === 'DescribeKey' ? perms : `kms:${operation}`} on this key, allowed by both its IAM policy and the key policy (docs/operations.md, "KMS permissions").`;
    case 'NotFoundException':
      return `${head} No such key or alias in this region: check ${key.setting} and AWS_REGION.`;
    case 'DisabledException':
    case 'KMSInvalidStateException':
      return `${head} The key is disabled or pending deletion: enable it, or set ${key.setting} to a usable key.`;
    case 'UnrecognizedClientException':
    case 'InvalidSignatureException':
    case 'ExpiredTokenException':
    case 'CredentialsProviderError':
      return `${head} The AWS credentials are missing, invalid or expired (standard AWS credential chain: environment, profile, instance or task role).`;
    default:
      if (isPaylogError(e) && e.code === 'KMS_UNAVAILABLE' && e.details?.httpStatus === undefined) {
        return `${head} No answer from KMS: check AWS_ENDPOINT_URL_KMS / AWS_REGION and the network path. It needs ${perms}.`;
      }
      return `${head} It needs ${perms}.`;
  }
}

/** DescribeKey on every configured key: it exists, is enabled, and has the spec paylog needs. */
export async function checkConfiguredKeys(kms: KmsBackend, keys: readonly KeyRef[], where: KmsWhere): Promise<void> {
  for (const key of keys) {
    let meta;
    try {
      meta = await kms.describe(key.keyId);
    } catch (e) {
      throw new KmsStartupError(describeKmsStartupFailure(e, key, 'DescribeKey', where), { cause: e });
    }
    const want = REQUIRED[key.kind];
    if (meta.keySpec !== want.keySpec || meta.keyUsage !== want.keyUsage) {
      throw new KmsStartupError(
        `${key.setting}=${key.keyId}: the key is ${meta.keySpec ?? '?'} / ${meta.keyUsage ?? '?'}; a ${key.kind} key must be ${want.keySpec} / ${want.keyUsage}.`,
      );
    }
    if (!meta.enabled) {
      throw new KmsStartupError(`${key.setting}=${key.keyId}: the key is not enabled (state ${meta.keyState ?? 'unknown'}): enable it, or set ${key.setting} to a usable key.`);
    }
  }
}

/** Runs a start-up KMS step, turning a KMS failure into a KmsStartupError naming key and permission. */
export async function kmsStartupStep<T>(key: KeyRef, operation: string, where: KmsWhere, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (isPaylogError(e) && (e.code === 'KMS_UNAVAILABLE' || e.code === 'INTERNAL') && e.details?.kmsOperation !== undefined) {
      throw new KmsStartupError(describeKmsStartupFailure(e, key, String(e.details.kmsOperation), where), { cause: e });
    }
    throw e;
  }
}

