/**
 * A TEST-ONLY key backend (src/kms/backend.ts `KmsBackend`) that wraps keys locally, in this
 * process's memory, with AES-256-GCM: no KMS, no network. It exists to show that adding a key
 * backend is one new file implementing the interface plus its construction where a
 * `KmsBackend` is wanted (test/key-backend.test.ts). MUST NOT be used outside tests: its key
 * material lives in the JavaScript heap and dies with the process.
 *
 * Keeps the interface's contracts: a blob opens only under the key that wrapped it and with
 * the same encryption context (else INTEGRITY_FAILURE, `IncorrectKeyException` /
 * `InvalidCiphertextException`); a key scheduled for deletion refuses every use
 * (KMS_UNAVAILABLE, `KMSInvalidStateException`); an unknown key is `NotFoundException`.
 */
import { createCipheriv, createDecipheriv, createHash, generateKeyPairSync, randomBytes, sign as edSign, randomUUID, type KeyObject } from 'node:crypto';
import { PaylogError } from '../../src/errors.js';
import type { KmsBackend, KmsKeyDescription, KmsKeySpec } from '../../src/kms/backend.js';
import { ed25519RawFromSpki } from '../../src/kms/client.js';

const DATA_KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

interface LocalKey {
  arn: string;
  spec: KmsKeySpec;
  state: 'Enabled' | 'PendingDeletion';
  secret?: Buffer;
  signing?: { privateKey: KeyObject; spki: Buffer };
}

const fail = (code: 'INTEGRITY_FAILURE' | 'KMS_UNAVAILABLE', op: string, kmsError: string) =>
  new PaylogError(code, `local ${op} failed: ${kmsError}`, { kmsOperation: op, kmsError });

/** The encryption context as authenticated data: sorted, length-prefixed pairs. */
function contextAad(context: Record<string, string>): Buffer {
  return createHash('sha256').update(JSON.stringify(Object.entries(context).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))).digest();
}

export class LocalWrapKms implements KmsBackend {
  private readonly keys = new Map<string, LocalKey>();
  private readonly aliases = new Map<string, string>();
  /** Operations performed, by name (the test's evidence that no KMS was involved). */
  readonly calls: string[] = [];

  private key(op: string, keyId: string): LocalKey {
    const k = this.keys.get(this.aliases.get(keyId) ?? keyId);
    if (!k) throw fail('KMS_UNAVAILABLE', op, 'NotFoundException');
    if (k.state !== 'Enabled') throw fail('KMS_UNAVAILABLE', op, 'KMSInvalidStateException');
    return k;
  }

  private wrap(k: LocalKey, plaintext: Buffer, context: Record<string, string>): Buffer {
    const iv = randomBytes(IV_BYTES);
    const c = createCipheriv('aes-256-gcm', k.secret!, iv).setAAD(contextAad(context));
    const ct = Buffer.concat([c.update(plaintext), c.final()]);
    const arn = Buffer.from(k.arn, 'utf8');
    return Buffer.concat([Buffer.from([arn.length]), arn, iv, c.getAuthTag(), ct]);
  }

  private unwrap(op: string, blob: Buffer, context: Record<string, string>, keyId?: string): { plaintext: Buffer; key: LocalKey } {
    const n = blob[0] ?? 0;
    const arn = blob.subarray(1, 1 + n).toString('utf8');
    const k = this.key(op, arn);
    if (keyId !== undefined && this.key(op, keyId) !== k) throw fail('INTEGRITY_FAILURE', op, 'IncorrectKeyException');
    const iv = blob.subarray(1 + n, 1 + n + IV_BYTES);
    const tag = blob.subarray(1 + n + IV_BYTES, 1 + n + IV_BYTES + TAG_BYTES);
    try {
      const d = createDecipheriv('aes-256-gcm', k.secret!, iv).setAAD(contextAad(context)).setAuthTag(tag);
      return { plaintext: Buffer.concat([d.update(blob.subarray(1 + n + IV_BYTES + TAG_BYTES)), d.final()]), key: k };
    } catch {
      throw fail('INTEGRITY_FAILURE', op, 'InvalidCiphertextException');
    }
  }

