/**
 * Issue 20: key-wrap windows (src/crypto/envelope-v2.ts `KeyWrapWindowV2`, src/keys/epoch-record-keys.ts).
 * One HPKE encapsulation per epoch and window wraps each record's own fresh data key; records
 * written before (single-shot form) still open; a wrapped key never opens as another record's;
 * the keys layer bounds a window in time and records and closes it when its epoch is refused or
 * shredded.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  KeyWrapWindowV2,
  WRAPPED_KEY_V2_SINGLE_SHOT_BYTES,
  WRAPPED_KEY_V2_WINDOW_BYTES,
  bindingV2,
  openEnvelopeV2,
  sealEnvelopeV2,
  type EpochBinding,
  unwrapDataKeyV2,
  type SealedEnvelopeV2,
} from '../src/crypto/envelope-v2.js';
import { AEAD_AES_256_GCM, X25519PrivateKey, X25519PublicKey, sealBase } from '../src/crypto/hpke.js';
import type { HpkeReceiverContext } from '../src/crypto/hpke-receiver.js';
import { EpochRecordKeys } from '../src/keys/epoch-record-keys.js';
import type { EpochKeyring } from '../src/kms/epoch-keys.js';
import type { SealedRecord, StoredRecord } from '../src/keys/record-keys.js';
import { decodeLeaf, envelopeFromLeaf } from '../src/log/leaf.js';
import { DATA_KEYS_WHOLE, query } from './helpers/db.js';
import { releaseTo, submitCard } from './helpers/keys.js';
import { startTestPaylog, type TestPaylog } from './helpers/paylog.js';

const sk = X25519PrivateKey.generate();
const pk = new X25519PublicKey(sk.publicKey);
const pt = (i: number) => Buffer.from(`{"type":"card","n":${i}}`);
const bind = (transactionId: string, epochId = 'acme/2031-03-14/1', processor = 'acme'): EpochBinding => ({ transactionId, processor, epochId });
const enc = (e: { wrappedKey: Buffer }) => e.wrappedKey.subarray(0, 32).toString('hex');
const reason = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return (e as { details?: { reason?: string } }).details?.reason ?? String(e);
  }
  return 'opened';
};

describe('envelope v2 window form', () => {
  it('records of one window share one encapsulation, each with its own sequence number and data key, and each opens alone', () => {
    const w = new KeyWrapWindowV2(pk, 'acme', 'acme/2031-03-14/1');
    const sealed = [0, 1, 2].map((i) => sealEnvelopeV2(w, bind(`t${i}`), pt(i)));
    expect(sealed.map((s) => s.wrappedKey.length)).toEqual([84, 84, 84]);
    expect(WRAPPED_KEY_V2_WINDOW_BYTES).toBe(84);
    expect(new Set(sealed.map(enc)).size).toBe(1);
    expect(sealed.map((s) => s.wrappedKey.readUInt32BE(32))).toEqual([0, 1, 2]);
    expect(w.wrapped).toBe(3);
    sealed.forEach((s, i) => expect(openEnvelopeV2(sk, bind(`t${i}`), s)).toEqual(pt(i)));
  });

  it("a wrapped key moved to another record of the same window, or with another sequence number, does not open (DATA_KEY_UNWRAP_FAILED)", () => {
    const w = new KeyWrapWindowV2(pk, 'acme', 'acme/2031-03-14/1');
    const [a, b] = [sealEnvelopeV2(w, bind('ta'), pt(1)), sealEnvelopeV2(w, bind('tb'), pt(2))];
    expect(reason(() => openEnvelopeV2(sk, bind('tb'), { ...b, wrappedKey: a.wrappedKey }))).toBe('DATA_KEY_UNWRAP_FAILED');
    const reseq = Buffer.from(b.wrappedKey);
    reseq.writeUInt32BE(0, 32);
    expect(reason(() => openEnvelopeV2(sk, bind('tb'), { ...b, wrappedKey: reseq }))).toBe('DATA_KEY_UNWRAP_FAILED');
    // the same record under another processor or epoch name does not open either
    expect(reason(() => openEnvelopeV2(sk, bind('ta', 'acme/2031-03-14/2'), { ...a, epochId: 'acme/2031-03-14/2' }))).toBe('DATA_KEY_UNWRAP_FAILED');
    expect(reason(() => openEnvelopeV2(sk, bind('ta', 'acme/2031-03-14/1', 'globex'), a))).toBe('DATA_KEY_UNWRAP_FAILED');
    // a wrapped key of neither length is malformed
    expect(reason(() => openEnvelopeV2(sk, bind('ta'), { ...a, wrappedKey: a.wrappedKey.subarray(0, 83) }))).toBe('MALFORMED_ENVELOPE');
  });

  it('a record of the single-shot form (written before windows) still opens; its wrapped key does not open as window form or vice versa', () => {
    // Built exactly as the previous sealEnvelopeV2 did: the window's data key rewrapped single-shot.
    const w = new KeyWrapWindowV2(pk, 'acme', 'acme/2031-03-14/1');
    const s = sealEnvelopeV2(w, bind('old'), pt(7));
    const dataKey = unwrapDataKeyV2(sk, bind('old'), s.wrappedKey);
    const single = sealBase(AEAD_AES_256_GCM, pk, bindingV2('paylog/envelope/v2/hpke-info', bind('old')), Buffer.alloc(0), dataKey);
    const legacy: SealedEnvelopeV2 = { ...s, wrappedKey: Buffer.concat([single.enc, single.ciphertext]) };
    expect(legacy.wrappedKey.length).toBe(WRAPPED_KEY_V2_SINGLE_SHOT_BYTES);
    expect(openEnvelopeV2(sk, bind('old'), legacy)).toEqual(pt(7));
    // the single-shot ciphertext padded to the window length (seq 0) is refused, and the window form cut to 80 bytes too
    const asWindow = Buffer.concat([single.enc, Buffer.alloc(4), single.ciphertext]);
    expect(reason(() => openEnvelopeV2(sk, bind('old'), { ...s, wrappedKey: asWindow }))).toBe('DATA_KEY_UNWRAP_FAILED');
    const asSingle = Buffer.concat([s.wrappedKey.subarray(0, 32), s.wrappedKey.subarray(36)]);
    expect(reason(() => openEnvelopeV2(sk, bind('old'), { ...s, wrappedKey: asSingle }))).toBe('DATA_KEY_UNWRAP_FAILED');
  });

  it('a window wraps only its own processor and epoch, at most its record budget, and nothing once destroyed', () => {
    const w = new KeyWrapWindowV2(pk, 'acme', 'acme/2031-03-14/1', 2);
    expect(() => sealEnvelopeV2(w, bind('x', 'acme/2031-03-14/2'), pt(1))).toThrow(/own processor and epoch/);
    expect(() => sealEnvelopeV2(w, bind('x', 'acme/2031-03-14/1', 'globex'), pt(1))).toThrow(/own processor and epoch/);
    sealEnvelopeV2(w, bind('a'), pt(1));
    sealEnvelopeV2(w, bind('b'), pt(2));
    expect(() => sealEnvelopeV2(w, bind('c'), pt(3))).toThrow(/message limit/);
    const d = new KeyWrapWindowV2(pk, 'acme', 'acme/2031-03-14/1');
    d.destroy();
    expect(() => sealEnvelopeV2(d, bind('a'), pt(1))).toThrow(/destroyed/);
  });

  it('sealing to a bare public key is a window of one record (the form tests and tools use)', () => {
    const [a, b] = [sealEnvelopeV2(pk, bind('a'), pt(1)), sealEnvelopeV2(pk, bind('b'), pt(2))];
    expect(enc(a)).not.toBe(enc(b));
    expect(openEnvelopeV2(sk, bind('b'), b)).toEqual(pt(2));
  });
});

/** An epoch keyring with one fixed epoch per processor (what EpochRecordKeys asks of it). */
function fixedEpochs(): EpochKeyring & { forgotten: string[] } {
  const epochs = new Map<string, { epochId: string; publicKey: X25519PublicKey }>([['acme', { epochId: 'acme/2031-03-14/1', publicKey: pk }]]);
  const forgotten: string[] = [];
  return {
    forgotten,
    knownCurrent: (p: string) => epochs.get(p) ?? null,
    currentEpoch: async (p: string) => epochs.get(p)!,
    withPrivateKey: async <T>(_id: string, fn: (k: X25519PrivateKey) => T) => fn(sk),
    withWindowContext: async <T>(_id: string, _window: string, setup: (k: X25519PrivateKey) => HpkeReceiverContext, fn: (c: HpkeReceiverContext) => T) => {
      const c = setup(sk);
      try {
        return fn(c);
      } finally {
        c.destroy();
      }
    },
    forgetCurrent: () => {},
    forget: (id: string) => void forgotten.push(id),
  } as unknown as EpochKeyring & { forgotten: string[] };
}

