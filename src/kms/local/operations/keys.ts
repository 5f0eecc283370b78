/**
 * Local dev KMS endpoint — key management operations: CreateKey, DescribeKey, CreateAlias,
 * ListAliases, DisableKey, EnableKey (DEV-ONLY).
 *
 * Contract: each operation answers as KMS does (same fields, exception names and messages) and
 * persists the key store before it answers. Key specs: SYMMETRIC_DEFAULT/ENCRYPT_DECRYPT and
 * ECC_NIST_EDWARDS25519/SIGN_VERIFY only.
 */
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import type { KeySpec, KeyStore, KeyUsage, StoredKey } from '../keystore.js';
import { aliasArn, keyArn, keyMetadata, LOCAL_KMS_ACCOUNT_ID, resolveKey } from '../keys.js';
import { KmsWireError, optString, reqString, validation, type Operation } from '../wire.js';

const SYMMETRIC_KEY_BYTES = 32;
/** KMS limits (AWS KMS API reference). */
const MAX_DESCRIPTION_CHARS = 8192;
const MAX_ALIAS_CHARS = 256;

const b64 = (b: Buffer): string => b.toString('base64');

/** The key management operations over `store`. */
export function keyOperations(store: KeyStore, nowSeconds: () => number): Map<string, Operation> {
  const ops = new Map<string, Operation>();

  ops.set('CreateKey', async (input, { region }) => {
    const keySpec = optString(input, 'KeySpec') ?? optString(input, 'CustomerMasterKeySpec') ?? 'SYMMETRIC_DEFAULT';
    const keyUsage = optString(input, 'KeyUsage') ?? 'ENCRYPT_DECRYPT';
    const origin = optString(input, 'Origin') ?? 'AWS_KMS';
    const description = optString(input, 'Description') ?? '';
    if (description.length > MAX_DESCRIPTION_CHARS) throw validation('description', 'Member must have length <= 8192');
    if (origin !== 'AWS_KMS' || input['MultiRegion'] === true || input['CustomKeyStoreId'] !== undefined) {
      throw new KmsWireError('UnsupportedOperationException', 'only single-region AWS_KMS keys are supported by the local dev KMS endpoint');
    }
    const pair = `${keySpec}/${keyUsage}`;
    let key: StoredKey;
    const base = { keyId: randomUUID(), region, creationDate: nowSeconds(), description, state: 'Enabled' as const };
    if (pair === 'SYMMETRIC_DEFAULT/ENCRYPT_DECRYPT') {
      key = { ...base, keySpec: keySpec as KeySpec, keyUsage: keyUsage as KeyUsage, symmetricKey: b64(randomBytes(SYMMETRIC_KEY_BYTES)) };
    } else if (pair === 'ECC_NIST_EDWARDS25519/SIGN_VERIFY') {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      key = {
        ...base,
        keySpec: keySpec as KeySpec,
        keyUsage: keyUsage as KeyUsage,
        privateKeyPkcs8: b64(privateKey.export({ format: 'der', type: 'pkcs8' })),
        publicKeySpki: b64(publicKey.export({ format: 'der', type: 'spki' })),
      };
    } else if (keySpec === 'SYMMETRIC_DEFAULT' || keySpec === 'ECC_NIST_EDWARDS25519') {
      throw new KmsWireError('ValidationException', `KeyUsage ${keyUsage} is not compatible with KeySpec ${keySpec}`);
    } else {
      throw new KmsWireError('UnsupportedOperationException', `KeySpec ${keySpec} is not implemented by the local dev KMS endpoint`);
    }
    store.keys.set(key.keyId, key);
    await store.persist();
    return { KeyMetadata: keyMetadata(key) };
  });

  ops.set('DescribeKey', (input, { region }) => ({
    KeyMetadata: keyMetadata(resolveKey(store, region, reqString(input, 'KeyId'))),
  }));

  ops.set('CreateAlias', async (input, { region }) => {
    const aliasName = reqString(input, 'AliasName');
    const target = reqString(input, 'TargetKeyId');
    if (aliasName.length > MAX_ALIAS_CHARS || !/^alias\/[a-zA-Z0-9/_-]+$/.test(aliasName)) {
      throw validation('aliasName', "Member must satisfy regular expression pattern: ^alias/[a-zA-Z0-9/_-]+$");
    }
    if (aliasName.startsWith('alias/aws/')) {
      throw new KmsWireError('NotAuthorizedException', 'alias/aws/ is reserved for AWS managed keys');
    }
    if (target.startsWith('alias/') || /:alias\//.test(target)) {
      throw new KmsWireError('ValidationException', 'TargetKeyId must be a key ID or key ARN');
    }
    const key = resolveKey(store, region, target);
    if (key.state === 'PendingDeletion') throw new KmsWireError('KMSInvalidStateException', `${keyArn(key)} is pending deletion.`);
    if (store.aliases.some((a) => a.region === region && a.aliasName === aliasName)) {
      throw new KmsWireError('AlreadyExistsException', `An alias with the name arn:aws:kms:${region}:${LOCAL_KMS_ACCOUNT_ID}:${aliasName} already exists`);
    }
    const now = nowSeconds();
    store.aliases.push({ region, aliasName, targetKeyId: key.keyId, creationDate: now, lastUpdatedDate: now });
    await store.persist();
    return {};
  });

  ops.set('ListAliases', (input, { region }) => {
    const keyIdInput = optString(input, 'KeyId');
    const only = keyIdInput === undefined ? undefined : resolveKey(store, region, keyIdInput).keyId;
    const aliases = store.aliases
      .filter((a) => a.region === region && (only === undefined || a.targetKeyId === only))
      .map((a) => ({
        AliasName: a.aliasName,
        AliasArn: aliasArn(a),
        TargetKeyId: a.targetKeyId,
        CreationDate: a.creationDate,
        LastUpdatedDate: a.lastUpdatedDate,
      }));
    return { Aliases: aliases, Truncated: false };
  });

  ops.set('DisableKey', async (input, { region }) => {
    const key = resolveKey(store, region, reqString(input, 'KeyId'));
    if (key.state === 'PendingDeletion') throw new KmsWireError('KMSInvalidStateException', `${keyArn(key)} is pending deletion.`);
    key.state = 'Disabled';
    await store.persist();
    return {};
  });

  ops.set('EnableKey', async (input, { region }) => {
    const key = resolveKey(store, region, reqString(input, 'KeyId'));
    if (key.state === 'PendingDeletion') throw new KmsWireError('KMSInvalidStateException', `${keyArn(key)} is pending deletion.`);
    key.state = 'Enabled';
    await store.persist();
    return {};
  });

  return ops;
}
