/**
 * HPKE (RFC 9180) base mode, the receiver side, for the suites of ./hpke.ts: a receiver context
 * (SetupBaseR once, then ContextR.Open by sequence number) and the single-shot opens built on it.
 *
 * Contracts:
 * - `open` throws `HpkeError` on any failure (bad encapsulation, wrong key, wrong info/aad,
 *   tampered ciphertext, sequence number out of range); it never returns unauthenticated plaintext.
 * - A {@link HpkeReceiverContext} holds only the AEAD key and base nonce of its schedule (the DH
 *   output, shared secret and key-schedule secret are zeroed during setup); {@link
 *   HpkeReceiverContext.destroy} zeroes them and every later `open` throws. It opens exactly the
 *   messages sealed by the one sender context with the same `enc` and `info`: for envelope v2, the
 *   data keys of one key-wrap window (src/crypto/envelope-v2.ts), and nothing else.
 */
import { HpkeError, HpkeSenderContext, aeadOpen, computeNonce, decap, keyScheduleBase, type HpkeAead, type KeyScheduleOutput, type X25519PrivateKey } from './hpke.js';

export class HpkeReceiverContext {
  private key: Buffer | null;
  private baseNonce: Buffer | null;

  private constructor(
    private readonly aead: HpkeAead,
    ks: KeyScheduleOutput,
  ) {
    ks.secret.fill(0);
    this.key = ks.key;
    this.baseNonce = ks.baseNonce;
  }

  /** SetupBaseR(enc, skR, info) (RFC 9180 §5.1.1): one X25519 agreement and the key schedule. */
  static setup(aead: HpkeAead, enc: Buffer, skR: X25519PrivateKey, info: Buffer): HpkeReceiverContext {
    const sharedSecret = decap(enc, skR);
    try {
      return new HpkeReceiverContext(aead, keyScheduleBase(aead, sharedSecret, info));
    } finally {
      sharedSecret.fill(0);
    }
  }

  get isDestroyed(): boolean {
    return this.key === null;
  }

  /** ContextR.Open(aad, ct) of message `seq` (nonce `base_nonce XOR seq`, RFC 9180 §5.2). */
  open(seq: number, aad: Buffer, ciphertext: Buffer): Buffer {
    if (!Number.isInteger(seq) || seq < 0 || seq > HpkeSenderContext.MAX_MESSAGES) throw new HpkeError('HPKE sequence number out of range');
    if (this.key === null || this.baseNonce === null) throw new HpkeError('HPKE context has been destroyed');
    return aeadOpen(this.aead, this.key, computeNonce(this.baseNonce, seq), aad, ciphertext);
  }

  /** Zeroes the AEAD key and base nonce. Idempotent. */
  destroy(): void {
    this.key?.fill(0);
    this.baseNonce?.fill(0);
    this.key = null;
    this.baseNonce = null;
  }
}

/** RFC 9180 §5.2 receiver, message `seq`: a receiver context used once and destroyed. */
export function openAtSequence(aead: HpkeAead, enc: Buffer, skR: X25519PrivateKey, info: Buffer, seq: number, aad: Buffer, ciphertext: Buffer): Buffer {
  if (!Number.isInteger(seq) || seq < 0 || seq > HpkeSenderContext.MAX_MESSAGES) throw new HpkeError('HPKE sequence number out of range');
  const ctx = HpkeReceiverContext.setup(aead, enc, skR, info);
  try {
    return ctx.open(seq, aad, ciphertext);
  } finally {
    ctx.destroy();
  }
}

/** RFC 9180 §6.1 single-shot Open in base mode: SetupBaseR + ContextR.Open (seq 0). */
export function openBase(aead: HpkeAead, enc: Buffer, skR: X25519PrivateKey, info: Buffer, aad: Buffer, ciphertext: Buffer): Buffer {
  return openAtSequence(aead, enc, skR, info, 0, aad, ciphertext);
}