const storedOf = (s: SealedRecord): StoredRecord => ({ ...s, keyRef: { epochId: s.keyRef.epochId! }, stored: { kmsKeyId: null, epochId: s.keyRef.epochId! } });

describe('EpochRecordKeys: key-wrap windows in the key layer', () => {
  const at = { now: new Date(Date.UTC(2031, 2, 14, 9)) };
  const seal = (k: EpochRecordKeys, id: string) => k.seal({ transactionId: id, processor: 'acme' }, pt(1), at);

  it('records sealed within a window share its encapsulation; the window ends after its record budget', async () => {
    const k = new EpochRecordKeys(fixedEpochs(), { windowMs: 60_000, windowRecords: 3 });
    const s = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((id) => seal(k, id)));
    expect(s.map((x) => x.wrappedKey.readUInt32BE(32))).toEqual([0, 1, 2, 0, 1]);
    expect(enc(s[0]!)).toBe(enc(s[2]!));
    expect(enc(s[3]!)).not.toBe(enc(s[2]!));
    expect(s[0]!.epochPublicKeySha256).toEqual(createHash('sha256').update(pk.raw).digest());
    for (const [i, x] of s.entries()) expect(await k.open(storedOf(x), { transactionId: 'abcde'[i]!, processor: 'acme' })).toEqual(pt(1));
  });

  it('a window ends after its time, even with no further record', async () => {
    const k = new EpochRecordKeys(fixedEpochs(), { windowMs: 50, windowRecords: 1000 });
    const a = await seal(k, 'a');
    const window = (k as unknown as { windows: Map<string, { window: KeyWrapWindowV2 }> }).windows.get('acme/2031-03-14/1')!.window;
    expect(window.isDestroyed).toBe(false);
    await new Promise((r) => setTimeout(r, 120));
    expect(window.isDestroyed).toBe(true);
    const b = await seal(k, 'b');
    expect(enc(b)).not.toBe(enc(a));
  });

  it('a refused or shredded epoch closes its window at once', async () => {
    const epochs = fixedEpochs();
    const k = new EpochRecordKeys(epochs, { windowMs: 60_000, windowRecords: 1000 });
    const a = await seal(k, 'a');
    k.sealingKeyRefused('acme', { epochId: 'acme/2031-03-14/1' }, false);
    const b = await seal(k, 'b');
    expect(enc(b)).not.toBe(enc(a));
    k.keyShredded({ epochId: 'acme/2031-03-14/1' });
    expect(epochs.forgotten).toEqual(['acme/2031-03-14/1']);
    const c = await seal(k, 'c');
    expect(enc(c)).not.toBe(enc(b));
  });
});

