/**
 * Local dev KMS endpoint — keys as the wire names them (DEV-ONLY).
 *
 * Key ids resolve like AWS: key id, key ARN `arn:aws:kms:<region>:111122223333:key/<uuid>`,
 * alias name `alias/<name>`, alias ARN `arn:aws:kms:<region>:111122223333:alias/<name>`.
 * Responses carry `KeyId` as the key ARN.
 *
 * Contract: this module resolves key references and reports key metadata exactly as KMS
 * does (the same exception names and messages). It MUST NOT change the key store.
 */
import type { KeyStore, StoredAlias, StoredKey } from './keystore.js';
import { KmsWireError, optString, type Json } from './wire.js';

/** Account id in every ARN the local endpoint issues (the AWS documentation example account). */
export const LOCAL_KMS_ACCOUNT_ID = '111122223333';

export const SYMMETRIC_DEFAULT = 'SYMMETRIC_DEFAULT';
export const ED25519_SHA_512 = 'ED25519_SHA_512';
export const ED25519_PH_SHA_512 = 'ED25519_PH_SHA_512';

export function keyArn(key: StoredKey): string {
  return `arn:aws:kms:${key.region}:${LOCAL_KMS_ACCOUNT_ID}:key/${key.keyId}`;
}

export function aliasArn(a: StoredAlias): string {
  return `arn:aws:kms:${a.region}:${LOCAL_KMS_ACCOUNT_ID}:${a.aliasName}`;
}

const ARN_RE = /^arn:aws:kms:([a-z0-9-]+):(\d{12}):((?:key|alias)\/.+)$/;

/** KMS key-id resolution: key id | key ARN | alias/<name> | alias ARN, within one region. */
export function resolveKey(store: KeyStore, region: string, keyIdInput: string): StoredKey {
  let ref = keyIdInput;
  if (ref.startsWith('arn:')) {
    const m = ARN_RE.exec(ref);
    if (m === null || m[1] !== region || m[2] !== LOCAL_KMS_ACCOUNT_ID) {
      throw new KmsWireError('NotFoundException', `Invalid arn ${keyIdInput}`);
    }
    ref = m[3] ?? '';
    if (ref.startsWith('key/')) ref = ref.slice('key/'.length);
  }
  if (ref.startsWith('alias/')) {
    const alias = store.aliases.find((a) => a.region === region && a.aliasName === ref);
    const key = alias === undefined ? undefined : store.keys.get(alias.targetKeyId);
    if (key === undefined) {
      throw new KmsWireError('NotFoundException', `Alias arn:aws:kms:${region}:${LOCAL_KMS_ACCOUNT_ID}:${ref} is not found.`);
    }
    return key;
  }
  const key = store.keys.get(ref);
  if (key === undefined || key.region !== region) {
    throw new KmsWireError('NotFoundException', `Key 'arn:aws:kms:${region}:${LOCAL_KMS_ACCOUNT_ID}:key/${ref}' does not exist`);
  }
  return key;
}

/** Cryptographic operations need an Enabled key. */
export function requireUsable(key: StoredKey): void {
  if (key.state === 'Disabled') throw new KmsWireError('DisabledException', `${keyArn(key)} is disabled.`);
  if (key.state === 'PendingDeletion') {
    throw new KmsWireError('KMSInvalidStateException', `${keyArn(key)} is pending deletion.`);
  }
}

export function requireSymmetric(key: StoredKey): Buffer {
  if (key.keySpec !== 'SYMMETRIC_DEFAULT' || key.symmetricKey === undefined) {
    throw new KmsWireError('InvalidKeyUsageException', `${keyArn(key)} key usage is ${key.keyUsage} which is not valid for this operation.`);
  }
  return Buffer.from(key.symmetricKey, 'base64');
}

export function requireSigning(key: StoredKey): void {
  if (key.keyUsage !== 'SIGN_VERIFY' || key.privateKeyPkcs8 === undefined) {
    throw new KmsWireError('InvalidKeyUsageException', `${keyArn(key)} key usage is ${key.keyUsage} which is not valid for this operation.`);
  }
}

export function keyMetadata(key: StoredKey): Json {
  const md: Json = {
    AWSAccountId: LOCAL_KMS_ACCOUNT_ID,
    KeyId: key.keyId,
    Arn: keyArn(key),
    CreationDate: key.creationDate,
    Enabled: key.state === 'Enabled',
    Description: key.description,
    KeyUsage: key.keyUsage,
    KeyState: key.state,
    Origin: 'AWS_KMS',
    KeyManager: 'CUSTOMER',
    CustomerMasterKeySpec: key.keySpec,
    KeySpec: key.keySpec,
    MultiRegion: false,
  };
  if (key.deletionDate !== undefined) md['DeletionDate'] = key.deletionDate;
  if (key.keySpec === 'SYMMETRIC_DEFAULT') md['EncryptionAlgorithms'] = [SYMMETRIC_DEFAULT];
  else md['SigningAlgorithms'] = [ED25519_SHA_512];
  return md;
}

export function checkEncryptionAlgorithm(input: Json, name: string): string {
  const alg = optString(input, name) ?? SYMMETRIC_DEFAULT;
  if (alg !== SYMMETRIC_DEFAULT) {
    throw new KmsWireError('InvalidKeyUsageException', `${alg} is not supported for this KMS key`);
  }
  return alg;
}
