/**
 * The auditor's hot path (issue 20) is as strict as the path it replaced:
 * - leaves handed over in runs (an entry bundle) give the same report as one by one, and a run
 *   that skips, repeats or exceeds entries is the same structural failure;
 * - leaves of the hot shapes (src/log/leaf/fast-shapes.ts) are still refused for card data, a
 *   wrong epoch key, or a field or nested map whose value the previous leaf had right (the
 *   per-field cache, the per-map memo of the facts path);
 * - the streaming tree (binary-string frontier, reusable hash input) gives the RFC 9162 roots;
 * - the shred records spilled to disk (src/audit/spill-records.ts) give the same shred report as
 *   records kept in memory.
 */
import { generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { toNoteVerifiers, verifyLog, type LogEntryInput, type VerifyReport } from '../src/audit/index.js';
import type { LeafRun } from '../src/audit/inputs.js';
import { ShredLedger } from '../src/audit/shred-report.js';
import { SpillRecords } from '../src/audit/spill-records.js';
import { formatCheckpointBody } from '../src/log/checkpoint.js';
import { decodeLeaf, encodeLeaf, keyEventLeaf, transactionLeaf } from '../src/log/leaf.js';
import { decodeHotLeaf } from '../src/log/leaf/fast-shapes.js';
import { appendLeaves, hashLeaf, rootFromLeafHashes, StreamingTreeBuilder } from '../src/log/merkle.js';
import { formatVerifierKey, signNote } from '../src/log/note.js';
import { syntheticLeafSource } from '../scripts/bench/synthetic-log.js';

const ORIGIN = 'paylog.test/hot-path';
const { publicKey, privateKey } = generateKeyPairSync('ed25519');
const RAW = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url');
const SIGNER = { name: ORIGIN, publicKey: RAW, sign: async (m: Uint8Array) => cryptoSign(null, m, privateKey) };
const verifiers = toNoteVerifiers([formatVerifierKey(ORIGIN, RAW)]);

const gen = syntheticLeafSource();
const synthetic = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => Buffer.from(gen(i)));

async function checkpoint(leaves: readonly Buffer[]): Promise<string> {
  return await signNote(formatCheckpointBody({ origin: ORIGIN, size: leaves.length, rootHash: rootFromLeafHashes(leaves.map(hashLeaf)) }), [SIGNER]);
}
async function* oneByOne(leaves: readonly Buffer[]): AsyncGenerator<LogEntryInput> {
  for (let i = 0; i < leaves.length; i++) yield { index: i, leaf: leaves[i] as Buffer };
}
async function* inRuns(runs: LeafRun[]): AsyncGenerator<LeafRun> {
  yield* runs;
}
const runsOf = (leaves: readonly Buffer[], width: number): LeafRun[] => {
  const out: LeafRun[] = [];
  for (let s = 0; s < leaves.length; s += width) out.push({ start: s, leaves: leaves.slice(s, s + width) });
  return out;
};
const verdict = (r: VerifyReport) => ({ ok: r.ok, firstBadIndex: r.firstBadIndex, codes: r.failures.map((f) => f.code), entriesVerified: r.entriesVerified });

/** `bytes` with the single occurrence of `from` replaced by `to` (same length). */
function patch(bytes: Buffer, from: Buffer | string, to: Buffer | string): Buffer {
  const f = Buffer.from(from);
  const at = bytes.indexOf(f);
  expect(at).toBeGreaterThanOrEqual(0);
  expect(bytes.indexOf(f, at + 1)).toBe(-1);
  const out = Buffer.from(bytes);
  Buffer.from(to).copy(out, at);
  return out;
}