describe('early shred of one record of a shared window (real service, PostgreSQL, KMS)', () => {
  let t: TestPaylog;
  beforeAll(async () => {
    t = await startTestPaylog();
  });
  afterAll(async () => t?.stop());

  it("deletes that record's wrapped key only: it answers 410, its window neighbour still releases, and the neighbour's wrapped key with the epoch private key does not open it", async () => {
    const ids = await Promise.all(Array.from({ length: 6 }, () => submitCard(t)));
    const rows = (await query(t.databaseUrl, `SELECT t.transaction_id, d.epoch_id, d.wrapped_key FROM ${DATA_KEYS_WHOLE} d JOIN transactions t ON t.log_index = d.log_index WHERE t.transaction_id = ANY($1)`, [ids])) as { transaction_id: string; epoch_id: string; wrapped_key: Buffer }[];
    expect(rows.every((r) => r.wrapped_key.length === 84)).toBe(true);
    const byEnc = new Map<string, typeof rows>();
    for (const r of rows) byEnc.set(r.wrapped_key.subarray(0, 32).toString('hex'), [...(byEnc.get(r.wrapped_key.subarray(0, 32).toString('hex')) ?? []), r]);
    const shared = [...byEnc.values()].find((g) => g.length >= 2);
    expect(shared, 'six concurrent submissions share a window').toBeDefined();
    const [victim, neighbour] = shared! as [(typeof rows)[0], (typeof rows)[0]];
    // Stored once per window (migration 0018): each row holds seq ‖ ct (52 bytes) and names the
    // one key_wrap_windows row whose enc is the shared prefix.
    const stored = await query(
      t.databaseUrl,
      'SELECT d.window_id::text AS w, octet_length(d.wrapped_key) AS n, kw.enc FROM data_keys d JOIN transactions t ON t.log_index = d.log_index JOIN key_wrap_windows kw ON kw.id = d.window_id WHERE t.transaction_id = ANY($1)',
      [[victim.transaction_id, neighbour.transaction_id]],
    );
    expect(stored.map((r) => r.n)).toEqual([52, 52]);
    expect(new Set(stored.map((r) => r.w)).size).toBe(1);
    expect(stored[0].enc).toEqual(victim.wrapped_key.subarray(0, 32));

    expect((await t.call('admin', 'POST', `/v1/admin/transactions/${victim.transaction_id}/shred`, { reason: 'customer request' })).status).toBe(200);
    const [dk] = await query(t.databaseUrl, 'SELECT wrapped_key FROM data_keys WHERE log_index = (SELECT log_index FROM transactions WHERE transaction_id = $1)', [victim.transaction_id]);
    expect(dk.wrapped_key).toBeNull();
    expect((await releaseTo(t, victim.transaction_id)).status).toBe(410);
    expect((await releaseTo(t, neighbour.transaction_id)).status).toBe(200);

    // An attacker with a database copy taken after the shred AND the epoch private key: the
    // window's shared encapsulation (in the neighbour's row) opens no data key but the neighbour's.
    const leaf = decodeLeaf((await query(t.databaseUrl, 'SELECT e.leaf FROM transactions t JOIN log_entries e ON e.idx = t.log_index WHERE t.transaction_id = $1', [victim.transaction_id]))[0].leaf);
    if (leaf.v !== 3 || leaf.type !== 'transaction') throw new Error('expected a v3 transaction leaf');
    const env = envelopeFromLeaf(leaf);
    const epochId = victim.epoch_id;
    const b = { transactionId: victim.transaction_id, processor: 'acme', epochId };
    const sealed = { version: 2 as const, salt: env.salt!, iv: env.iv, ciphertext: env.ciphertext, tag: env.tag, keyCommitment: env.keyCommitment, epochId };
    const reseq = Buffer.from(neighbour.wrapped_key);
    reseq.writeUInt32BE(victim.wrapped_key.readUInt32BE(32), 32); // the victim's own sequence number
    for (const candidate of [neighbour.wrapped_key, reseq]) {
      await expect(t.paylog.epochs.withPrivateKey(epochId, (k) => openEnvelopeV2(k, b, { ...sealed, wrappedKey: candidate }))).rejects.toMatchObject({ code: 'INTEGRITY_FAILURE' });
    }
  });
});
