/**
 * Envelope format version 2: the per-transaction data key is wrapped LOCALLY under the public
 * key of the record's key epoch with HPKE (RFC 9180), instead of by a KMS call per record.
 *
 * ## Format v2 (byte level; notation as in envelope.ts: `LP(x)` = u32be(len x) ‖ x, `u8(n)`)
 *
 * | field           | size      | content                                                        |
 * |-----------------|-----------|----------------------------------------------------------------|
 * | `version`       | 1 (u8)    | `0x02`                                                         |
 * | `salt`          | 32 bytes  | random per record (CSPRNG), HKDF salt                          |
 * | `iv`            | 12 bytes  | random per record (CSPRNG), AES-GCM nonce                      |
 * | `ciphertext`    | len(pt)   | AES-256-GCM ciphertext of the plaintext                        |
 * | `tag`           | 16 bytes  | AES-GCM tag                                                    |
 * | `keyCommitment` | 32 bytes  | key commitment                                                 |
 * | `wrappedKey`    | 84 bytes  | window form: HPKE `enc` (32) ‖ u32be(seq) ‖ ciphertext of the data key (48) |
 * | `epochId`       | string    | the key epoch whose public key wrapped the data key            |
 *
 * Data key: 32 fresh CSPRNG bytes per record (never reused, never leaves this process unwrapped).
 * - `K_enc = HKDF-SHA256(IKM = data key, salt, "paylog/envelope/v2/encryption-key", 32)`
 * - `C     = HKDF-SHA256(IKM = data key, salt, "paylog/envelope/v2/key-commitment", 32)`
 * - `binding(label) = LP(label) ‖ u8(2) ‖ LP(utf8 transactionId) ‖ LP(utf8 processor) ‖ LP(utf8 epochId)`
 * - content: `ciphertext ‖ tag = AES-256-GCM(K_enc, iv, plaintext, AAD = binding("paylog/envelope/v2/aad"))`
 * - key wrap, window form (written since leaf format v3): a {@link KeyWrapWindowV2} is ONE
 *   RFC 9180 §5.2 base-mode sender context, suite KEM 0x0020 DHKEM(X25519, HKDF-SHA256), KDF
 *   0x0001 HKDF-SHA256, AEAD 0x0002 AES-256-GCM, `pkR` = epoch public key (raw 32 bytes),
 *   `info = windowInfo = LP("paylog/envelope/v2/window-info") ‖ u8(2) ‖ LP(utf8 processor) ‖
 *   LP(utf8 epochId)`; the data key of the window's `seq`-th record is ContextS.Seal with
 *   `aad = binding("paylog/envelope/v2/window-aad")`, `pt` = data key (nonce
 *   `base_nonce XOR seq`); `wrappedKey = enc ‖ u32be(seq) ‖ ct`. Records of one window share
 *   `enc` (and so the HPKE key); each has its own data key, sequence number and ciphertext, so
 *   deleting a record's `wrappedKey` (per-transaction shred) deletes the only copy of ITS data
 *   key. The keys layer (src/keys/epoch-record-keys.ts) bounds a window in time and records.
 * - key wrap, single-shot form (records written before; opened, never written): RFC 9180 §6.1
 *   single-shot base mode, same suite and `pkR`, `info = binding("paylog/envelope/v2/hpke-info")`,
 *   `aad` = empty, `pt` = data key; `wrappedKey = enc ‖ ct` (80 bytes). The two forms differ in
 *   length and in their HPKE labels, so one never opens as the other.
 *
 * Sealing needs only the epoch PUBLIC key: the submit path holds no epoch private key; its only
 * decryption capability is the HPKE key of its live window, which opens the data keys of the
 * records that window wrapped and nothing else (SECURITY.md "Key-wrap windows").
 * Opening needs the epoch private key (unwrapped by KMS, see src/kms/epoch-keys.ts): HPKE-open
 * the data key (binding checked by the key schedule), check the commitment in constant time,
 * then GCM-decrypt. A window-form data key may instead be opened with the window's receiver
 * context ({@link keyWrapWindowOf}: one X25519 agreement per window instead of one per record;
 * a context set up for another window or binding fails authentication). Every failure is `INTEGRITY_FAILURE` with a `details.reason` of
 * `ENVELOPE_REASONS`; data keys and derived keys are zeroed after use.
 */
