/**
 * HPKE (RFC 9180), base mode only, single-shot, for one ciphersuite family:
 * KEM DHKEM(X25519, HKDF-SHA256) (0x0020), KDF HKDF-SHA256 (0x0001), AEAD AES-128-GCM (0x0001)
 * or AES-256-GCM (0x0002). Built on node:crypto (X25519 `diffieHellman`, HMAC, AES-GCM) and
 * checked against the RFC 9180 Appendix A / CFRG test vectors (test/hpke.test.ts).
 *
 * paylog wraps each transaction's 32-byte data key under an epoch public key with it (envelope
 * v2, src/crypto/envelope-v2.ts, suite (0x0020, 0x0001, 0x0002)), one sender context per window.
 *
 * Contracts:
 * - `seal` needs only the recipient's PUBLIC key; it never sees a private key.
 * - `open` throws `HpkeError` on any failure (bad encapsulation, wrong key, wrong info/aad,
 *   tampered ciphertext); it never returns unauthenticated plaintext.
 * - Every intermediate secret (DH output, shared secret, key-schedule secret, AEAD key) is
 *   zeroed before returning. A private key is handed in as an {@link X25519PrivateKey}
 *   material object, which owns (and zeroes) its bytes.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';

const KEM_DHKEM_X25519_HKDF_SHA256 = 0x0020;
const KDF_HKDF_SHA256 = 0x0001;
const AEAD_AES_128_GCM = 0x0001;
export const AEAD_AES_256_GCM = 0x0002;
export type HpkeAead = typeof AEAD_AES_128_GCM | typeof AEAD_AES_256_GCM;

/** RFC 9180 §7.1: Nsecret, Nenc, Npk, Nsk for DHKEM(X25519, HKDF-SHA256). */
const X25519_KEY_BYTES = 32;
export const HPKE_ENC_BYTES = 32;
/** RFC 9180 §7.3: Nn = 12, Nt = 16 for both AES-GCM AEADs; Nk = 16 or 32. */
const HPKE_NONCE_BYTES = 12;
export const HPKE_TAG_BYTES = 16;
const HASH = 'sha256';
const HASH_BYTES = 32;
const MODE_BASE = 0x00;

const HPKE_V1 = Buffer.from('HPKE-v1', 'ascii');
// RFC 5958 / RFC 8410: the fixed PKCS#8 DER prefix around a raw X25519 private key.
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

export class HpkeError extends Error {
  override readonly name = 'HpkeError';
}

const i2osp2 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};

/** RFC 9180 §4.1 / §5.1: suite_id for the KEM and for the whole HPKE ciphersuite. */
const KEM_SUITE_ID = Buffer.concat([Buffer.from('KEM', 'ascii'), i2osp2(KEM_DHKEM_X25519_HKDF_SHA256)]);
function hpkeSuiteId(aead: HpkeAead): Buffer {
  return Buffer.concat([Buffer.from('HPKE', 'ascii'), i2osp2(KEM_DHKEM_X25519_HKDF_SHA256), i2osp2(KDF_HKDF_SHA256), i2osp2(aead)]);
}
const aeadKeyBytes = (aead: HpkeAead) => (aead === AEAD_AES_256_GCM ? 32 : 16);
const aeadCipher = (aead: HpkeAead) => (aead === AEAD_AES_256_GCM ? 'aes-256-gcm' : 'aes-128-gcm');

// RFC 5869 §2.2 Extract and §2.3 Expand (HMAC-SHA256).
function extract(salt: Buffer, ikm: Buffer): Buffer {
  return createHmac(HASH, salt).update(ikm).digest();
}
function expand(prk: Buffer, info: Buffer, length: number): Buffer {
  const out = Buffer.alloc(length);
  let t = Buffer.alloc(0);
  for (let i = 1, at = 0; at < length; i++) {
    const next = createHmac(HASH, prk).update(t).update(info).update(Buffer.from([i])).digest();
    t.fill(0);
    t = next;
    at += t.copy(out, at);
  }
  t.fill(0);
  return out;
}

/** RFC 9180 §4: LabeledExtract(salt, label, ikm). The caller zeroes the result. */
function labeledExtract(suiteId: Buffer, salt: Buffer, label: string, ikm: Buffer): Buffer {
  const labeledIkm = Buffer.concat([HPKE_V1, suiteId, Buffer.from(label, 'ascii'), ikm]);
  try {
    return extract(salt, labeledIkm);
  } finally {
    labeledIkm.fill(0);
  }
}

