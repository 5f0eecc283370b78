import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { describe, it, expect } from 'vitest';
import {
  ENVELOPE_FORMAT_VERSION,
  ENVELOPE_REASONS,
  ciphertextDigest,
  decryptWithDataKey,
  encryptWithDataKey,
  kmsEncryptionContext,
  openEnvelope,
  sealEnvelope,
  type DataKeySource,
  type EnvelopeBinding,
  type EnvelopeCiphertext,
  type SealedEnvelope,
} from '../src/crypto/envelope.js';
import { PaylogError } from '../src/errors.js';
import { canonicalJson } from '../src/crypto/canonical-json.js';

/**
 * In-test stand-in for KMS: wraps each fresh data key with AES-256-GCM under a master key, the
 * canonical encryption context as AAD (like KMS, a different context does not unwrap).
 */
class TestKeySource implements DataKeySource {
  readonly issued: Buffer[] = [];
  readonly returned: Buffer[] = [];
  private readonly master = randomBytes(32);
  readonly keyId = 'test-key-1';

  async generateDataKey(context: Record<string, string>) {
    const plaintext = randomBytes(32);
    this.issued.push(plaintext);
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.master, iv);
    c.setAAD(Buffer.from(canonicalJson(context)));
    const wrapped = Buffer.concat([iv, c.update(plaintext), c.final(), c.getAuthTag()]);
    return { plaintext, wrappedKey: wrapped, keyId: this.keyId };
  }

  async decryptDataKey(wrappedKey: Buffer, context: Record<string, string>, keyId: string) {
    if (keyId !== this.keyId) throw new PaylogError('INTEGRITY_FAILURE', 'unknown key');
    try {
      const d = createDecipheriv('aes-256-gcm', this.master, wrappedKey.subarray(0, 12));
      d.setAAD(Buffer.from(canonicalJson(context)));
      d.setAuthTag(wrappedKey.subarray(wrappedKey.length - 16));
      const key = Buffer.concat([d.update(wrappedKey.subarray(12, wrappedKey.length - 16)), d.final()]);
      this.returned.push(key);
      return key;
    } catch {
      throw new PaylogError('INTEGRITY_FAILURE', 'wrapped key does not authenticate');
    }
  }
}

/** A source whose unwrap returns some other 256-bit key (a broken or malicious KMS). */
class WrongKeySource extends TestKeySource {
  override async decryptDataKey() {
    return randomBytes(32);
  }
}

const binding: EnvelopeBinding = { transactionId: 'ord-2026-000123', processor: 'acme' };
const plaintext = Buffer.from(
  canonicalJson({ type: 'card', pan: '4111111111111111', expiryMonth: 12, expiryYear: 2029 }),
);

async function failure(p: Promise<unknown> | (() => unknown)): Promise<PaylogError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(PaylogError);
    return e as PaylogError;
  }
  throw new Error('expected a PaylogError, got success');
}

const FIELDS = ['salt', 'iv', 'ciphertext', 'tag', 'keyCommitment'] as const;

function withByteFlipped(env: SealedEnvelope, field: (typeof FIELDS)[number], i: number): SealedEnvelope {
  const copy = Buffer.from(env[field]);
  copy[i] = copy[i]! ^ 0x01;
  return { ...env, [field]: copy };
}