import { createCipheriv, createDecipheriv, createHmac, timingSafeEqual } from 'node:crypto';
import {
  DATA_KEY_BYTES,
  ENVELOPE_REASONS,
  IV_BYTES,
  SALT_BYTES,
  TAG_BYTES,
  checkEnvelopeFields,
  encodeFields,
  freshRandom,
  integrityFailure,
  type EnvelopeBinding,
  type SealedFields,
} from './envelope.js';
import {
  AEAD_AES_256_GCM,
  HPKE_ENC_BYTES,
  HPKE_TAG_BYTES,
  HpkeError,
  HpkeSenderContext,
  X25519PublicKey,
  type X25519PrivateKey,
} from './hpke.js';
import { HpkeReceiverContext, openAtSequence, openBase } from './hpke-receiver.js';
import { PaylogError } from '../errors.js';

export const ENVELOPE_V2 = 2;
/** Single-shot form (opened only): enc ‖ ct. */
export const WRAPPED_KEY_V2_SINGLE_SHOT_BYTES = HPKE_ENC_BYTES + DATA_KEY_BYTES + HPKE_TAG_BYTES;
const WINDOW_SEQ_BYTES = 4;
/** Window form (written): enc ‖ u32be(seq) ‖ ct. */
export const WRAPPED_KEY_V2_WINDOW_BYTES = HPKE_ENC_BYTES + WINDOW_SEQ_BYTES + DATA_KEY_BYTES + HPKE_TAG_BYTES;
const LABEL_ENCRYPTION_KEY = Buffer.from('paylog/envelope/v2/encryption-key', 'ascii');
const LABEL_KEY_COMMITMENT = Buffer.from('paylog/envelope/v2/key-commitment', 'ascii');
const LABEL_AAD = 'paylog/envelope/v2/aad';
const LABEL_HPKE_INFO = 'paylog/envelope/v2/hpke-info';
const LABEL_WINDOW_INFO = 'paylog/envelope/v2/window-info';
const LABEL_WINDOW_AAD = 'paylog/envelope/v2/window-aad';
const EMPTY = Buffer.alloc(0);
const ONE = Buffer.from([0x01]);

/** What a v2 record is bound to: transaction, processor and key epoch. */
export interface EpochBinding extends EnvelopeBinding {
  epochId: string;
}

export interface SealedEnvelopeV2 extends SealedFields {
  version: 2;
  epochId: string;
}

function assertBinding(b: EpochBinding): void {
  for (const v of [b?.transactionId, b?.processor, b?.epochId]) {
    if (typeof v !== 'string' || v.length === 0) throw new PaylogError('INTERNAL', 'Envelope v2 binding needs a transactionId, a processor and an epochId');
  }
}

/** binding(label) = LP(label) ‖ u8(2) ‖ LP(transactionId) ‖ LP(processor) ‖ LP(epochId). */
export function bindingV2(label: string, b: EpochBinding): Buffer {
  return encodeFields(label, ENVELOPE_V2, [Buffer.from(b.transactionId, 'utf8'), Buffer.from(b.processor, 'utf8'), Buffer.from(b.epochId, 'utf8')]);
}

// RFC 5869 HKDF with one Extract and two 32-byte Expands (T(1) only), as in envelope v1.
function deriveKeys(dataKey: Buffer, salt: Buffer): { encKey: Buffer; commitment: Buffer } {
  const prk = createHmac('sha256', salt).update(dataKey).digest();
  try {
    return {
      encKey: createHmac('sha256', prk).update(LABEL_ENCRYPTION_KEY).update(ONE).digest(),
      commitment: createHmac('sha256', prk).update(LABEL_KEY_COMMITMENT).update(ONE).digest(),
    };
  } finally {
    prk.fill(0);
  }
}

/** windowInfo = LP(label) ‖ u8(2) ‖ LP(processor) ‖ LP(epochId): the HPKE info of a wrap window. */
function windowInfo(processor: string, epochId: string): Buffer {
  return encodeFields(LABEL_WINDOW_INFO, ENVELOPE_V2, [Buffer.from(processor, 'utf8'), Buffer.from(epochId, 'utf8')]);
}

