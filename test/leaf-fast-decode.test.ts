/**
 * The auditor's fast leaf path (src/log/leaf/fast-decode.ts, issue 20) against the reference
 * (`decodeLeaf`: generic CBOR decoder + zod schemas + re-encoding), differentially: over the
 * exported fixture logs, leaves of every kind and variant from the builders, every value-level
 * mutation of them (each field deleted, replaced by values at and around each bound, unknown and
 * `__proto__` keys, wrong versions) and byte-level mutations (every byte changed, every
 * truncation, trailing bytes). For every input:
 *   - the fast path accepts ⇒ the reference accepts, with a deep-equal leaf;
 *   - the reference accepts a CBOR leaf ⇒ the fast path accepts it too (it is really used),
 *     except a text string starting with a byte-order mark (left to the reference on purpose);
 *   - `checkLeaf` (fast path first) and `checkLeafReference` give the same verdict and message.
 */
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { describe, expect, it } from 'vitest';
import { accessLeafV2, adminEventLeaf, forwardResultLeaf, decodeCbor, decodeLeaf, decodeLeafFast, encodeCbor, encodeLeaf, keyEventLeaf, transactionLeaf, type CborValue, type Leaf } from '../src/log/leaf.js';
import { checkLeaf } from '../src/audit/index.js';
import { checkLeafReference } from '../src/audit/leaf-check.js';
import { MAX_LEAF_BYTES, encodeLeafReference } from '../src/log/leaf/codec.js';
import { decodeHotLeaf, readHotFacts } from '../src/log/leaf/fast-shapes.js';
import { syntheticLeafSource } from '../scripts/bench/synthetic-log.js';

const principal = { role: 'admin', name: 'ops', certificateFingerprint: `sha256:${'ab'.repeat(32)}` };
const time = new Date('2026-12-01T10:00:00.123Z');
const d32 = (b: number) => Buffer.alloc(32, b);

