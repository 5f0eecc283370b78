/** HPKE (RFC 9180) base mode against the RFC 9180 Appendix A / CFRG test vectors. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  HpkeError,
  X25519PrivateKey,
  X25519PublicKey,
  aeadSeal,
  computeNonce,
  decap,
  encap,
  keyScheduleBase,
  HpkeSenderContext,
  sealBase,
  AEAD_AES_256_GCM,
  type HpkeAead,
} from '../src/crypto/hpke.js';
import { HpkeReceiverContext, openAtSequence, openBase } from '../src/crypto/hpke-receiver.js';

interface Vector {
  name: string;
  aead_id: HpkeAead;
  info: string;
  ikmE: string;
  ikmR: string;
  skRm: string;
  skEm: string;
  pkRm: string;
  pkEm: string;
  enc: string;
  shared_secret: string;
  key_schedule_context: string;
  secret: string;
  key: string;
  base_nonce: string;
  encryptions: { seq: number; aad: string; plaintext: string; nonce: string; ciphertext: string }[];
}
const { vectors } = JSON.parse(readFileSync(new URL('./fixtures/hpke-vectors.json', import.meta.url), 'utf8')) as { vectors: Vector[] };
const h = (s: string) => Buffer.from(s, 'hex');

describe.each(vectors)('HPKE $name', (v) => {
  it('DeriveKeyPair gives the vector key pairs (RFC 9180 §7.1.3)', () => {
    const skR = X25519PrivateKey.derive(h(v.ikmR));
    const skE = X25519PrivateKey.derive(h(v.ikmE));
    expect(skR.exportRaw().toString('hex')).toBe(v.skRm);
    expect(skR.publicKey.toString('hex')).toBe(v.pkRm);
    expect(skE.exportRaw().toString('hex')).toBe(v.skEm);
    expect(skE.publicKey.toString('hex')).toBe(v.pkEm);
  });

  it('Encap/Decap and the key schedule match (RFC 9180 §4.1, §5.1)', () => {
    const skR = new X25519PrivateKey(h(v.skRm));
    const skE = new X25519PrivateKey(h(v.skEm));
    const { sharedSecret, enc } = encap(new X25519PublicKey(h(v.pkRm)), skE);
    expect(enc.toString('hex')).toBe(v.enc);
    expect(sharedSecret.toString('hex')).toBe(v.shared_secret);
    expect(decap(h(v.enc), skR).toString('hex')).toBe(v.shared_secret);
    const ks = keyScheduleBase(v.aead_id, sharedSecret, h(v.info));
    expect(ks.keyScheduleContext.toString('hex')).toBe(v.key_schedule_context);
    expect(ks.secret.toString('hex')).toBe(v.secret);
    expect(ks.key.toString('hex')).toBe(v.key);
    expect(ks.baseNonce.toString('hex')).toBe(v.base_nonce);
    for (const e of v.encryptions) {
      const nonce = computeNonce(ks.baseNonce, e.seq);
      expect(nonce.toString('hex')).toBe(e.nonce);
      expect(aeadSeal(v.aead_id, ks.key, nonce, h(e.aad), h(e.plaintext)).toString('hex')).toBe(e.ciphertext);
    }
  });

  it('single-shot seal/open (seq 0) reproduces the first encryption and opens it', () => {
    const e = v.encryptions[0]!;
    const skR = new X25519PrivateKey(h(v.skRm));
    const sealed = sealBase(v.aead_id, new X25519PublicKey(h(v.pkRm)), h(v.info), h(e.aad), h(e.plaintext), new X25519PrivateKey(h(v.skEm)));
    expect(sealed.enc.toString('hex')).toBe(v.enc);
    expect(sealed.ciphertext.toString('hex')).toBe(e.ciphertext);
    expect(openBase(v.aead_id, h(v.enc), skR, h(v.info), h(e.aad), h(e.ciphertext)).toString('hex')).toBe(e.plaintext);
  });
});

describe.each(vectors)('HPKE sender context $name (RFC 9180 §5.2, key-wrap windows)', (v) => {
  it('one context seals messages 0..256 in order; those of the vector match it, and each opens at its sequence number', () => {
    const ctx = HpkeSenderContext.setup(v.aead_id, new X25519PublicKey(h(v.pkRm)), h(v.info), { ephemeral: new X25519PrivateKey(h(v.skEm)) });
    expect(ctx.enc.toString('hex')).toBe(v.enc);
    const skR = new X25519PrivateKey(h(v.skRm));
    const last = Math.max(...v.encryptions.map((e) => e.seq));
    for (let seq = 0; seq <= last; seq++) {
      const e = v.encryptions.find((x) => x.seq === seq);
      const out = ctx.seal(e ? h(e.aad) : Buffer.from(`filler ${seq}`), e ? h(e.plaintext) : Buffer.alloc(1));
      expect(out.seq).toBe(seq);
      if (!e) continue;
      expect(out.ciphertext.toString('hex')).toBe(e.ciphertext);
      expect(openAtSequence(v.aead_id, h(v.enc), skR, h(v.info), seq, h(e.aad), h(e.ciphertext)).toString('hex')).toBe(e.plaintext);
      // the same ciphertext at any other sequence number does not open
      expect(() => openAtSequence(v.aead_id, h(v.enc), skR, h(v.info), seq + 1, h(e.aad), h(e.ciphertext))).toThrow(HpkeError);
    }
  });

  it('one receiver context opens every message of the vector in any order, refuses a wrong sequence number, and nothing after destroy', () => {
    const rx = HpkeReceiverContext.setup(v.aead_id, h(v.enc), new X25519PrivateKey(h(v.skRm)), h(v.info));
    for (const e of [...v.encryptions].reverse()) {
      expect(rx.open(e.seq, h(e.aad), h(e.ciphertext)).toString('hex')).toBe(e.plaintext);
      expect(() => rx.open(e.seq + 1, h(e.aad), h(e.ciphertext))).toThrow(HpkeError);
    }
    rx.destroy();
    expect(rx.isDestroyed).toBe(true);
    const e = v.encryptions[0]!;
    expect(() => rx.open(e.seq, h(e.aad), h(e.ciphertext))).toThrow(/destroyed/);
  });

  it('refuses a message past its limit and any message after destroy', () => {
    const ctx = HpkeSenderContext.setup(v.aead_id, new X25519PublicKey(h(v.pkRm)), h(v.info), { maxMessages: 2 });
    ctx.seal(Buffer.alloc(0), Buffer.alloc(1));
    ctx.seal(Buffer.alloc(0), Buffer.alloc(1));
    expect(() => ctx.seal(Buffer.alloc(0), Buffer.alloc(1))).toThrow(/message limit/);
    const other = HpkeSenderContext.setup(v.aead_id, new X25519PublicKey(h(v.pkRm)), h(v.info));
    other.destroy();
    expect(other.isDestroyed).toBe(true);
    expect(() => other.seal(Buffer.alloc(0), Buffer.alloc(1))).toThrow(/destroyed/);
    expect(() => HpkeSenderContext.setup(v.aead_id, new X25519PublicKey(h(v.pkRm)), h(v.info), { maxMessages: 2 ** 32 })).toThrow(HpkeError);
  });
});

describe('HPKE failure cases', () => {
  const skR = X25519PrivateKey.generate();
  const pkR = new X25519PublicKey(skR.publicKey);
  const info = Buffer.from('paylog test info');
  const sealed = sealBase(AEAD_AES_256_GCM, pkR, info, Buffer.alloc(0), Buffer.alloc(32, 7));

  it('opens with the right key and info', () => {
    expect(openBase(AEAD_AES_256_GCM, sealed.enc, skR, info, Buffer.alloc(0), sealed.ciphertext)).toEqual(Buffer.alloc(32, 7));
  });
  it('refuses another info, another key, a flipped bit, a destroyed key', () => {
    expect(() => openBase(AEAD_AES_256_GCM, sealed.enc, skR, Buffer.from('other'), Buffer.alloc(0), sealed.ciphertext)).toThrow(HpkeError);
    expect(() => openBase(AEAD_AES_256_GCM, sealed.enc, X25519PrivateKey.generate(), info, Buffer.alloc(0), sealed.ciphertext)).toThrow(HpkeError);
    const bad = Buffer.from(sealed.ciphertext);
    bad[3]! ^= 1;
    expect(() => openBase(AEAD_AES_256_GCM, sealed.enc, skR, info, Buffer.alloc(0), bad)).toThrow(HpkeError);
    const doomed = new X25519PrivateKey(skR.exportRaw());
    doomed.destroy();
    expect(() => openBase(AEAD_AES_256_GCM, sealed.enc, doomed, info, Buffer.alloc(0), sealed.ciphertext)).toThrow(HpkeError);
  });
  it('refuses the all-zero DH output (low-order point, RFC 9180 §7.1.4)', () => {
    expect(() => decap(Buffer.alloc(32, 0), skR)).toThrow();
  });
});