/** RFC 9180 §4: LabeledExpand(prk, label, info, L). The caller zeroes the result. */
function labeledExpand(suiteId: Buffer, prk: Buffer, label: string, info: Buffer, length: number): Buffer {
  const labeledInfo = Buffer.concat([i2osp2(length), HPKE_V1, suiteId, Buffer.from(label, 'ascii'), info]);
  return expand(prk, labeledInfo, length);
}

/**
 * Raw X25519 public keys go in and out of node:crypto as JWK (`x`, RFC 8037 §2): OpenSSL 3's
 * DER decoders cost ~0.3–0.8 ms per key on this machine, the raw JWK path ~10 µs. A public key
 * is not secret, so the transient base64url string costs nothing.
 */
function publicKeyObject(raw: Buffer): KeyObject {
  if (!Buffer.isBuffer(raw) || raw.length !== X25519_KEY_BYTES) throw new HpkeError('X25519 public key must be 32 bytes');
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw.toString('base64url') }, format: 'jwk' });
}

function rawPublicKey(key: KeyObject): Buffer {
  const x = key.export({ format: 'jwk' }).x;
  if (typeof x !== 'string') throw new HpkeError('X25519 key has no public value');
  return Buffer.from(x, 'base64url');
}

/** An X25519 public key (raw 32 bytes) with its parsed KeyObject, parsed once and reused. */
export class X25519PublicKey {
  readonly keyObject: KeyObject;
  constructor(readonly raw: Buffer) {
    this.keyObject = publicKeyObject(raw);
  }
}

/**
 * An X25519 private key as a material object. It owns its raw bytes (when built from them) and
 * the node KeyObject parsed from them once; {@link destroy} zeroes the bytes and drops the
 * KeyObject, and after that every use throws. OpenSSL's copy inside the KeyObject is cleared by
 * OpenSSL when the object is freed (node offers no eager free), so a destroyed key's last copy
 * lives at most until the next garbage collection. The raw bytes never pass through a JS string.
 *
 * A key from {@link generate} (HPKE's ephemeral key, a new epoch key) starts as a KeyObject only:
 * its raw bytes exist only if {@link exportRaw} is asked for them.
 */
export class X25519PrivateKey {
  private secret: Buffer | null;
  private handle: KeyObject | null;
  private destroyed = false;
  /** The matching public key (RFC 7748 §6.1: X25519(sk, 9)). */
  readonly publicKey: Buffer;

  /** Takes ownership of `raw` (the caller must not keep or reuse it), or of a private x25519 KeyObject. */
  constructor(raw: Buffer | KeyObject) {
    if (Buffer.isBuffer(raw)) {
      if (raw.length !== X25519_KEY_BYTES) throw new HpkeError('X25519 private key must be 32 bytes');
      this.secret = raw;
      this.handle = privateKeyObject(raw);
    } else {
      if (raw.type !== 'private' || raw.asymmetricKeyType !== 'x25519') throw new HpkeError('not an X25519 private key');
      this.secret = null;
      this.handle = raw;
    }
    this.publicKey = rawPublicKey(createPublicKey(this.handle));
  }

  /** A fresh random key pair (RFC 9180 §7.1.3 GenerateKeyPair). */
  static generate(): X25519PrivateKey {
    return new X25519PrivateKey(generateKeyPairSync('x25519').privateKey);
  }

  /** RFC 9180 §7.1.3 DeriveKeyPair(ikm) for DHKEM(X25519, HKDF-SHA256) (test vectors). */
  static derive(ikm: Buffer): X25519PrivateKey {
    const dkpPrk = labeledExtract(KEM_SUITE_ID, Buffer.alloc(0), 'dkp_prk', ikm);
    try {
      return new X25519PrivateKey(labeledExpand(KEM_SUITE_ID, dkpPrk, 'sk', Buffer.alloc(0), X25519_KEY_BYTES));
    } finally {
      dkpPrk.fill(0);
    }
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }

  /** A copy of the raw private key (for wrapping under KMS); the caller zeroes it. */
  exportRaw(): Buffer {
    const handle = this.live();
    if (this.secret) return Buffer.from(this.secret);
    const der = handle.export({ format: 'der', type: 'pkcs8' });
    try {
      return Buffer.from(der.subarray(X25519_PKCS8_PREFIX.length));
    } finally {
      der.fill(0);
    }
  }

  /** X25519(sk, peer): the caller zeroes the result. Throws on an all-zero output (RFC 9180 §7.1.4). */
  dh(peer: KeyObject): Buffer {
    const shared = diffieHellman({ privateKey: this.live(), publicKey: peer });
    if (shared.every((b) => b === 0)) throw new HpkeError('X25519 produced the all-zero value');
    return shared;
  }

