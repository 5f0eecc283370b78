/**
 * Leaf format v2 (SECURITY.md "Leaf format v2"): deterministic CBOR, one builder per kind,
 * decodeLeaf over v1 and v2, the verifier's per-leaf checks (format, canonical, no card data).
 */
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  accessLeafV2,
  accessViewFromLeaf,
  adminEventLeaf,
  decodeCbor,
  decodeLeaf,
  encodeCbor,
  encodeLeaf,
  envelopeFromLeaf,
  keyEventLeaf,
  transactionLeaf,
  type TransactionLeafV2,
  transactionViewFromLeaf,
  type Leaf,
} from '../src/log/leaf.js';
import { checkLeaf } from '../src/audit/index.js';

const principal = { role: 'admin', name: 'ops', certificateFingerprint: `sha256:${'ab'.repeat(32)}` };
const time = new Date('2026-12-01T10:00:00.123Z');

/** A leaf format v2 transaction leaf, as paylog wrote them before v3 (BIN in `pm`, a fingerprint). */
function txLeaf(over: Partial<Parameters<typeof transactionLeaf>[0]> = {}): TransactionLeafV2 {
  const withEpk = over.envelope && 'epochId' in over.envelope.key ? { ...over, envelope: { ...over.envelope, epochPublicKeySha256: randomBytes(32) } } : over;
  const v3 = txLeafV3(withEpk);
  const { epk: _epk, ...env } = v3.env;
  return { ...v3, v: 2, pm: { type: 'card', brand: 'visa', bin: '41111111', last4: '1111', expiryMonth: 12, expiryYear: 2029 }, fp: 'fp_AAAAAAAAAAAAAAAAAAAAAA', env } as TransactionLeafV2;
}