  async generateDataKey(keyId: string, context: Record<string, string>) {
    this.calls.push('GenerateDataKey');
    const k = this.key('GenerateDataKey', keyId);
    const plaintext = randomBytes(DATA_KEY_BYTES);
    return { plaintext, wrappedKey: this.wrap(k, plaintext, context), keyId: k.arn };
  }

  async decryptDataKey(wrappedKey: Buffer, context: Record<string, string>, keyId: string): Promise<Buffer> {
    this.calls.push('Decrypt');
    return this.unwrap('Decrypt', wrappedKey, context, keyId).plaintext;
  }

  async encrypt(keyId: string, plaintext: Buffer, context: Record<string, string>): Promise<Buffer> {
    this.calls.push('Encrypt');
    return this.wrap(this.key('Encrypt', keyId), plaintext, context);
  }

  async reEncrypt(blob: Buffer, sourceContext: Record<string, string>, destKeyId: string, destContext?: Record<string, string>): Promise<Buffer> {
    return (await this.reEncryptFrom(blob, sourceContext, undefined, destKeyId, destContext)).blob;
  }

  async reEncryptFrom(blob: Buffer, context: Record<string, string>, sourceKeyId: string | undefined, destKeyId: string, destContext = context) {
    this.calls.push('ReEncrypt');
    const { plaintext, key } = this.unwrap('ReEncrypt', blob, context, sourceKeyId);
    try {
      const dest = this.key('ReEncrypt', destKeyId);
      return { blob: this.wrap(dest, plaintext, destContext), sourceKeyId: key.arn, keyId: dest.arn };
    } finally {
      plaintext.fill(0);
    }
  }

  async sign(keyId: string, message: Buffer): Promise<Buffer> {
    this.calls.push('Sign');
    const k = this.key('Sign', keyId);
    if (!k.signing) throw fail('INTEGRITY_FAILURE', 'Sign', 'InvalidKeyUsageException');
    return edSign(null, message, k.signing.privateKey);
  }

  async getPublicKeySpki(keyId: string): Promise<Buffer> {
    const k = this.key('GetPublicKey', keyId);
    if (!k.signing) throw new PaylogError('INTERNAL', 'key is not an ECC_NIST_EDWARDS25519 SIGN_VERIFY key');
    return Buffer.from(k.signing.spki);
  }

  async getPublicKey(keyId: string): Promise<Buffer> {
    return ed25519RawFromSpki(await this.getPublicKeySpki(keyId));
  }

  async keyArn(keyId: string): Promise<string> {
    const k = this.keys.get(this.aliases.get(keyId) ?? keyId);
    if (!k) throw fail('KMS_UNAVAILABLE', 'DescribeKey', 'NotFoundException');
    return k.arn;
  }

  async keyState(keyId: string): Promise<string | undefined> {
    return this.keys.get(this.aliases.get(keyId) ?? keyId)?.state;
  }

  async describe(keyId: string): Promise<KmsKeyDescription> {
    const k = this.keys.get(this.aliases.get(keyId) ?? keyId);
    if (!k) throw fail('KMS_UNAVAILABLE', 'DescribeKey', 'NotFoundException');
    return { arn: k.arn, keySpec: k.spec, keyUsage: k.signing ? 'SIGN_VERIFY' : 'ENCRYPT_DECRYPT', enabled: k.state === 'Enabled', keyState: k.state };
  }

  async ensureKey(alias: string, spec: KmsKeySpec): Promise<string> {
    const name = alias.startsWith('alias/') ? alias : `alias/${alias}`;
    const existing = this.aliases.get(name);
    if (existing) return existing;
    const arn = `arn:local:kms:test:000000000000:key/${randomUUID()}`;
    const key: LocalKey = { arn, spec, state: 'Enabled' };
    if (spec === 'SYMMETRIC_DEFAULT') key.secret = randomBytes(32);
    else {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      key.signing = { privateKey, spki: publicKey.export({ format: 'der', type: 'spki' }) };
    }
    this.keys.set(arn, key);
    this.aliases.set(name, arn);
    return arn;
  }

  async scheduleKeyDeletion(keyId: string, pendingWindowInDays: number): Promise<Date> {
    this.key('ScheduleKeyDeletion', keyId).state = 'PendingDeletion';
    return new Date(Date.now() + pendingWindowInDays * 86_400_000);
  }

  async ping(keyId: string): Promise<void> {
    this.key('DescribeKey', keyId);
  }
}
