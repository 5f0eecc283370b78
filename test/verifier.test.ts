/**
 * Shared verifier on synthetic logs (no service): checkpoint trust, streaming rebuild of a 100k
 * entry export, leaf checks, state (rollback / fork), and naming the first bad index.
 */
import { generateKeyPairSync, sign as cryptoSign, createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatCheckpointBody } from '../src/log/checkpoint.js';
import { encodeLeaf, type Leaf } from '../src/log/leaf.js';
import { appendLeaves, consistencyProof, hashLeaf, inclusionProof, nodeKey, rootFromLeafHashes } from '../src/log/merkle.js';
import { formatVerifierKey, signNote, type NoteSigner } from '../src/log/note.js';
import { PaylogError } from '../src/errors.js';
import {
  checkLeaf,
  containsPanLikeNumber,
  failureCodeOf,
  failureReport,
  formatState,
  locateFirstBadIndex,
  luhnValid,
  parseState,
  toNoteVerifiers,
  verifyLog,
  type LogEntryInput,
  type VerifierState,
} from '../src/audit/index.js';
import { LogClientError, verifyExportFile } from '../src/audit/index.js';
import { ExportFormatError, openExport } from '../src/log/export-format.js';
import { fixtures } from './helpers/paylog.js';

const ORIGIN = 'paylog.test/log';
const dir = mkdtempSync(join(tmpdir(), 'paylog-verifier-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function makeSigner(name = ORIGIN): { signer: NoteSigner; vkey: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url');
  return {
    signer: { name, publicKey: raw, sign: async (m) => cryptoSign(null, m, privateKey) },
    vkey: formatVerifierKey(name, raw),
  };
}
const KEY = makeSigner();
const OTHER = makeSigner();

function txLeaf(i: number, tag = 'a'): Leaf {
  const h = createHash('sha256').update(`${tag}${i}`).digest('base64');
  return {
    v: 1,
    type: 'transaction',
    time: '2026-01-02T03:04:05.678Z',
    transactionId: `ord-${tag}-${i}`,
    processor: 'acme',
    amount: { value: 100 + i, currency: 'USD' },
    paymentMethodType: 'card',
    envelope: { version: 1, ciphertextSha256: h, keyCommitment: h, wrappedKeySha256: h, kmsKeyId: 'alias/test' },
  };
}

interface SynthLog {
  leaves: Buffer[];
  root: Buffer;
  nodes: Map<string, Buffer>;
}

function buildLog(n: number, tag = 'a'): SynthLog {
  const leaves = Array.from({ length: n }, (_, i) => encodeLeaf(txLeaf(i, tag)));
  const { newNodes, root } = appendLeaves(0, [], leaves.map(hashLeaf));
  return { leaves, root, nodes: new Map(newNodes.map((x) => [nodeKey(x), x.hash])) };
}

async function checkpointFor(size: number, root: Buffer, signer = KEY.signer): Promise<string> {
  return await signNote(formatCheckpointBody({ origin: ORIGIN, size, rootHash: root }), [signer]);
}

async function* iterate(leaves: readonly Buffer[], start = 0, end = leaves.length): AsyncGenerator<LogEntryInput> {
  for (let i = start; i < end; i++) yield { index: i, leaf: leaves[i] as Buffer };
}

function prefixRoot(log: SynthLog, size: number): Buffer {
  return rootFromLeafHashes(log.leaves.slice(0, size).map(hashLeaf));
}

const verifiers = toNoteVerifiers([KEY.vkey]);