function txLeafV3(over: Partial<Parameters<typeof transactionLeaf>[0]> = {}) {
  return transactionLeaf({
    time,
    transactionId: 'ord-2026-000123',
    processor: 'acme',
    amount: { value: 12345, currency: 'USD' },
    paymentMethod: { type: 'card', brand: 'visa', bin: '41111111', last4: '1111', expiryMonth: 12, expiryYear: 2029 },
    metadata: { invoice: 'INV-77' },
    envelope: {
      version: 1,
      key: { kmsKeyId: 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab' },
      salt: randomBytes(32),
      iv: randomBytes(12),
      ciphertext: randomBytes(110),
      tag: randomBytes(16),
      keyCommitment: randomBytes(32),
      wrappedKey: randomBytes(184),
    },
    ...over,
  });
}

describe('deterministic CBOR subset (RFC 8949 §4.2.1)', () => {
  it('encodes shortest heads and sorts map keys by encoded bytes (shorter first)', () => {
    expect(encodeCbor(23).toString('hex')).toBe('17');
    expect(encodeCbor(24).toString('hex')).toBe('1818');
    expect(encodeCbor(256).toString('hex')).toBe('190100');
    expect(encodeCbor(2 ** 32).toString('hex')).toBe('1b0000000100000000');
    expect(encodeCbor({ bb: 1, a: 2, c: 3 }).toString('hex')).toBe('a3616102616303626262' + '01');
    expect(encodeCbor(Buffer.from([1, 2])).toString('hex')).toBe('420102');
    expect(encodeCbor('é').toString('hex')).toBe('62c3a9');
  });
  it('encodes values larger than its first buffer, multi-byte keys in encoded order, and returns independent buffers', () => {
    const big = 'x'.repeat(70_000);
    const bytes = Buffer.alloc(5_000, 7);
    const v = { [big.slice(0, 30)]: bytes, 'é': 'ü'.repeat(3_000), z: [1, 2, 3], a: big };
    const enc = encodeCbor(v);
    // 'z' (0x617a) < 'é' (0x62c3a9) < the 30-byte key (0x781e…) < … : encoded bytes, not JS order.
    expect(Object.keys(decodeCbor(enc) as object)).toEqual(['a', 'z', 'é', big.slice(0, 30)]);
    expect(decodeCbor(enc)).toEqual(v);
    const first = encodeCbor({ k: 'first' });
    encodeCbor({ k: 'other' });
    expect(decodeCbor(first)).toEqual({ k: 'first' });
  });
  it('refuses non-deterministic and out-of-subset encodings', () => {
    for (const hex of [
      '1817', // non-shortest
      'a2616202616101', // keys out of order
      'a2616101616102', // duplicate key
      '5f4101ff', // indefinite length
      '20', // negative int
      'f5', // true
      'f93c00', // float
      'c001', // tag
      '0101', // trailing
      '62c3', // truncated
      '61ff', // bad UTF-8
      'a10101', // integer map key
    ]) {
      expect(() => decodeCbor(Buffer.from(hex, 'hex')), hex).toThrow(/deterministic CBOR/);
    }
  });
});

describe('leaf format v2', () => {
  it('transaction: round-trips, serves the view and envelope from the leaf, commits to the wrapped key', () => {
    const leaf = txLeaf({ cse: { kid: 'cse-2026-12' } });
    const bytes = encodeLeaf(leaf);
    expect(bytes[0]! >> 5).toBe(5); // a CBOR map
    const back = decodeLeaf(bytes);
    expect(encodeLeaf(back)).toEqual(bytes);
    if (back.v !== 2 || back.type !== 'transaction') throw new Error('wrong kind');
    expect(transactionViewFromLeaf(back)).toEqual({
      transactionId: 'ord-2026-000123',
      processor: 'acme',
      amount: { value: 12345, currency: 'USD' },
      paymentMethod: { type: 'card', brand: 'visa', bin: '41111111', last4: '1111', expiryMonth: 12, expiryYear: 2029 },
      fingerprint: 'fp_AAAAAAAAAAAAAAAAAAAAAA',
      metadata: { invoice: 'INV-77' },
      createdAt: '2026-12-01T10:00:00.123Z',
      clientSideEncryption: { kid: 'cse-2026-12' },
    });
    const env = envelopeFromLeaf(back);
    expect(env.ciphertext).toEqual(Buffer.from(leaf.env.ct));
    expect(env.key).toEqual({ kmsKeyId: leaf.env.kms });
    expect(checkLeaf(0, bytes)).toHaveProperty('leaf');
  });

  it('transaction with an epoch key reference (envelope v2) and no salt', () => {
    const leaf = txLeaf({
      envelope: { version: 2, key: { epochId: 'acme/2026-12' }, iv: randomBytes(12), ciphertext: randomBytes(90), tag: randomBytes(16), keyCommitment: randomBytes(32), wrappedKeySha256: createHash('sha256').update('x').digest() },
    });
    const back = decodeLeaf(encodeLeaf(leaf));
    if (back.v !== 2 || back.type !== 'transaction') throw new Error('wrong kind');
    expect(envelopeFromLeaf(back).key).toEqual({ epochId: 'acme/2026-12' });
    expect(back.env.salt).toBeUndefined();
  });

  it('leaf format v3 transaction: no BIN, no fingerprint; an epoch reference commits to the epoch public key (epk)', () => {
    const epk = createHash('sha256').update('epoch public key').digest();
    const leaf = txLeafV3({
      envelope: { version: 2, key: { epochId: 'acme/2026-12' }, iv: randomBytes(12), ciphertext: randomBytes(90), tag: randomBytes(16), keyCommitment: randomBytes(32), wrappedKeySha256: randomBytes(32), epochPublicKeySha256: epk },
    });
    const bytes = encodeLeaf(leaf);
    const back = decodeLeaf(bytes);
    if (back.v !== 3 || back.type !== 'transaction') throw new Error('wrong kind');
    expect(back.pm).toEqual({ type: 'card', brand: 'visa', last4: '1111', expiryMonth: 12, expiryYear: 2029 });
    expect(back).not.toHaveProperty('fp');
    expect(envelopeFromLeaf(back).epochPublicKeySha256).toEqual(epk);
    expect(transactionViewFromLeaf(back)).not.toHaveProperty('fingerprint');
    expect(checkLeaf(0, bytes)).toHaveProperty('leaf');
    // A BIN, a fingerprint, or an epoch reference without epk is not leaf format v3.
    for (const bad of [
      { ...back, pm: { ...back.pm, bin: '41111111' } },
      { ...back, fp: 'fp_AAAAAAAAAAAAAAAAAAAAAA' },
      { ...back, env: { ...back.env, epk: undefined } },
    ]) {
      expect(() => encodeLeaf(JSON.parse(JSON.stringify(bad), (_k, v) => (v && v.type === 'Buffer' ? Buffer.from(v.data) : v)))).toThrow(/leaf format v3/);
    }
  });

  it('a card transaction leaf is compact (≤ 600 bytes with a 110-byte ciphertext and a full KMS ARN)', () => {
    expect(encodeLeaf(txLeaf()).length).toBeLessThanOrEqual(600);
  });

  it('access, admin and key events round-trip; views decode from the leaf', () => {
    const leaves: Leaf[] = [
      accessLeafV2({ time, transactionId: 'ord-1', action: 'release', principal: { ...principal, role: 'processor', name: 'acme' }, purpose: 'capture', outcome: 'granted', sourceAddress: '127.0.0.1' }),
      adminEventLeaf({ time, action: 'processor_disabled', principal, sourceAddress: '::1', outcome: 'granted', processor: 'globex' }),
      adminEventLeaf({ time, action: 'certificate_revoked', principal, sourceAddress: '::1', outcome: 'denied', reason: 'FORBIDDEN', certificateFingerprint: `sha256:${'cd'.repeat(32)}`, serial: '0a1b', note: 'key compromise' }),
      keyEventLeaf({ time, event: 'epoch_created', actor: 'system', epochId: 'acme/2026-12', processor: 'acme', periodStart: new Date('2026-12-01T00:00:00Z'), periodEnd: new Date('2027-01-01T00:00:00Z'), kmsKeyId: 'alias/paylog-2026-12', wrappedKeySha256: randomBytes(32) }),
      keyEventLeaf({ time, event: 'retention_run', actor: principal, policy: { retention: 'P13M', asOf: time }, counts: { epochsShredded: 2, transactions: 0 } }),
      keyEventLeaf({ time, event: 'transaction_shredded', actor: principal, transactionId: 'ord-1', reason: 'customer request' }),
    ];
    for (const l of leaves) {
      const bytes = encodeLeaf(l);
      const back = decodeLeaf(bytes);
      expect(back).toEqual(l);
      expect(checkLeaf(1, bytes)).toHaveProperty('leaf');
    }
    const a = decodeLeaf(encodeLeaf(leaves[0]!));
    if (a.v === 1 || a.type !== 'access') throw new Error('wrong kind');
    expect(accessViewFromLeaf(a).principal).toEqual({ role: 'processor', name: 'acme', certificateFingerprint: principal.certificateFingerprint });
  });

  it('builders refuse what the schema refuses (no undecodable leaf reaches the log)', () => {
    expect(() => encodeLeaf(txLeaf({ amount: { value: 0, currency: 'USD' } }))).toThrow();
    expect(() => encodeLeaf(keyEventLeaf({ time, event: 'epoch_created', actor: 'system', epochId: 'not an epoch' }))).toThrow();
    const both = txLeaf();
    expect(() => encodeLeaf({ ...both, env: { ...both.env, ep: 'acme/2026-12' } })).toThrow();
    expect(() => encodeLeaf({ ...both, extra: 1 } as unknown as Leaf)).toThrow();
  });

  it('decodeLeaf refuses unknown fields, wrong versions and non-canonical bytes', () => {
    const l = txLeaf();
    expect(() => decodeLeaf(encodeCbor({ ...(l as any), x: 1 }))).toThrow(/format v2/);
    expect(() => decodeLeaf(encodeCbor({ ...(l as any), v: 3 }))).toThrow();
    const bytes = encodeLeaf(l);
    // Re-encode the time with a non-shortest head: same value, different bytes.
    expect(() => decodeLeaf(Buffer.concat([bytes, Buffer.from([0])]))).toThrow();
  });

  it('the verifier flags a PAN in free text and in metadata keys of a v2 leaf', () => {
    const inValue = encodeLeaf(txLeaf({ metadata: { note: '4111 1111 1111 1111' } }));
    expect(checkLeaf(3, inValue)).toMatchObject({ failure: { code: 'CARD_DATA_IN_LEAF', index: 3 } });
    const inKey = encodeLeaf(txLeaf({ metadata: { '4111111111111111': 'x' } }));
    expect(checkLeaf(4, inKey)).toMatchObject({ failure: { code: 'CARD_DATA_IN_LEAF', index: 4 } });
    const inReason = encodeLeaf(keyEventLeaf({ time, event: 'transaction_shredded', actor: principal, reason: 'card 4111-1111-1111-1111' }));
    expect(checkLeaf(5, inReason)).toMatchObject({ failure: { code: 'CARD_DATA_IN_LEAF' } });
  });

  it('v1 leaves still decode', () => {
    const v1 = Buffer.from(
      '{"action":"release","outcome":"granted","principal":{"certificateFingerprint":"sha256:' + 'ab'.repeat(32) + '","name":"acme","role":"processor"},"sourceAddress":"127.0.0.1","time":"2026-01-01T00:00:00.000Z","transactionId":"ord-1","type":"access","v":1}',
    );
    expect(decodeLeaf(v1)).toMatchObject({ v: 1, type: 'access' });
    expect(checkLeaf(0, v1)).toHaveProperty('leaf');
  });
});