function fixtureLeaves(): Buffer[] {
  const out: Buffer[] = [];
  for (const f of ['log-v2-before-v3.ndjson', 'log-v2-then-v3.ndjson']) {
    for (const line of readFileSync(new URL(`./fixtures/${f}`, import.meta.url), 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const rec = JSON.parse(line) as { type: string; leaf?: string };
      if (rec.type === 'entry' && rec.leaf) out.push(Buffer.from(rec.leaf, 'base64'));
    }
  }
  return out;
}

function builderLeaves(): Buffer[] {
  const env = (key: { kmsKeyId: string } | { epochId: string }, extra: object = {}) => ({
    version: 2, key, iv: Buffer.alloc(12, 1), ciphertext: Buffer.alloc(40, 2), tag: Buffer.alloc(16, 3), keyCommitment: d32(4), wrappedKeySha256: d32(5),
    ...('epochId' in key ? { epochPublicKeySha256: d32(6) } : {}), ...extra,
  });
  const base = { time, transactionId: 'ord-1', processor: 'acme', amount: { value: 1, currency: 'EUR' } };
  const v3 = [
    transactionLeaf({ ...base, paymentMethod: { type: 'card', brand: 'visa', last4: '4242', expiryMonth: 1, expiryYear: 2030 }, envelope: env({ epochId: 'acme/2026-12' }) }),
    transactionLeaf({ ...base, paymentMethod: { type: 'iban', country: 'DE', last4: 'AB12', bic: 'DEUTDEFF500' }, metadata: { a: 'b', 'long key': 'x'.repeat(1024) }, envelope: env({ kmsKeyId: 'arn:k' }, { salt: Buffer.alloc(32, 7) }), cse: { kid: 'cse-1' } }),
    transactionLeaf({ ...base, paymentMethod: { type: 'us_bank_account', routingNumber: '011000015', last4: '6789', accountType: 'savings' }, envelope: env({ epochId: 'acme/2026-12-01T10/2' }) }),
    accessLeafV2({ time, transactionId: 'ord-1', action: 'read', principal, outcome: 'denied', reason: 'not_assigned', sourceAddress: '::1' }),
    accessLeafV2({ time, transactionId: 'ord-1', action: 'release', principal, purpose: 'chargeback', reference: 'case 4111 1111 1111 1111', outcome: 'granted', sourceAddress: '10.0.0.1' }),
    accessLeafV2({ time, transactionId: 'ord-1', action: 'forward', principal, purpose: 'authorize', reference: 'r-1', outcome: 'granted', sourceAddress: '10.0.0.3', forward: { destination: 'payments', method: 'POST', path: '/v1/payments', templateSha256: d32(8), keyMac: d32(9) } }),
    accessLeafV2({ time, transactionId: 'ord-1', action: 'forward', principal, purpose: 'authorize', outcome: 'denied', reason: 'DESTINATION_NOT_ALLOWED', sourceAddress: '10.0.0.3' }),
    forwardResultLeaf({ time, transactionId: 'ord-1', accessLogIndex: 7, outcome: 'completed', status: 201, durationMs: 12, masked: 1 }),
    forwardResultLeaf({ time, transactionId: 'ord-1', accessLogIndex: 7, outcome: 'failed', durationMs: 0, masked: 0, error: 'DESTINATION_TIMEOUT' }),
    adminEventLeaf({ time, action: 'certificate_revoked', principal, sourceAddress: '10.0.0.2', outcome: 'failed', reason: 'x', certificateFingerprint: `sha256:${'cd'.repeat(32)}`, serial: '0a1b', note: 'lost laptop' }),
    adminEventLeaf({ time, action: 'processor_registered', principal, sourceAddress: '10.0.0.2', outcome: 'granted', processor: 'acme' }),
    keyEventLeaf({ time, event: 'retention_run', actor: 'system', policy: { retention: 'P13M', asOf: time, epoch: 'day' }, counts: { records: 3, epochs: 0 }, kmsKeyIds: ['k1', 'k2'] }),
    keyEventLeaf({ time, event: 'epoch_shredded', actor: principal, epochId: 'acme/2026-11', processor: 'acme', periodStart: time, periodEnd: time, kmsKeyId: 'k', previousKmsKeyId: 'k0', wrappedKeySha256: d32(1), previousWrappedKeySha256: d32(2), reason: 'r', kmsKeyIds: ['k'] }),
    keyEventLeaf({ time, event: 'transaction_shredded', actor: principal, transactionId: 'ord-1', keyName: 'n' }),
    keyEventLeaf({ time, event: 'cse_key_created', actor: 'system', keyName: 'cse-1', kmsKeyId: 'k', publicKeySha256: d32(3) }),
  ];
  const out = v3.map((l) => encodeLeaf(l));
  // The same kinds as leaf format v2 wrote them (v2 transactions: BIN and a fingerprint, no epk).
  for (const l of v3) {
    if (l.type === 'transaction') {
      const { epk: _epk, ...env2 } = l.env as typeof l.env & { epk?: Buffer };
      const pm = l.pm.type === 'card' ? { ...l.pm, bin: '424242' } : l.pm;
      out.push(encodeLeaf({ ...l, v: 2, pm, fp: 'fp_x', env: env2 } as Leaf));
    } else if (!(l.type === 'key_event' && (l.event === 'cse_key_created' || l.kmsKeyIds || l.publicKeySha256)) && l.type !== 'forward_result' && !(l.type === 'access' && l.action === 'forward')) {
      out.push(encodeLeaf({ ...l, v: 2 } as Leaf));
    }
  }
  const gen = syntheticLeafSource();
  for (let i = 0; i < 4; i++) out.push(gen(i));
  return out;
}

/** Values placed into every field: both sides of each bound the schemas have, and wrong types. */
const REPLACEMENTS: CborValue[] = [
  0, 1, 2, 3, 4, 12, 13, 99, 100, 255, 256, 599, 600, 999, 1000, 9999, 10000, 2 ** 32, Number.MAX_SAFE_INTEGER,
  ...[0, 1, 2, 3, 4, 5, 10, 11, 31, 32, 33, 63, 64, 65, 127, 128, 129, 199, 200, 201, 255, 256, 257, 512, 513, 1024, 1025, 2048, 2049].map((n) => 'a'.repeat(n)),
  'forward', 'completed', 'unknown', 'granted',
  'USD', 'usd', 'US', 'card', 'iban', 'us_bank_account', 'system', 'release', 'denied', 'failed', 'epoch_created', 'cse_key_created', 'month', 'savings',
  '1234', '123456', '1234567', '12345678', '123456789', 'ABCD1234', 'ABCD1234XYZ', 'ab', 'P13M', 'p13m', 'acme/2026-12', 'acme/2026-12/7', 'acme/12',
  '4111111111111111', '4111 1111 1111 1111', '４１１１１１１１１１１１１１１１', '\uFEFFx', 'é', '0a', 'G',
  Buffer.alloc(0), Buffer.alloc(1), Buffer.alloc(12), Buffer.alloc(31), Buffer.alloc(32), Buffer.alloc(33), Buffer.alloc(64), Buffer.alloc(65), Buffer.alloc(8193),
  [], ['k'], Array.from({ length: 65 }, () => 'k'), [1], {}, { a: 'b' }, { role: 'r', name: 'n', cert: Buffer.alloc(32) },
];

/** Every value-level mutation of a decoded leaf, re-encoded with the raw CBOR encoder (no schema). */
function* mutations(root: { [k: string]: CborValue }): Generator<Buffer> {
  function* at(node: { [k: string]: CborValue }, depth: number): Generator<void> {
    const keys = Object.keys(node);
    for (const k of keys) {
      const keep = node[k]!;
      delete node[k];
      yield;
      for (const r of REPLACEMENTS) {
        node[k] = r;
        yield;
      }
      node[k] = keep;
      if (keep !== null && typeof keep === 'object' && !Array.isArray(keep) && !Buffer.isBuffer(keep) && depth < 3) yield* at(keep, depth + 1);
    }
    for (const extra of ['zz', 'bin', 'fp', 'epk', 'A']) {
      if (extra in node) continue;
      node[extra] = 'x';
      yield;
      delete node[extra];
    }
  }
  for (const _ of at(root, 0)) yield encodeCbor(root);
}

function* byteMutations(leaf: Buffer): Generator<Buffer> {
  for (let i = 0; i < leaf.length; i++) {
    for (const f of [(b: number) => b ^ 0x01, (b: number) => b ^ 0x20, (b: number) => b ^ 0x80, () => 0xff]) {
      const m = Buffer.from(leaf);
      m[i] = f(m[i]!);
      yield m;
    }
  }
  for (let n = 0; n < leaf.length; n++) yield leaf.subarray(0, n);
  yield Buffer.concat([leaf, Buffer.from([0])]);
}

function reference(bytes: Buffer): { ok: true; leaf: Leaf } | { ok: false; message: string } {
  try {
    return { ok: true, leaf: decodeLeaf(bytes) };
  } catch (e) {
    return { ok: false, message: (e as Error).message };
  }
}

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** `readHotFacts` against `decodeHotLeaf` (same acceptance, same PAN flag) and the leaf it builds (same facts). */
function hotFactsProblem(bytes: Buffer): string | undefined {
  const hot = bytes.length <= MAX_LEAF_BYTES ? decodeHotLeaf(bytes) : undefined;
  // The auditor hands the reader plain byte views of a bundle (no Buffer per leaf); a Buffer must read the same.
  for (const input of [bytes, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length)]) {
    const f = readHotFacts(input);
    if ((hot === undefined) !== (f === undefined)) return `facts ${f === undefined ? 'refused' : 'accepted'} what decodeHotLeaf ${hot === undefined ? 'refuses' : 'accepts'}`;
    if (hot === undefined || f === undefined) continue;
    const fb = Buffer.from(f.bytes.buffer, f.bytes.byteOffset, f.bytes.length);
    const l = hot.leaf as Leaf & { type: string; time?: number; id?: string; env?: { ep?: string; kms?: string; epk?: Buffer } };
    const got = { type: f.type, pan: f.textMayHoldPan, ...(f.type === 'transaction' ? { time: f.time, id: fb.toString('latin1', f.idStart, f.idEnd), ep: f.ep, kms: f.kms, epk: f.epkAt < 0 ? undefined : fb.subarray(f.epkAt, f.epkAt + 32).toString('hex') } : {}) };
    const want = { type: l.type, pan: hot.textMayHoldPan, ...(l.type === 'transaction' ? { time: l.time, id: l.id, ep: l.env?.ep, kms: l.env?.kms, epk: l.env?.epk?.toString('hex') } : {}) };
    if (!isDeepStrictEqual(got, want)) return `facts ${JSON.stringify(got)} ≠ leaf ${JSON.stringify(want)}`;
  }
  return undefined;
}