describe('leaf checks', () => {
  it('Luhn and PAN-like runs: public test cards are flagged, invalid ones are not', () => {
    for (const c of fixtures.cards) {
      expect(luhnValid(c.pan)).toBe(true);
      expect(containsPanLikeNumber(`ref ${c.pan} x`)).toBe(true);
    }
    expect(containsPanLikeNumber('4111 1111 1111 1111')).toBe(true);
    expect(containsPanLikeNumber('4111111111111112')).toBe(false);
    expect(containsPanLikeNumber('411111111111')).toBe(false);
    expect(containsPanLikeNumber('2026-01-02T03:04:05.678Z')).toBe(false);
  });

  it('rejects a schema-valid leaf whose transaction ID is a card number', () => {
    const bad = encodeLeaf({ ...txLeaf(0), transactionId: '4111111111111111' } as Leaf);
    const r = checkLeaf(7, bad);
    expect('failure' in r && r.failure.code).toBe('CARD_DATA_IN_LEAF');
    expect(JSON.stringify(r)).not.toContain('4111111111111111');
  });

  it('rejects non-canonical and unknown-type leaves', () => {
    const good = encodeLeaf(txLeaf(1));
    expect('leaf' in checkLeaf(0, good)).toBe(true);
    const spaced = Buffer.from(JSON.stringify(JSON.parse(good.toString()), null, 1));
    expect('failure' in checkLeaf(0, spaced) && checkLeaf(0, spaced)).toMatchObject({ failure: { code: 'LEAF_INVALID', index: 0 } });
    const unknown = Buffer.from(JSON.stringify({ v: 1, type: 'mystery', time: '2026-01-02T03:04:05.678Z' }));
    expect(checkLeaf(3, unknown)).toMatchObject({ failure: { code: 'LEAF_INVALID', index: 3 } });
  });
});

describe('verifyLog', () => {
  const log = buildLog(37);

  it('accepts an honest log and returns a state to save', async () => {
    const r = await verifyLog({ checkpoint: await checkpointFor(37, log.root), verifiers, entries: iterate(log.leaves) });
    expect(r.failures).toEqual([]);
    expect(r).toMatchObject({ ok: true, treeSize: 37, entriesVerified: 37, leafTypes: { transaction: 37 } });
    expect(r.newState).toMatchObject({ origin: ORIGIN, size: 37, rootHash: log.root.toString('base64') });
    expect(parseState(formatState({ ...r.newState!, keys: [KEY.vkey] })).size).toBe(37);
  });

  it('rejects a checkpoint signed by an unknown key, and a bad signature', async () => {
    const foreign = await checkpointFor(37, log.root, OTHER.signer);
    const r1 = await verifyLog({ checkpoint: foreign, verifiers, entries: iterate(log.leaves) });
    expect(r1.ok).toBe(false);
    expect(r1.failures[0]?.code).toBe('CHECKPOINT_INVALID');
    const good = await checkpointFor(37, log.root);
    const sigLine = good.lastIndexOf('\u2014 ');
    const tampered = good.replace(/\n37\n/, '\n36\n');
    expect(tampered).not.toBe(good);
    const r2 = await verifyLog({ checkpoint: tampered, verifiers, entries: iterate(log.leaves) });
    expect(r2.failures[0]?.code).toBe('CHECKPOINT_INVALID');
    const flipped = good.slice(0, sigLine + 10) + (good[sigLine + 10] === 'A' ? 'B' : 'A') + good.slice(sigLine + 11);
    const r3 = await verifyLog({ checkpoint: flipped, verifiers, entries: iterate(log.leaves) });
    expect(r3.failures[0]?.code).toBe('CHECKPOINT_INVALID');
    expect(r3.newState).toBeUndefined();
  });

  it('names a deleted entry, a truncated stream and extra entries', async () => {
    const cp = await checkpointFor(37, log.root);
    const deleted = log.leaves.map((leaf, index) => ({ index, leaf })).filter((e) => e.index !== 11);
    const r1 = await verifyLog({ checkpoint: cp, verifiers, entries: (async function* () { yield* deleted; })() });
    expect(r1).toMatchObject({ ok: false, firstBadIndex: 11 });
    expect(r1.failures[0]?.code).toBe('MISSING_ENTRY');
    const r2 = await verifyLog({ checkpoint: cp, verifiers, entries: iterate(log.leaves, 0, 30) });
    expect(r2).toMatchObject({ ok: false, firstBadIndex: 30 });
    const more = buildLog(38);
    const r3 = await verifyLog({ checkpoint: await checkpointFor(37, prefixRoot(more, 37)), verifiers, entries: iterate(more.leaves) });
    expect(r3.failures.map((f) => f.code)).toContain('EXTRA_ENTRY');
  });

  it('names the first modified / swapped entry using inclusion proofs from the signed tree', async () => {
    const cp = await checkpointFor(37, log.root);
    const proofs = { inclusionProof: async (i: number, n: number) => inclusionProof(i, n, log.nodes) };
    const modified = [...log.leaves];
    modified[23] = encodeLeaf(txLeaf(23, 'evil'));
    const r1 = await verifyLog({ checkpoint: cp, verifiers, entries: iterate(modified), ...proofs, readLeaves: (s, e) => iterate(modified, s, e) });
    expect(r1).toMatchObject({ ok: false, firstBadIndex: 23 });
    expect(r1.failures.map((f) => f.code)).toEqual(['ROOT_MISMATCH']);
    const swapped = [...log.leaves];
    [swapped[5], swapped[30]] = [swapped[30] as Buffer, swapped[5] as Buffer];
    const r2 = await verifyLog({ checkpoint: cp, verifiers, entries: iterate(swapped), ...proofs, readLeaves: (s, e) => iterate(swapped, s, e) });
    expect(r2.firstBadIndex).toBe(5);
    // Without proofs the mismatch is still a failure, only unnamed.
    const r3 = await verifyLog({ checkpoint: cp, verifiers, entries: iterate(modified) });
    expect(r3.ok).toBe(false);
    expect(r3.firstBadIndex).toBeUndefined();
  });

  it('locateFirstBadIndex finds every single-leaf change in trees of size 1..33', async () => {
    const big = buildLog(33);
    for (let n = 1; n <= 33; n++) {
      const root = prefixRoot(big, n);
      const { newNodes } = appendLeaves(0, [], big.leaves.slice(0, n).map(hashLeaf));
      const nodes = new Map(newNodes.map((x) => [nodeKey(x), x.hash]));
      for (let bad = 0; bad < n; bad++) {
        const leaves = big.leaves.slice(0, n);
        leaves[bad] = encodeLeaf(txLeaf(bad, 'x'));
        const found = await locateFirstBadIndex({
          treeSize: n,
          rootHash: root,
          inclusionProof: async (i, s) => inclusionProof(i, s, nodes),
          readLeaves: (s, e) => iterate(leaves, s, e),
        });
        expect(found, `n=${n} bad=${bad}`).toBe(bad);
      }
      expect(await locateFirstBadIndex({ treeSize: n, rootHash: root, inclusionProof: async (i, s) => inclusionProof(i, s, nodes), readLeaves: (s, e) => iterate(big.leaves, s, e) })).toBeUndefined();
    }
  });

  it('locateFirstBadIndex refuses proofs that do not hash to the signed root', async () => {
    const other = buildLog(37, 'z');
    await expect(
      locateFirstBadIndex({ treeSize: 37, rootHash: log.root, inclusionProof: async (i, n) => inclusionProof(i, n, other.nodes), readLeaves: (s, e) => iterate(other.leaves, s, e) }),
    ).rejects.toMatchObject({ code: 'INTEGRITY_FAILURE' });
  });
});