  /** Zeroes the key bytes and drops the KeyObject. Idempotent. */
  destroy(): void {
    this.secret?.fill(0);
    this.secret = null;
    this.handle = null;
    this.destroyed = true;
  }

  private live(): KeyObject {
    if (this.destroyed || !this.handle) throw new HpkeError('private key material has been destroyed');
    return this.handle;
  }
}

/** The KeyObject for raw private bytes, through a temporary PKCS#8 DER buffer zeroed at once. */
function privateKeyObject(raw: Buffer): KeyObject {
  const der = Buffer.concat([X25519_PKCS8_PREFIX, raw]);
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } finally {
    der.fill(0);
  }
}

/** RFC 9180 §4.1 ExtractAndExpand(dh, kem_context) → shared_secret (Nsecret = 32). */
function extractAndExpand(dh: Buffer, kemContext: Buffer): Buffer {
  const eaePrk = labeledExtract(KEM_SUITE_ID, Buffer.alloc(0), 'eae_prk', dh);
  try {
    return labeledExpand(KEM_SUITE_ID, eaePrk, 'shared_secret', kemContext, HASH_BYTES);
  } finally {
    eaePrk.fill(0);
  }
}

/** RFC 9180 §4.1 Encap(pkR); `ephemeral` only for test vectors (default: a fresh key pair). */
export function encap(pkR: X25519PublicKey, ephemeral?: X25519PrivateKey): { sharedSecret: Buffer; enc: Buffer } {
  const skE = ephemeral ?? X25519PrivateKey.generate();
  try {
    const dh = skE.dh(pkR.keyObject);
    const enc = skE.publicKey;
    try {
      return { sharedSecret: extractAndExpand(dh, Buffer.concat([enc, pkR.raw])), enc };
    } finally {
      dh.fill(0);
    }
  } finally {
    if (!ephemeral) skE.destroy();
  }
}

/** RFC 9180 §4.1 Decap(enc, skR). */
export function decap(enc: Buffer, skR: X25519PrivateKey): Buffer {
  if (!Buffer.isBuffer(enc) || enc.length !== HPKE_ENC_BYTES) throw new HpkeError('HPKE encapsulated key must be 32 bytes');
  const dh = skR.dh(publicKeyObject(enc));
  try {
    return extractAndExpand(dh, Buffer.concat([enc, skR.publicKey]));
  } finally {
    dh.fill(0);
  }
}

export interface KeyScheduleOutput {
  keyScheduleContext: Buffer;
  secret: Buffer;
  key: Buffer;
  baseNonce: Buffer;
}

/** RFC 9180 §5.1 KeySchedule for mode_base (psk = psk_id = ""). The caller zeroes secret/key. */
export function keyScheduleBase(aead: HpkeAead, sharedSecret: Buffer, info: Buffer): KeyScheduleOutput {
  const suiteId = hpkeSuiteId(aead);
  const empty = Buffer.alloc(0);
  const pskIdHash = labeledExtract(suiteId, empty, 'psk_id_hash', empty);
  const infoHash = labeledExtract(suiteId, empty, 'info_hash', info);
  const keyScheduleContext = Buffer.concat([Buffer.from([MODE_BASE]), pskIdHash, infoHash]);
  const secret = labeledExtract(suiteId, sharedSecret, 'secret', empty);
  return {
    keyScheduleContext,
    secret,
    key: labeledExpand(suiteId, secret, 'key', keyScheduleContext, aeadKeyBytes(aead)),
    baseNonce: labeledExpand(suiteId, secret, 'base_nonce', keyScheduleContext, HPKE_NONCE_BYTES),
  };
}

/** RFC 9180 §5.2 ComputeNonce(seq) = base_nonce XOR I2OSP(seq, Nn). */
export function computeNonce(baseNonce: Buffer, seq: number): Buffer {
  const nonce = Buffer.from(baseNonce);
  let s = seq;
  for (let i = nonce.length - 1; i >= 0 && s > 0; i--) {
    nonce[i]! ^= s & 0xff;
    s = Math.floor(s / 256);
  }
  return nonce;
}

/** AEAD Seal(key, nonce, aad, pt) → ct ‖ tag (RFC 9180 §5.2). */
export function aeadSeal(aead: HpkeAead, key: Buffer, nonce: Buffer, aad: Buffer, plaintext: Buffer): Buffer {
  const c = createCipheriv(aeadCipher(aead), key, nonce, { authTagLength: HPKE_TAG_BYTES });
  c.setAAD(aad);
  return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
}

