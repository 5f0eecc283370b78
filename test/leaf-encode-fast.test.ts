/**
 * `encodeLeafFast` (src/log/leaf/encode-fast.ts, the submission path's leaf encoder) against
 * `encodeLeaf`: over leaves of several kinds and every value-level mutation of them (each field
 * deleted, replaced by values around its bounds and by wrong types, unknown keys added), both
 * give the same bytes, or both throw the same code and message. So the fast encoder never lets
 * into the log a leaf `encodeLeaf` would have refused.
 */
import { describe, expect, it } from 'vitest';
import { accessLeafV2, adminEventLeaf, decodeLeaf, decodeLeafFast, encodeLeaf, encodeLeafFast, transactionLeaf, type Leaf } from '../src/log/leaf.js';
import { syntheticLeafSource } from '../scripts/bench/synthetic-log.js';

const principal = { role: 'admin', name: 'ops', certificateFingerprint: `sha256:${'ab'.repeat(32)}` };
const time = new Date('2026-12-01T10:00:00.123Z');
const d32 = (b: number) => Buffer.alloc(32, b);
const env = (key: { kmsKeyId: string } | { epochId: string }) => ({
  version: 2, key, iv: Buffer.alloc(12, 1), ciphertext: Buffer.alloc(40, 2), tag: Buffer.alloc(16, 3), keyCommitment: d32(4), wrappedKeySha256: d32(5),
  ...('epochId' in key ? { epochPublicKeySha256: d32(6) } : {}),
});
const base = { time, transactionId: 'ord-1', processor: 'acme', amount: { value: 1, currency: 'EUR' } };

function leaves(): Leaf[] {
  const gen = syntheticLeafSource();
  return [
    transactionLeaf({ ...base, paymentMethod: { type: 'card', brand: 'visa', last4: '4242', expiryMonth: 1, expiryYear: 2030 }, envelope: env({ epochId: 'acme/2026-12' }) }),
    transactionLeaf({ ...base, paymentMethod: { type: 'iban', country: 'DE', last4: 'AB12', bic: 'DEUTDEFF500' }, metadata: { a: 'b' }, envelope: env({ kmsKeyId: 'arn:k' }), cse: { kid: 'cse-1' } }),
    transactionLeaf({ ...base, paymentMethod: { type: 'us_bank_account', routingNumber: '011000015', last4: '6789', accountType: 'savings' }, envelope: env({ epochId: 'acme/2026-12-01T10/2' }) }),
    accessLeafV2({ time, transactionId: 'ord-1', action: 'read', principal, outcome: 'denied', reason: 'not_assigned', sourceAddress: '::1' }),
    adminEventLeaf({ time, action: 'processor_registered', principal, sourceAddress: '10.0.0.2', outcome: 'granted', processor: 'acme' }),
    decodeLeaf(gen(0)),
    decodeLeaf(gen(1)),
  ];
}

const REPLACEMENTS: unknown[] = [
  undefined, null, 0, 1, 2, 3, 4, -1, 1.5, 12, 13, 9999, 10000, Number.MAX_SAFE_INTEGER, 2 ** 53, '', 'a', 'a'.repeat(65), 'a'.repeat(257),
  'x\ud800', 'card', 'visa', '4242', '4111111111111111', 'acme/2026-12', '\uFEFFx', Buffer.alloc(0), Buffer.alloc(12), Buffer.alloc(32), Buffer.alloc(33),
  [], ['k'], {}, { a: 'b' }, new Date(0), true,
];

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);

function paths(v: unknown, at: string[] = []): string[][] {
  if (!isObj(v)) return [at];
  return [at, ...Object.keys(v).flatMap((k) => paths(v[k], [...at, k]))];
}
function clone(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v);
  if (Array.isArray(v)) return v.map(clone);
  if (isObj(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, clone(x)]));
  return v;
}
function setAt(leaf: Leaf, path: string[], value: unknown, del = false): Leaf {
  const copy = clone(leaf) as Obj;
  let o = copy;
  for (const k of path.slice(0, -1)) o = o[k] as Obj;
  if (del) delete o[path[path.length - 1]!];
  else o[path[path.length - 1]!] = value;
  return copy as unknown as Leaf;
}

function outcome(f: () => Buffer): { bytes: string } | { code: string; message: string } {
  try {
    return { bytes: f().toString('hex') };
  } catch (e) {
    return { code: (e as { code?: string }).code ?? 'none', message: (e as Error).message };
  }
}

describe('encodeLeafFast agrees with encodeLeaf', () => {
  it('same bytes or same error over leaves of several kinds and their mutations', () => {
    let n = 0;
    let encoded = 0;
    for (const leaf of leaves()) {
      // The builders' leaves are what the fast route is for: the fast decoder vouches for them.
      expect(decodeLeafFast(encodeLeaf(leaf))).toBeDefined();
      const inputs: Leaf[] = [leaf];
      for (const p of paths(leaf)) {
        if (p.length === 0) continue;
        inputs.push(setAt(leaf, p, undefined, true));
        for (const r of REPLACEMENTS) inputs.push(setAt(leaf, p, r));
      }
      for (const p of paths(leaf)) {
        const at = p.reduce<unknown>((o, k) => (o as Obj)[k], leaf);
        if (isObj(at)) inputs.push(p.length === 0 ? ({ ...leaf, extra: 1 } as unknown as Leaf) : setAt(leaf, [...p, 'extra'], 1));
      }
      for (const input of inputs) {
        n++;
        const fast = outcome(() => encodeLeafFast(input));
        expect(fast).toEqual(outcome(() => encodeLeaf(input)));
        if ('bytes' in fast) encoded++;
      }
    }
    expect(n).toBeGreaterThan(1000);
    expect(encoded).toBeGreaterThan(50);
  });
});