describe('saved state', () => {
  const log = buildLog(50);
  const forked = buildLog(50, 'fork');
  const state = (size: number, root: Buffer, note: string): VerifierState => ({
    version: 1,
    origin: ORIGIN,
    size,
    rootHash: root.toString('base64'),
    note,
    keys: [KEY.vkey],
    verifiedAt: '2026-01-01T00:00:00.000Z',
  });
  const consistency = { consistencyProof: async (a: number, b: number) => consistencyProof(a, b, log.nodes) };

  it('accepts a consistent extension and verifies the consistency proof', async () => {
    const old = state(20, prefixRoot(log, 20), await checkpointFor(20, prefixRoot(log, 20)));
    const r = await verifyLog({ checkpoint: await checkpointFor(50, log.root), verifiers, entries: iterate(log.leaves), state: old, ...consistency });
    expect(r.failures).toEqual([]);
    expect(r.previous).toMatchObject({ size: 20, consistency: 'verified' });
  });

  it('detects rollback (new size < saved size)', async () => {
    const old = state(50, log.root, await checkpointFor(50, log.root));
    const r = await verifyLog({ checkpoint: await checkpointFor(40, prefixRoot(log, 40)), verifiers, entries: iterate(log.leaves, 0, 40), state: old, ...consistency });
    expect(r.ok).toBe(false);
    expect(r.failures.map((f) => f.code)).toContain('ROLLBACK');
    expect(r.newState).toBeUndefined();
  });

  it('detects a fork with the consistency proof and, offline, with the prefix root', async () => {
    const old = state(20, prefixRoot(forked, 20), await checkpointFor(20, prefixRoot(forked, 20)));
    const cp = await checkpointFor(50, log.root);
    const r1 = await verifyLog({ checkpoint: cp, verifiers, entries: iterate(log.leaves), state: old, ...consistency });
    expect(r1.failures.map((f) => f.code)).toContain('CONSISTENCY_PROOF_INVALID');
    const r2 = await verifyLog({ checkpoint: cp, verifiers, entries: iterate(log.leaves), state: old });
    expect(r2.ok).toBe(false);
    expect(r2.failures.map((f) => f.code)).toContain('ROOT_MISMATCH');
    const sameSize = state(50, forked.root, await checkpointFor(50, forked.root));
    const r3 = await verifyLog({ checkpoint: cp, verifiers, entries: iterate(log.leaves), state: sameSize });
    expect(r3.failures.map((f) => f.code)).toContain('FORK');
  });

  it('parseState rejects a state whose fields disagree with its note', async () => {
    const s = state(20, prefixRoot(log, 20), await checkpointFor(20, prefixRoot(log, 20)));
    expect(() => parseState(formatState({ ...s, size: 21 }))).toThrow();
    expect(parseState(formatState(s)).rootHash).toBe(s.rootHash);
  });
});