describe('leaf runs (entry bundles) in verifyLog', () => {
  it('give the same report as the entries one by one', async () => {
    const leaves = synthetic(700);
    const cp = await checkpoint(leaves);
    const a = await verifyLog({ checkpoint: cp, verifiers, entries: oneByOne(leaves) });
    const b = await verifyLog({ checkpoint: cp, verifiers, entries: inRuns(runsOf(leaves, 256)) });
    expect(a.ok).toBe(true);
    const { newState: _a, ...ra } = a;
    const { newState: _b, ...rb } = b;
    expect(rb).toEqual(ra);
    const transactions = leaves.filter((l) => decodeLeaf(l).type === 'transaction').length;
    expect(b.leafTypes).toEqual({ key_event: 1, transaction: transactions, access: 699 - transactions });
    expect(b.epochKeys?.transactionsChecked).toBe(transactions);
  });

  it('a run that skips, repeats or exceeds entries is a structural failure naming the index', async () => {
    const leaves = synthetic(300);
    const cp = await checkpoint(leaves);
    const run = (start: number, from: number, to: number): LeafRun => ({ start, leaves: leaves.slice(from, to) });
    const skip = await verifyLog({ checkpoint: cp, verifiers, entries: inRuns([run(0, 0, 100), run(101, 101, 300)]) });
    expect(verdict(skip)).toMatchObject({ ok: false, firstBadIndex: 100, codes: ['MISSING_ENTRY'] });
    const repeat = await verifyLog({ checkpoint: cp, verifiers, entries: inRuns([run(0, 0, 100), run(99, 99, 300)]) });
    expect(verdict(repeat)).toMatchObject({ ok: false, firstBadIndex: 100, codes: ['INDEX_OUT_OF_ORDER'] });
    const extra = await verifyLog({ checkpoint: cp, verifiers, entries: inRuns([run(0, 0, 300), { start: 300, leaves: [leaves[1]!] }]) });
    expect(verdict(extra)).toMatchObject({ ok: false, firstBadIndex: 300, codes: ['EXTRA_ENTRY'] });
    const short = await verifyLog({ checkpoint: cp, verifiers, entries: inRuns([run(0, 0, 299)]) });
    expect(verdict(short)).toMatchObject({ ok: false, firstBadIndex: 299, codes: ['MISSING_ENTRY'] });
  });
});

describe('hot-shape leaves are refused as before', () => {
  const leaves = synthetic(8);
  const tx = leaves[1]!; // a v3 card transaction sealed to the epoch of leaf 0
  const access = leaves.find((l) => decodeLeaf(l).type === 'access')!;

  it('the synthetic transaction and access leaves take the hot path', () => {
    expect(decodeHotLeaf(tx)).toBeDefined();
    expect(decodeHotLeaf(access)).toBeDefined();
  });

  it('card data in a hot-shape leaf: CARD_DATA_IN_LEAF', async () => {
    const epk = (decodeLeaf(tx) as { env: { epk: Buffer } }).env.epk;
    const withPan = transactionLeaf({
      time: new Date('2026-12-07T00:00:00Z'),
      transactionId: 'ord-pan',
      processor: 'acme',
      amount: { value: 1, currency: 'USD' },
      paymentMethod: { type: 'card', brand: 'visa', last4: '1111', expiryMonth: 12, expiryYear: 2029 },
      metadata: { note: '4111 1111 1111 1111' },
      envelope: { version: 2, key: { epochId: 'acme/2026-12' }, iv: Buffer.alloc(12), ciphertext: Buffer.alloc(8), tag: Buffer.alloc(16), keyCommitment: Buffer.alloc(32), wrappedKeySha256: Buffer.alloc(32), epochPublicKeySha256: epk },
    });
    const bytes = encodeLeaf(withPan);
    expect(decodeHotLeaf(bytes)?.textMayHoldPan).toBe(true);
    // The same leaf right after a clean one (whose cached values it shares) and on its own.
    for (const log of [[leaves[0]!, tx, bytes], [leaves[0]!, bytes]]) {
      const r = await verifyLog({ checkpoint: await checkpoint(log), verifiers, entries: inRuns(runsOf(log, 256)) });
      expect(verdict(r)).toMatchObject({ ok: false, firstBadIndex: log.length - 1, codes: ['CARD_DATA_IN_LEAF'] });
    }
  });

  it('a transaction sealed to another key than its epoch names: EPOCH_KEY_MISMATCH', async () => {
    const epk = (decodeLeaf(tx) as { env: { epk: Buffer } }).env.epk;
    const log = [leaves[0]!, patch(tx, epk, Buffer.alloc(32, 0xee))];
    const r = await verifyLog({ checkpoint: await checkpoint(log), verifiers, entries: inRuns(runsOf(log, 256)) });
    expect(verdict(r)).toMatchObject({ ok: false, firstBadIndex: 1, codes: ['EPOCH_KEY_MISMATCH'] });
  });

  it('a field the previous leaf had right is still checked (per-field cache): LEAF_INVALID', async () => {
    const bad = [patch(tx, 'USD', 'usd'), patch(tx, 'acme/2026-12', 'acme/2026-1x'), patch(tx, Buffer.from([0x64, 0x63, 0x61, 0x72, 0x64]), 'dcarx'), patch(access, 'release', 'releasx'), patch(access, 'granted', 'grantex'),
      // A nested map one byte away from the one the previous leaf had (the per-map memo): expiry month 13, a name that is not UTF-8.
      patch(tx, Buffer.from('expiryMonth\x0c', 'latin1'), Buffer.from('expiryMonth\x0d', 'latin1')), patch(access, 'acme', Buffer.from('acm\xe9', 'latin1'))];
    for (const b of bad) {
      // Twice in a row: a value refused once must not be remembered as accepted.
      const log = [leaves[0]!, tx, access, b, b, tx];
      const r = await verifyLog({ checkpoint: await checkpoint(log), verifiers, entries: inRuns(runsOf(log, 256)) });
      expect(verdict(r)).toMatchObject({ ok: false, firstBadIndex: 3, codes: ['LEAF_INVALID', 'LEAF_INVALID'] });
      expect(r.failures.map((f) => f.index)).toEqual([3, 4]);
    }
  });
});