/** Compares the two paths on one input; returns what the reference said. */
function compare(bytes: Buffer, stats: { accepted: number; refused: number }, problems: string[]): void {
  const ref = reference(bytes);
  const fast = decodeLeafFast(bytes);
  const label = () => bytes.toString('base64').slice(0, 120);
  if (fast !== undefined && (!ref.ok || !isDeepStrictEqual(fast.leaf, ref.leaf))) problems.push(`fast path accepted what the reference ${ref.ok ? 'decodes differently' : `refuses (${ref.message})`}: ${label()}`);
  if (ref.ok && fast === undefined && bytes[0] !== 0x7b && !bytes.includes(BOM)) problems.push(`fast path did not vouch for a valid leaf: ${label()}`);
  // The auditor's facts path (no leaf built) vouches for exactly the leaves the hot shapes build, with their facts.
  const factsProblem = hotFactsProblem(bytes);
  if (factsProblem !== undefined) problems.push(`hot facts: ${factsProblem}: ${label()}`);
  // Without the fast path's vouching, checkLeaf IS checkLeafReference (its fallback).
  if (fast !== undefined && !isDeepStrictEqual(checkLeaf(7, bytes), checkLeafReference(7, bytes))) problems.push(`checkLeaf verdicts differ: ${label()}`);
  if (ref.ok) stats.accepted++;
  else stats.refused++;
}

