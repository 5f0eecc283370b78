/**
 * Local dev KMS endpoint — cryptographic operations: GenerateRandom, GenerateDataKey,
 * GenerateDataKeyWithoutPlaintext, Encrypt, Decrypt, ReEncrypt, Sign, Verify, GetPublicKey
 * (DEV-ONLY).
 *
 * Contract: every operation needs an Enabled key of the right usage (the KMS exception
 * otherwise); plaintexts and key material are zeroed once answered. Signing is
 * ED25519_SHA_512 with MessageType RAW = plain Ed25519 over the message (RFC 8032);
 * ED25519_PH_SHA_512 is not offered.
 */
import { createPrivateKey, createPublicKey, randomBytes, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto';
import type { KeyStore } from '../keystore.js';
import { checkEncryptionAlgorithm, ED25519_PH_SHA_512, ED25519_SHA_512, keyArn, requireSigning, requireUsable, resolveKey } from '../keys.js';
import { encryptUnder, openBlob } from '../blob.js';
import { KmsWireError, optContext, optInt, optString, reqBlob, reqString, validation, type Json, type Operation } from '../wire.js';

/** KMS limits (AWS KMS API reference). */
const MAX_PLAINTEXT_BYTES = 4096;
const MAX_CIPHERTEXT_BYTES = 6144;
const MAX_MESSAGE_BYTES = 4096;
const MAX_RANDOM_BYTES = 1024;

const b64 = (b: Buffer): string => b.toString('base64');

function dataKeyLength(input: Json): number {
  const spec = optString(input, 'KeySpec');
  const n = optInt(input, 'NumberOfBytes');
  if ((spec === undefined) === (n === undefined)) {
    throw new KmsWireError('ValidationException', 'Specify exactly one of KeySpec or NumberOfBytes');
  }
  if (n !== undefined) {
    if (n < 1 || n > MAX_RANDOM_BYTES) throw validation('numberOfBytes', `Member must be between 1 and ${MAX_RANDOM_BYTES}`);
    return n;
  }
  if (spec === 'AES_256') return 32;
  if (spec === 'AES_128') return 16;
  throw validation('keySpec', "Member must satisfy enum value set: [AES_256, AES_128]");
}

function checkSigningRequest(input: Json): { message: Buffer; algorithm: string } {
  const algorithm = reqString(input, 'SigningAlgorithm');
  const messageType = optString(input, 'MessageType') ?? 'RAW';
  const message = reqBlob(input, 'Message', MAX_MESSAGE_BYTES);
  if (algorithm === ED25519_PH_SHA_512) {
    throw new KmsWireError('UnsupportedOperationException', 'ED25519_PH_SHA_512 is not implemented by the local dev KMS endpoint');
  }
  if (algorithm !== ED25519_SHA_512) {
    throw new KmsWireError('InvalidKeyUsageException', `${algorithm} is not valid for this KMS key`);
  }
  if (messageType !== 'RAW') {
    throw new KmsWireError('ValidationException', 'ED25519_SHA_512 requires MessageType RAW');
  }
  return { message, algorithm };
}

/** The cryptographic operations over `store`. */
export function cryptoOperations(store: KeyStore): Map<string, Operation> {
  const ops = new Map<string, Operation>();

  ops.set('GenerateRandom', (input) => {
    const n = optInt(input, 'NumberOfBytes');
    if (n === undefined || n < 1 || n > MAX_RANDOM_BYTES) throw validation('numberOfBytes', `Member must be between 1 and ${MAX_RANDOM_BYTES}`);
    return { Plaintext: b64(randomBytes(n)) };
  });

  const generateDataKey = (withPlaintext: boolean): Operation => (input, { region }) => {
    const key = resolveKey(store, region, reqString(input, 'KeyId'));
    const length = dataKeyLength(input);
    const context = optContext(input, 'EncryptionContext');
    const plaintext = randomBytes(length);
    try {
      const blob = encryptUnder(key, plaintext, context);
      return withPlaintext
        ? { CiphertextBlob: b64(blob), Plaintext: b64(plaintext), KeyId: keyArn(key) }
        : { CiphertextBlob: b64(blob), KeyId: keyArn(key) };
    } finally {
      plaintext.fill(0);
    }
  };
  ops.set('GenerateDataKey', generateDataKey(true));
  ops.set('GenerateDataKeyWithoutPlaintext', generateDataKey(false));

  ops.set('Encrypt', (input, { region }) => {
    const key = resolveKey(store, region, reqString(input, 'KeyId'));
    const plaintext = reqBlob(input, 'Plaintext', MAX_PLAINTEXT_BYTES);
    const context = optContext(input, 'EncryptionContext');
    const alg = checkEncryptionAlgorithm(input, 'EncryptionAlgorithm');
    try {
      return { CiphertextBlob: b64(encryptUnder(key, plaintext, context)), KeyId: keyArn(key), EncryptionAlgorithm: alg };
    } finally {
      plaintext.fill(0);
    }
  });

  ops.set('Decrypt', (input, { region }) => {
    const blob = reqBlob(input, 'CiphertextBlob', MAX_CIPHERTEXT_BYTES);
    const context = optContext(input, 'EncryptionContext');
    const alg = checkEncryptionAlgorithm(input, 'EncryptionAlgorithm');
    const { key, plaintext } = openBlob(store, region, blob, context, optString(input, 'KeyId'));
    try {
      return { KeyId: keyArn(key), Plaintext: b64(plaintext), EncryptionAlgorithm: alg };
    } finally {
      plaintext.fill(0);
    }
  });

  ops.set('ReEncrypt', (input, { region }) => {
    const blob = reqBlob(input, 'CiphertextBlob', MAX_CIPHERTEXT_BYTES);
    const sourceContext = optContext(input, 'SourceEncryptionContext');
    const destContext = optContext(input, 'DestinationEncryptionContext');
    const sourceAlg = checkEncryptionAlgorithm(input, 'SourceEncryptionAlgorithm');
    const destAlg = checkEncryptionAlgorithm(input, 'DestinationEncryptionAlgorithm');
    const dest = resolveKey(store, region, reqString(input, 'DestinationKeyId'));
    const { key: source, plaintext } = openBlob(store, region, blob, sourceContext, optString(input, 'SourceKeyId'));
    try {
      return {
        CiphertextBlob: b64(encryptUnder(dest, plaintext, destContext)),
        SourceKeyId: keyArn(source),
        KeyId: keyArn(dest),
        SourceEncryptionAlgorithm: sourceAlg,
        DestinationEncryptionAlgorithm: destAlg,
      };
    } finally {
      plaintext.fill(0);
    }
  });

  // Parsed once per key record (the signer signs a checkpoint several times a second under load;
  // parsing the PKCS#8 key each time was most of a Sign). Records are immutable: a changed key
  // is a new record, parsed afresh.
  const signingKeys = new WeakMap<object, KeyObject>();
  const signingKeyObject = (key: { readonly privateKeyPkcs8?: string }): KeyObject => {
    let k = signingKeys.get(key);
    if (!k) signingKeys.set(key, (k = createPrivateKey({ key: Buffer.from(key.privateKeyPkcs8 ?? '', 'base64'), format: 'der', type: 'pkcs8' })));
    return k;
  };

  ops.set('Sign', (input, { region }) => {
    const key = resolveKey(store, region, reqString(input, 'KeyId'));
    requireUsable(key);
    requireSigning(key);
    const { message, algorithm } = checkSigningRequest(input);
    const privateKey = signingKeyObject(key);
    // RFC 8032 §5.1.6: pure Ed25519 over the raw message (node:crypto with algorithm null).
    return { KeyId: keyArn(key), Signature: b64(edSign(null, message, privateKey)), SigningAlgorithm: algorithm };
  });

  ops.set('Verify', (input, { region }) => {
    const key = resolveKey(store, region, reqString(input, 'KeyId'));
    requireUsable(key);
    requireSigning(key);
    const { message, algorithm } = checkSigningRequest(input);
    const signature = reqBlob(input, 'Signature', MAX_MESSAGE_BYTES);
    const publicKey = createPublicKey({ key: Buffer.from(key.publicKeySpki ?? '', 'base64'), format: 'der', type: 'spki' });
    // RFC 8032 §5.1.7; KMS reports an invalid signature as KMSInvalidSignatureException.
    if (!edVerify(null, message, publicKey, signature)) {
      throw new KmsWireError('KMSInvalidSignatureException', 'The signature is not valid.');
    }
    return { KeyId: keyArn(key), SignatureValid: true, SigningAlgorithm: algorithm };
  });

  ops.set('GetPublicKey', (input, { region }) => {
    const key = resolveKey(store, region, reqString(input, 'KeyId'));
    requireUsable(key);
    if (key.publicKeySpki === undefined) {
      throw new KmsWireError('UnsupportedOperationException', `${keyArn(key)} is a symmetric key and has no public key.`);
    }
    return {
      KeyId: keyArn(key),
      PublicKey: key.publicKeySpki,
      CustomerMasterKeySpec: key.keySpec,
      KeySpec: key.keySpec,
      KeyUsage: key.keyUsage,
      SigningAlgorithms: [ED25519_SHA_512],
    };
  });

  return ops;
}