describe('NDJSON export', () => {
  it('verifies a 100k-entry export with streaming reads', async () => {
    const n = 100_000;
    const path = join(dir, 'big.ndjson');
    const out = createWriteStream(path);
    const builderLeaves: Buffer[] = [];
    out.write(`${JSON.stringify({ type: 'paylog-export', version: 1, origin: ORIGIN })}\n`);
    // Root first (needs all leaf hashes), then write the checkpoint and the entries.
    for (let i = 0; i < n; i++) builderLeaves.push(hashLeaf(encodeLeaf(txLeaf(i))));
    const root = rootFromLeafHashes(builderLeaves);
    builderLeaves.length = 0;
    out.write(`${JSON.stringify({ type: 'checkpoint', note: await checkpointFor(n, root) })}\n`);
    out.write(`${JSON.stringify({ type: 'key', vkey: KEY.vkey })}\n`);
    for (let i = 0; i < n; i++) {
      if (!out.write(`${JSON.stringify({ type: 'entry', index: i, leaf: encodeLeaf(txLeaf(i)).toString('base64') })}\n`)) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
    const r = await verifyExportFile(path, { verifiers });
    expect(r.failures).toEqual([]);
    expect(r).toMatchObject({ ok: true, treeSize: n, entriesVerified: n });
  }, 180_000);

  it('checks earlier checkpoints in the export as prefixes, and reports a modified entry', async () => {
    const log = buildLog(12);
    const lines = [
      { type: 'paylog-export', version: 1, origin: ORIGIN },
      { type: 'checkpoint', note: await checkpointFor(5, prefixRoot(buildLog(12, 'other'), 5)) },
      { type: 'checkpoint', note: await checkpointFor(12, log.root) },
      ...log.leaves.map((l, index) => ({ type: 'entry', index, leaf: l.toString('base64') })),
    ];
    const path = join(dir, 'small.ndjson');
    writeFileSync(path, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    const head = await openExport(path);
    head.close();
    expect(head.checkpoints).toHaveLength(2);
    const r = await verifyExportFile(path, { verifiers });
    expect(r.ok).toBe(false);
    expect(r.failures.map((f) => f.code)).toEqual(['ROOT_MISMATCH']);
  });
});

describe('answered failures vs transport failures', () => {
  const log = buildLog(10);
  /** Yields entries [0, upTo) then throws `error`. */
  async function* failingAt(upTo: number, error: unknown): AsyncGenerator<LogEntryInput> {
    yield* iterate(log.leaves, 0, upTo);
    throw error;
  }

  it('failureCodeOf: the code an input error carries; transport (or unknown) is FETCH_FAILED; refused proofs are PROOF_REFUSED', () => {
    expect(failureCodeOf(new LogClientError('connect ECONNREFUSED', undefined, 'transport'))).toBe('FETCH_FAILED');
    expect(failureCodeOf(new LogClientError('GET /v1/log/entries answered 500', 500))).toBe('REQUEST_REFUSED');
    expect(failureCodeOf(new LogClientError('GET /v1/log/proof/consistency answered 400', 400), 'proof')).toBe('PROOF_REFUSED');
    expect(failureCodeOf(new LogClientError('bad hash', undefined, 'malformed'), 'proof')).toBe('BAD_RESPONSE');
    expect(failureCodeOf(new ExportFormatError('malformed entry line', 7))).toBe('EXPORT_MALFORMED');
    expect(failureCodeOf(new Error('EIO'))).toBe('FETCH_FAILED');
    expect(failureCodeOf(Object.assign(new Error('x'), { failureCode: 'NOT_A_CODE' }))).toBe('FETCH_FAILED');
    expect(failureCodeOf('thrown string')).toBe('FETCH_FAILED');
    expect(failureReport({ code: 'BAD_RESPONSE', index: 4, message: 'm' })).toMatchObject({ ok: false, firstBadIndex: 4, entriesVerified: 0 });
  });

  it('a malformed or refused entries answer names the first entry not verified; a transport failure names none', async () => {
    const cp = await checkpointFor(10, log.root);
    const bad = await verifyLog({ checkpoint: cp, verifiers, entries: failingAt(6, new LogClientError('malformed entry', undefined, 'malformed')) });
    expect(bad).toMatchObject({ ok: false, firstBadIndex: 6, entriesVerified: 6, failures: [{ code: 'BAD_RESPONSE', index: 6 }] });
    expect(bad.newState).toBeUndefined();
    const refused = await verifyLog({ checkpoint: cp, verifiers, entries: failingAt(3, new LogClientError('answered 400', 400)) });
    expect(refused.failures).toMatchObject([{ code: 'REQUEST_REFUSED', index: 3 }]);
    const down = await verifyLog({ checkpoint: cp, verifiers, entries: failingAt(3, new LogClientError('socket hang up', undefined, 'transport')) });
    expect(down).toMatchObject({ ok: false, failures: [{ code: 'FETCH_FAILED' }] });
    expect(down.firstBadIndex).toBeUndefined();
  });

  it('a refused consistency proof is PROOF_REFUSED; an unreachable one stays FETCH_FAILED', async () => {
    const old: VerifierState = {
      version: 1,
      origin: ORIGIN,
      size: 4,
      rootHash: prefixRoot(log, 4).toString('base64'),
      note: await checkpointFor(4, prefixRoot(log, 4)),
      keys: [KEY.vkey],
      verifiedAt: '2026-01-01T00:00:00.000Z',
    };
    const cp = await checkpointFor(10, log.root);
    const run = (error: unknown) =>
      verifyLog({ checkpoint: cp, verifiers, entries: iterate(log.leaves), state: old, consistencyProof: async () => Promise.reject(error) });
    const refused = await run(new LogClientError('GET /v1/log/proof/consistency answered 500 INTERNAL', 500));
    expect(refused.failures.map((f) => f.code)).toEqual(['PROOF_REFUSED']);
    expect(refused.previous?.consistency).toBe('failed');
    expect((await run(new LogClientError('ECONNRESET', undefined, 'transport'))).failures.map((f) => f.code)).toEqual(['FETCH_FAILED']);
  });

  it('verifyExportFile: malformed lines are EXPORT_MALFORMED reports (entry lines name their index); a missing file throws', async () => {
    const lines = [
      JSON.stringify({ type: 'paylog-export', version: 1, origin: ORIGIN }),
      JSON.stringify({ type: 'checkpoint', note: await checkpointFor(10, log.root) }),
      ...log.leaves.map((l, index) => JSON.stringify({ type: 'entry', index, leaf: index === 4 ? '***' : l.toString('base64') })),
    ];
    const path = join(dir, 'malformed-entry.ndjson');
    writeFileSync(path, lines.join('\n'));
    const r = await verifyExportFile(path, { verifiers });
    expect(r).toMatchObject({ ok: false, firstBadIndex: 4, entriesVerified: 4, failures: [{ code: 'EXPORT_MALFORMED', index: 4 }] });
    expect(r.failures[0]?.message).toContain('line 7');

    const headless = join(dir, 'headless.ndjson');
    writeFileSync(headless, lines.slice(1).join('\n'));
    expect(await verifyExportFile(headless, { verifiers })).toMatchObject({ ok: false, failures: [{ code: 'EXPORT_MALFORMED' }] });
    const noCheckpoint = join(dir, 'no-checkpoint.ndjson');
    writeFileSync(noCheckpoint, [lines[0], ...lines.slice(2)].join('\n'));
    expect((await verifyExportFile(noCheckpoint, { verifiers })).failures[0]?.code).toBe('EXPORT_MALFORMED');

    const missing = verifyExportFile(join(dir, 'missing.ndjson'), { verifiers });
    await expect(missing).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(missing).rejects.not.toBeInstanceOf(PaylogError);
  });
});