describe('fast leaf decoding (auditor hot path) = decodeLeaf', () => {
  const builders = builderLeaves();
  const fixtures = fixtureLeaves();
  const corpus = [...fixtures, ...builders];
  /** The mutation bases: every kind and variant once (builders), plus two exported leaves of each format. */
  const bases = [...builders, ...fixtures.filter((l) => l[0] !== 0x7b).slice(0, 2), ...fixtures.filter((l) => l[0] !== 0x7b).slice(-2)];
  const SLOW = 600_000;

  it('accepts every fixture and builder leaf, deep-equal to decodeLeaf, with the same checkLeaf verdicts', () => {
    const stats = { accepted: 0, refused: 0 };
    const problems: string[] = [];
    for (const leaf of corpus) compare(leaf, stats, problems);
    expect(problems).toEqual([]);
    expect(stats.refused).toBe(0);
    expect(corpus.filter((l) => l[0] !== 0x7b).every((l) => decodeLeafFast(l) !== undefined)).toBe(true);
  });

  it('value-level mutations (fields deleted, replaced at and around their bounds, unknown keys, versions): same acceptance and output', () => {
    const stats = { accepted: 0, refused: 0 };
    const problems: string[] = [];
    for (const leaf of bases) {
      const value = decodeCbor(leaf) as { [k: string]: CborValue };
      for (const m of mutations(value)) compare(m, stats, problems);
      for (const v of [0, 1, 2, 3, 4]) compare(encodeCbor({ ...value, v }), stats, problems);
      // `__proto__` as a map key (an own property after decoding): refused by both.
      compare(Buffer.concat([Buffer.from([0xa0 + Object.keys(value).length + 1]), encodeCbor('__proto__'), encodeCbor('x'), leaf.subarray(1)]), stats, problems);
    }
    expect(problems.slice(0, 10)).toEqual([]);
    expect(stats.accepted).toBeGreaterThan(1000);
    expect(stats.refused).toBeGreaterThan(10000);
  }, SLOW);

  it('encodeLeaf (builder output kept when the fast path vouches for it) = the reference encoder: same bytes or the same error, for every leaf and value-level mutation', () => {
    const outcome = (encode: (l: Leaf) => Buffer, l: Leaf) => {
      try {
        return { bytes: encode(l).toString('base64') };
      } catch (e) {
        return { error: `${(e as { code?: string }).code} ${(e as Error).message}` };
      }
    };
    const problems: string[] = [];
    let fastKept = 0;
    let refused = 0;
    for (const leaf of bases) {
      const value = decodeCbor(leaf) as { [k: string]: CborValue };
      for (const _ of mutations(value)) {
        const l = value as unknown as Leaf;
        const a = outcome(encodeLeaf, l);
        const b = outcome(encodeLeafReference, l);
        if (!isDeepStrictEqual(a, b)) problems.push(`${JSON.stringify(a).slice(0, 80)} vs ${JSON.stringify(b).slice(0, 80)}`);
        if ('error' in b) refused++;
        else if (decodeLeafFast(Buffer.from(b.bytes, 'base64')) !== undefined) fastKept++;
      }
    }
    expect(problems.slice(0, 10)).toEqual([]);
    expect(fastKept).toBeGreaterThan(1000);
    expect(refused).toBeGreaterThan(10000);
  }, SLOW);

  it('byte-level mutations (every byte changed, every truncation, a trailing byte): same acceptance and output', () => {
    const stats = { accepted: 0, refused: 0 };
    const problems: string[] = [];
    // One leaf of each kind and format (the byte rules are the same for all).
    const kinds = new Map<string, Buffer>();
    for (const leaf of bases) {
      const l = decodeLeaf(leaf);
      kinds.set(`${l.v}/${l.type}`, kinds.get(`${l.v}/${l.type}`) ?? leaf);
    }
    for (const leaf of kinds.values()) for (const m of byteMutations(leaf)) compare(m, stats, problems);
    expect(problems.slice(0, 10)).toEqual([]);
    expect(stats.accepted).toBeGreaterThan(500);
  }, SLOW);

  it('the PAN rule is unchanged: flagged in free text, metadata keys and values (ASCII or full-width digits), not in digests', () => {
    const gen = syntheticLeafSource();
    const value = decodeCbor(gen(1)) as { [k: string]: CborValue };
    const withMd = (md: Record<string, string>) => encodeCbor({ ...value, md });
    for (const [md, flagged] of [
      [{ invoice: '4111111111111111' }, true],
      [{ '4111-1111-1111-1111': 'x' }, true],
      [{ invoice: '４１１１１１１１１１１１１１１１' }, true],
      [{ invoice: '4111111111111112' }, false],
      [{ invoice: '123456789012' }, false],
    ] as const) {
      const bytes = withMd(md);
      const fast = checkLeaf(3, bytes);
      expect(fast).toEqual(checkLeafReference(3, bytes));
      expect('failure' in fast && fast.failure.code === 'CARD_DATA_IN_LEAF').toBe(flagged);
    }
  });
});