describe('streaming tree', () => {
  it('addLeaf, add and push give the RFC 9162 root at every size, push the completed nodes', () => {
    const leaves = synthetic(70);
    const a = new StreamingTreeBuilder();
    const b = new StreamingTreeBuilder();
    const c = new StreamingTreeBuilder();
    expect(a.root()).toEqual(rootFromLeafHashes([]));
    for (let i = 0; i < leaves.length; i++) {
      const h = hashLeaf(leaves[i]!);
      a.addLeaf(leaves[i]!);
      b.add(h);
      const completed = c.push(h);
      const fromScratch = appendLeaves(i, i === 0 ? [] : appendLeaves(0, [], leaves.slice(0, i).map(hashLeaf)).frontier, [h]);
      expect(completed).toEqual(fromScratch.newNodes.map((n) => n.hash));
      const root = rootFromLeafHashes(leaves.slice(0, i + 1).map(hashLeaf));
      expect(a.root()).toEqual(root);
      expect(b.root()).toEqual(root);
      expect(c.root()).toEqual(root);
    }
  });
});

describe('shred records in bounded memory', () => {
  it('SpillRecords: every record back, in order, after spilling to disk', () => {
    const s = new SpillRecords({ chunkBytes: 64, residentChunks: 1 });
    const want: string[] = [];
    for (let i = 0; i < 500; i++) {
      const text = `r${i}-${'x'.repeat(i % 17)}`;
      const at = s.begin(text.length);
      s.end(s.chunk.write(text, at, 'latin1'));
      want.push(text);
    }
    expect(s.spilledChunks).toBeGreaterThan(100);
    const got: string[] = [];
    s.scan((b, at, len) => got.push(b.toString('latin1', at, at + len)));
    expect(got).toEqual(want);
    s.close();
  });

  it('ShredLedger: the same report whether its records stay in memory or are spilled', () => {
    const leaves = synthetic(3000).map((l) => decodeLeaf(l));
    const principal = { role: 'admin', name: 'ops', certificateFingerprint: `sha256:${'ab'.repeat(32)}` };
    const time = new Date('2026-12-08T00:00:00Z');
    const txIds = leaves.flatMap((l) => (l.type === 'transaction' && l.v !== 1 ? [l.id] : []));
    const events = [
      keyEventLeaf({ time, event: 'transaction_shredded', actor: principal, transactionId: txIds[5]!, keyName: 'n' }),
      keyEventLeaf({ time, event: 'transaction_shredded', actor: principal, transactionId: txIds[txIds.length - 1]!, keyName: 'n' }),
      keyEventLeaf({ time, event: 'epoch_shredded', actor: principal, epochId: 'acme/2026-12', processor: 'acme', kmsKeyIds: ['k'] }),
    ].map((l) => decodeLeaf(encodeLeaf(l)));
    const log = [...leaves.slice(0, 1000), events[0]!, ...leaves.slice(1000, 2500), events[1]!, ...leaves.slice(2500), events[2]!];
    const inMemory = new ShredLedger();
    const spilled = new ShredLedger({ chunkBytes: 512, residentChunks: 1 });
    log.forEach((l, i) => {
      inMemory.observe(i, l);
      spilled.observe(i, l);
    });
    const a = inMemory.report();
    const b = spilled.report();
    inMemory.close();
    spilled.close();
    expect(b).toEqual(a);
    expect(a.events.map((e) => e.transactions)).toEqual([1, 0, txIds.length]); // the last transaction is appended after its shred event
    expect(a.transactions).toBe(txIds.length);
  });
});