/**
 * A key-wrap window: one HPKE encapsulation to an epoch public key for one processor, wrapping
 * the data keys of several records (format doc above).
 *
 * Contracts:
 * - Needs only the epoch PUBLIC key. While alive it holds the window's HPKE AEAD key, which
 *   opens exactly the data keys wrapped by THIS window (records this process sealed itself);
 *   {@link destroy} zeroes it, after which `wrap` throws.
 * - Wraps at most `maxRecords` data keys, each under its own sequence number, then throws
 *   (the caller opens a new window); refuses a binding of another processor or epoch.
 */
export class KeyWrapWindowV2 {
  private readonly context: HpkeSenderContext;

  constructor(
    readonly publicKey: X25519PublicKey,
    readonly processor: string,
    readonly epochId: string,
    maxRecords: number = HpkeSenderContext.MAX_MESSAGES,
  ) {
    assertBinding({ transactionId: '-', processor, epochId });
    this.context = HpkeSenderContext.setup(AEAD_AES_256_GCM, publicKey, windowInfo(processor, epochId), { maxMessages: maxRecords });
  }

  /** Data keys wrapped so far. */
  get wrapped(): number {
    return this.context.sealed;
  }

  get isDestroyed(): boolean {
    return this.context.isDestroyed;
  }

  /** The window's HPKE `enc` (public): the first bytes of every wrapped key it makes. */
  get enc(): Buffer {
    return this.context.enc;
  }

  /** `wrappedKey = enc ‖ u32be(seq) ‖ ContextS.Seal(binding("…/window-aad"), dataKey)`. */
  wrap(b: EpochBinding, dataKey: Buffer): Buffer {
    if (b.processor !== this.processor || b.epochId !== this.epochId) throw new PaylogError('INTERNAL', 'a key-wrap window wraps only records of its own processor and epoch');
    const { seq, ciphertext } = this.context.seal(bindingV2(LABEL_WINDOW_AAD, b), dataKey);
    const out = Buffer.allocUnsafe(WRAPPED_KEY_V2_WINDOW_BYTES);
    let at = this.context.enc.copy(out, 0);
    at = out.writeUInt32BE(seq, at);
    ciphertext.copy(out, at);
    return out;
  }

  /** Zeroes the window's HPKE key. Idempotent. */
  destroy(): void {
    this.context.destroy();
  }
}

/**
 * Seals `plaintext` for `b` under a fresh data key wrapped by `wrapper` (no KMS call): a window
 * of the caller's, or an epoch public key (a window of one record, destroyed at once). The data
 * key and derived keys are zeroed before this returns.
 */