describe('envelope format v1', () => {
  it('round-trips and has the documented field sizes', async () => {
    const keys = new TestKeySource();
    const env = await sealEnvelope(keys, binding, plaintext);
    expect(env.version).toBe(ENVELOPE_FORMAT_VERSION);
    expect(env.salt).toHaveLength(32);
    expect(env.iv).toHaveLength(12);
    expect(env.tag).toHaveLength(16);
    expect(env.keyCommitment).toHaveLength(32);
    expect(env.ciphertext).toHaveLength(plaintext.length);
    expect(env.kmsKeyId).toBe('test-key-1');
    expect(env.ciphertext.includes(Buffer.from('4111111111111111'))).toBe(false);
    expect((await openEnvelope(keys, binding, env)).equals(plaintext)).toBe(true);
  });

  it('round-trips an empty plaintext', async () => {
    const keys = new TestKeySource();
    const env = await sealEnvelope(keys, binding, Buffer.alloc(0));
    expect(await openEnvelope(keys, binding, env)).toHaveLength(0);
  });

  it('uses a fresh salt and IV per record', async () => {
    const key = randomBytes(32);
    const a = encryptWithDataKey(key, binding, plaintext);
    const b = encryptWithDataKey(key, binding, plaintext);
    expect(a.salt.equals(b.salt)).toBe(false);
    expect(a.iv.equals(b.iv)).toBe(false);
    expect(a.ciphertext.equals(b.ciphertext)).toBe(false);
    expect(decryptWithDataKey(key, binding, a).equals(plaintext)).toBe(true);
  });

  it('names transaction, processor and format in the KMS encryption context', () => {
    expect(kmsEncryptionContext(binding)).toEqual({
      'paylog:transaction-id': 'ord-2026-000123',
      'paylog:processor': 'acme',
      'paylog:envelope': 'v1',
    });
  });

  it('rejects a flip of every single byte of every stored field', async () => {
    const keys = new TestKeySource();
    const env = await sealEnvelope(keys, binding, plaintext);
    let checked = 0;
    for (const field of FIELDS) {
      for (let i = 0; i < env[field].length; i++) {
        const err = await failure(openEnvelope(keys, binding, withByteFlipped(env, field, i)));
        expect(err.code).toBe('INTEGRITY_FAILURE');
        checked++;
      }
    }
    expect(checked).toBe(32 + 12 + plaintext.length + 16 + 32);
  });

  it('rejects truncated or extended fields and unknown versions', async () => {
    const keys = new TestKeySource();
    const env = await sealEnvelope(keys, binding, plaintext);
    for (const mutated of [
      { ...env, tag: env.tag.subarray(0, 12) },
      { ...env, iv: Buffer.concat([env.iv, Buffer.alloc(4)]) },
      { ...env, ciphertext: env.ciphertext.subarray(0, env.ciphertext.length - 1) },
      { ...env, ciphertext: Buffer.concat([env.ciphertext, Buffer.from([0])]) },
      { ...env, keyCommitment: Buffer.alloc(0) },
    ]) {
      expect((await failure(openEnvelope(keys, binding, mutated))).code).toBe('INTEGRITY_FAILURE');
    }
    const v2 = { ...env, version: 2 } as unknown as SealedEnvelope;
    const err = await failure(openEnvelope(keys, binding, v2));
    expect(err.code).toBe('INTEGRITY_FAILURE');
    expect(err.details).toEqual({ reason: ENVELOPE_REASONS.version });
  });

  it('does not open under another transactionId or processor', async () => {
    const keys = new TestKeySource();
    const env = await sealEnvelope(keys, binding, plaintext);
    for (const other of [
      { ...binding, transactionId: 'ord-2026-000124' },
      { ...binding, processor: 'globex' },
      // length-prefixing: moving bytes between the two fields must not collide
      { transactionId: 'ord-2026-000123a', processor: 'cme' },
    ]) {
      // via KMS: the encryption context no longer matches
      expect((await failure(openEnvelope(keys, other, env))).code).toBe('INTEGRITY_FAILURE');
      // with the right data key: the AAD no longer matches
      const dataKey = await keys.decryptDataKey(env.wrappedKey, kmsEncryptionContext(binding), env.kmsKeyId);
      const err = await failure(() => decryptWithDataKey(dataKey, other, env));
      expect(err.code).toBe('INTEGRITY_FAILURE');
      expect(err.details).toEqual({ reason: ENVELOPE_REASONS.authentication });
    }
  });

  it('key commitment rejects a wrong data key before GCM runs', async () => {
    const keyA = randomBytes(32);
    const keyB = randomBytes(32);
    const sealedA = encryptWithDataKey(keyA, binding, plaintext);

    // Wrong key: the commitment check fails first (reason says so, not the GCM tag).
    const wrong = await failure(() => decryptWithDataKey(keyB, binding, sealedA));
    expect(wrong.details).toEqual({ reason: ENVELOPE_REASONS.commitment });

    // A record whose GCM layer is perfectly valid under key B but whose stored commitment is
    // A's: only the commitment check can reject it, and it does.
    const sealedB = encryptWithDataKey(keyB, binding, plaintext);
    const spliced: EnvelopeCiphertext = { ...sealedB, keyCommitment: sealedA.keyCommitment };
    const err = await failure(() => decryptWithDataKey(keyB, binding, spliced));
    expect(err.code).toBe('INTEGRITY_FAILURE');
    expect(err.details).toEqual({ reason: ENVELOPE_REASONS.commitment });
    // sanity: the unspliced record does open, so it was the commitment that failed
    expect(decryptWithDataKey(keyB, binding, sealedB).equals(plaintext)).toBe(true);
  });

  it('openEnvelope fails on the commitment when KMS hands back another key', async () => {
    const keys = new WrongKeySource();
    const env = await sealEnvelope(keys, binding, plaintext);
    const err = await failure(openEnvelope(keys, binding, env));
    expect(err.code).toBe('INTEGRITY_FAILURE');
    expect(err.details).toEqual({ reason: ENVELOPE_REASONS.commitment });
  });

  it('zeroes the plaintext data key after seal and after open', async () => {
    const keys = new TestKeySource();
    const env = await sealEnvelope(keys, binding, plaintext);
    expect(keys.issued).toHaveLength(1);
    expect(keys.issued[0]!.length).toBe(32);
    expect(keys.issued[0]!.every((b) => b === 0)).toBe(true);

    await openEnvelope(keys, binding, env);
    expect(keys.returned).toHaveLength(1);
    expect(keys.returned[0]!.every((b) => b === 0)).toBe(true);

    // also on failure
    await failure(openEnvelope(keys, binding, withByteFlipped(env, 'tag', 0)));
    expect(keys.returned).toHaveLength(2);
    expect(keys.returned[1]!.every((b) => b === 0)).toBe(true);
  });

  it('does not zero a caller-owned key in the synchronous core', () => {
    const key = randomBytes(32);
    const copy = Buffer.from(key);
    decryptWithDataKey(key, binding, encryptWithDataKey(key, binding, plaintext));
    expect(key.equals(copy)).toBe(true);
  });

  it('maps non-PaylogError KMS failures to KMS_UNAVAILABLE', async () => {
    const down: DataKeySource = {
      generateDataKey: () => Promise.reject(new Error('connect ECONNREFUSED')),
      decryptDataKey: () => Promise.reject(new Error('connect ECONNREFUSED')),
    };
    expect((await failure(sealEnvelope(down, binding, plaintext))).code).toBe('KMS_UNAVAILABLE');
    const env = await sealEnvelope(new TestKeySource(), binding, plaintext);
    expect((await failure(openEnvelope(down, binding, env))).code).toBe('KMS_UNAVAILABLE');
  });

  it('ciphertextDigest is 32 bytes, deterministic, and changes with every field', async () => {
    const keys = new TestKeySource();
    const env = await sealEnvelope(keys, binding, plaintext);
    const digest = ciphertextDigest(env);
    expect(digest).toHaveLength(32);
    expect(ciphertextDigest({ ...env }).equals(digest)).toBe(true);
    const seen = new Set([digest.toString('hex')]);
    for (const field of FIELDS) {
      for (const i of [0, env[field].length - 1]) {
        const d = ciphertextDigest(withByteFlipped(env, field, i)).toString('hex');
        expect(seen.has(d)).toBe(false);
        seen.add(d);
      }
    }
    // unambiguous encoding: moving a byte from ciphertext into tag position changes the digest
    const shifted = {
      ...env,
      ciphertext: env.ciphertext.subarray(1),
      tag: Buffer.concat([env.ciphertext.subarray(0, 1), env.tag.subarray(0, 15)]),
    };
    expect(ciphertextDigest(shifted).equals(digest)).toBe(false);
    // wrappedKey / kmsKeyId are outside the digest (re-wrapping keeps log commitments)
    const rewrapped: SealedEnvelope = { ...env, wrappedKey: Buffer.alloc(1), kmsKeyId: 'other' };
    expect(ciphertextDigest(rewrapped).equals(digest)).toBe(true);
  });
});