/** AEAD Open; throws HpkeError when the tag does not verify. */
export function aeadOpen(aead: HpkeAead, key: Buffer, nonce: Buffer, aad: Buffer, ciphertext: Buffer): Buffer {
  if (ciphertext.length < HPKE_TAG_BYTES) throw new HpkeError('HPKE ciphertext too short');
  const d = createDecipheriv(aeadCipher(aead), key, nonce, { authTagLength: HPKE_TAG_BYTES });
  d.setAAD(aad);
  d.setAuthTag(ciphertext.subarray(ciphertext.length - HPKE_TAG_BYTES));
  const head = d.update(ciphertext.subarray(0, ciphertext.length - HPKE_TAG_BYTES));
  try {
    return Buffer.concat([head, d.final()]);
  } catch {
    throw new HpkeError('HPKE ciphertext failed authentication');
  } finally {
    head.fill(0);
  }
}

/**
 * RFC 9180 §5.2 sender context, base mode (SetupBaseS): ONE encapsulation to `pkR`, then message
 * `seq` sealed with nonce `base_nonce XOR seq` (ContextS.Seal); opened by {@link openAtSequence}.
 * Contracts: the AEAD key and base nonce live only inside the object, {@link destroy} zeroes them
 * and every later `seal` throws (`enc` is public); sequence numbers are used once each, in order,
 * never past `maxMessages` (≤ 2^32 - 1: carried as a u32), then `seal` throws (§5.2
 * MessageLimitReachedError).
 */
export class HpkeSenderContext {
  static readonly MAX_MESSAGES = 0xffff_ffff;
  private key: Buffer | null;
  private baseNonce: Buffer | null;
  private seq = 0;

  private constructor(
    private readonly aead: HpkeAead,
    readonly enc: Buffer,
    schedule: KeyScheduleOutput,
    private readonly maxMessages: number,
  ) {
    this.key = schedule.key;
    this.baseNonce = schedule.baseNonce;
    schedule.secret.fill(0);
  }

  /** SetupBaseS(pkR, info); `ephemeral` only for test vectors (default: a fresh key pair). */
  static setup(aead: HpkeAead, pkR: X25519PublicKey, info: Buffer, o: { maxMessages?: number; ephemeral?: X25519PrivateKey } = {}): HpkeSenderContext {
    const maxMessages = o.maxMessages ?? HpkeSenderContext.MAX_MESSAGES;
    if (!Number.isInteger(maxMessages) || maxMessages < 1 || maxMessages > HpkeSenderContext.MAX_MESSAGES) throw new HpkeError('maxMessages out of range');
    const { sharedSecret, enc } = encap(pkR, o.ephemeral);
    try {
      return new HpkeSenderContext(aead, enc, keyScheduleBase(aead, sharedSecret, info), maxMessages);
    } finally {
      sharedSecret.fill(0);
    }
  }

  /** Messages sealed so far (= the next sequence number). */
  get sealed(): number {
    return this.seq;
  }
  get isDestroyed(): boolean {
    return this.key === null;
  }

  /** ContextS.Seal(aad, pt): the message's sequence number and ct ‖ tag. */
  seal(aad: Buffer, plaintext: Buffer): { seq: number; ciphertext: Buffer } {
    if (this.key === null || this.baseNonce === null) throw new HpkeError('HPKE context has been destroyed');
    if (this.seq >= this.maxMessages) throw new HpkeError('HPKE context message limit reached');
    const seq = this.seq++;
    return { seq, ciphertext: aeadSeal(this.aead, this.key, computeNonce(this.baseNonce, seq), aad, plaintext) };
  }

  /** Zeroes the AEAD key and base nonce. Idempotent. */
  destroy(): void {
    this.key?.fill(0);
    this.baseNonce?.fill(0);
    this.key = null;
    this.baseNonce = null;
  }
}

/** RFC 9180 §6.1 single-shot Seal in base mode: SetupBaseS + ContextS.Seal (seq 0). */
export function sealBase(aead: HpkeAead, pkR: X25519PublicKey, info: Buffer, aad: Buffer, plaintext: Buffer, ephemeral?: X25519PrivateKey): { enc: Buffer; ciphertext: Buffer } {
  const ctx = HpkeSenderContext.setup(aead, pkR, info, { maxMessages: 1, ...(ephemeral ? { ephemeral } : {}) });
  try {
    return { enc: ctx.enc, ciphertext: ctx.seal(aad, plaintext).ciphertext };
  } finally {
    ctx.destroy();
  }
}