export function sealEnvelopeV2(wrapper: KeyWrapWindowV2 | X25519PublicKey, b: EpochBinding, plaintext: Buffer): SealedEnvelopeV2 {
  assertBinding(b);
  const window = wrapper instanceof X25519PublicKey ? new KeyWrapWindowV2(wrapper, b.processor, b.epochId, 1) : wrapper;
  const dataKey = freshRandom(DATA_KEY_BYTES); // zeroed below, and in the pool as it was taken
  const random = freshRandom(SALT_BYTES + IV_BYTES);
  const salt = random.subarray(0, SALT_BYTES);
  const iv = random.subarray(SALT_BYTES);
  const { encKey, commitment } = deriveKeys(dataKey, salt);
  try {
    const wrappedKey = window.wrap(b, dataKey);
    const cipher = createCipheriv('aes-256-gcm', encKey, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(bindingV2(LABEL_AAD, b));
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    const tag = cipher.getAuthTag();
    return { version: ENVELOPE_V2, salt, iv, ciphertext, tag, keyCommitment: commitment, wrappedKey, epochId: b.epochId };
  } finally {
    dataKey.fill(0);
    encKey.fill(0);
    if (window !== wrapper) window.destroy();
  }
}

const checkShapeV2 = (env: SealedEnvelopeV2): void => checkEnvelopeFields(env, ENVELOPE_V2);

/**
 * The key-wrap window of a window-form wrapped data key, for a cache of receiver contexts: `id`
 * names the window (processor and `enc`; the epoch is the caller's key), `setup` derives its
 * receiver context from the epoch private key (the caller destroys it). null: single-shot form.
 */
export function keyWrapWindowOf(b: EpochBinding, wrappedKey: Buffer): { id: string; setup: (sk: X25519PrivateKey) => HpkeReceiverContext } | null {
  if (!Buffer.isBuffer(wrappedKey) || wrappedKey.length !== WRAPPED_KEY_V2_WINDOW_BYTES) return null;
  const enc = Buffer.from(wrappedKey.subarray(0, HPKE_ENC_BYTES));
  return { id: `${b.processor}\n${enc.toString('hex')}`, setup: (sk) => HpkeReceiverContext.setup(AEAD_AES_256_GCM, enc, sk, windowInfo(b.processor, b.epochId)) };
}

/**
 * HPKE-open of the wrapped data key in either form (by its length), with the epoch private key
 * or (window form only) the window's receiver context; the caller zeroes the key.
 */
function openWrappedKey(opener: X25519PrivateKey | HpkeReceiverContext, b: EpochBinding, wrappedKey: Buffer): Buffer {
  const enc = wrappedKey.subarray(0, HPKE_ENC_BYTES);
  if (wrappedKey.length === WRAPPED_KEY_V2_SINGLE_SHOT_BYTES) {
    if (opener instanceof HpkeReceiverContext) throw new HpkeError('a single-shot data key is opened with the epoch private key');
    return openBase(AEAD_AES_256_GCM, enc, opener, bindingV2(LABEL_HPKE_INFO, b), EMPTY, wrappedKey.subarray(HPKE_ENC_BYTES));
  }
  const seq = wrappedKey.readUInt32BE(HPKE_ENC_BYTES);
  const ct = wrappedKey.subarray(HPKE_ENC_BYTES + WINDOW_SEQ_BYTES);
  const aad = bindingV2(LABEL_WINDOW_AAD, b);
  if (opener instanceof HpkeReceiverContext) return opener.open(seq, aad, ct);
  return openAtSequence(AEAD_AES_256_GCM, enc, opener, windowInfo(b.processor, b.epochId), seq, aad, ct);
}

/** RFC 9180 open of the wrapped data key; INTEGRITY_FAILURE (DATA_KEY_UNWRAP_FAILED) on any mismatch. */
export function unwrapDataKeyV2(epochPrivateKey: X25519PrivateKey | HpkeReceiverContext, b: EpochBinding, wrappedKey: Buffer): Buffer {
  assertBinding(b);
  if (!Buffer.isBuffer(wrappedKey) || (wrappedKey.length !== WRAPPED_KEY_V2_SINGLE_SHOT_BYTES && wrappedKey.length !== WRAPPED_KEY_V2_WINDOW_BYTES)) {
    throw integrityFailure(ENVELOPE_REASONS.malformed);
  }
  try {
    const key = openWrappedKey(epochPrivateKey, b, wrappedKey);
    if (key.length !== DATA_KEY_BYTES) {
      key.fill(0);
      throw new HpkeError('wrong data key length');
    }
    return key;
  } catch (e) {
    throw integrityFailure(ENVELOPE_REASONS.keyUnwrap, e);
  }
}

/** Opens a v2 record with its epoch's private key (or its window's receiver context). Never returns unauthenticated data. */
export function openEnvelopeV2(epochPrivateKey: X25519PrivateKey | HpkeReceiverContext, b: EpochBinding, env: SealedEnvelopeV2): Buffer {
  checkShapeV2(env);
  if (env.epochId !== b.epochId) throw integrityFailure(ENVELOPE_REASONS.malformed);
  const dataKey = unwrapDataKeyV2(epochPrivateKey, b, env.wrappedKey);
  const { encKey, commitment } = deriveKeys(dataKey, env.salt);
  dataKey.fill(0);
  let head: Buffer | undefined;
  try {
    if (!timingSafeEqual(commitment, env.keyCommitment)) throw integrityFailure(ENVELOPE_REASONS.commitment);
    const decipher = createDecipheriv('aes-256-gcm', encKey, env.iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(bindingV2(LABEL_AAD, b));
    decipher.setAuthTag(env.tag);
    head = decipher.update(env.ciphertext);
    let tail: Buffer;
    try {
      tail = decipher.final();
    } catch (e) {
      head.fill(0);
      throw integrityFailure(ENVELOPE_REASONS.authentication, e);
    }
    return tail.length === 0 ? head : Buffer.concat([head, tail]);
  } finally {
    encKey.fill(0);
    commitment.fill(0);
  }
}