describe('HKDF (RFC 5869)', () => {
  it('the shared-Extract implementation equals node:crypto hkdfSync for both v1 labels', async () => {
    const { hkdfSync } = await import('node:crypto');
    const { hkdf32 } = await import('../src/crypto/hkdf.js');
    for (let i = 0; i < 50; i++) {
      const ikm = randomBytes(32);
      const salt = randomBytes(32);
      for (const info of ['paylog/envelope/v1/encryption-key', 'paylog/envelope/v1/key-commitment']) {
        const want = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from(info), 32));
        expect(hkdf32(ikm, salt, info).equals(want)).toBe(true);
      }
    }
  });

  it('RFC 5869 test case 1 (first 32 bytes of OKM)', async () => {
    const { hkdf32 } = await import('../src/crypto/hkdf.js');
    const ikm = Buffer.from('0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b', 'hex');
    const salt = Buffer.from('000102030405060708090a0b0c', 'hex');
    const info = Buffer.from('f0f1f2f3f4f5f6f7f8f9', 'hex').toString('latin1');
    // OKM (42 bytes) = 3cb25f25faacd57a90434f64d0362f2a 2d2d0a90cf1a5a4c5db02d56ecc4c5bf 34007208d5b887185865
    expect(hkdf32(ikm, salt, info).toString('hex')).toBe('3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf');
  });
});
