/**
 * Section "auditor_rebuild": how far the auditor's full verification is from raw hashing speed.
 *
 * Everything in memory (no HTTP, no database): N canonical leaves in leaf format v3 as the service
 * writes them today (./synthetic-log.ts: an epoch's creation, then card transactions sealed to it
 * and ~30 % access leaves, 300–550 bytes) are verified three ways,
 * interleaved round by round so machine noise hits all three alike:
 *   (a) raw      — one `createHash('sha256')` per leaf over exactly the bytes RFC 9162 hashes
 *                  (0x00 ‖ leaf, pre-concatenated): the floor of any verifier;
 *   (b) rebuild  — `StreamingTreeBuilder.push(hashLeaf(leaf))` for all + `root()`: the tree
 *                  rebuild alone (leaf hashes + n − 1 interior hashes);
 *   (c) verifyLog — the auditor's full verification over an async iterable of `{index, leaf}`
 *                  with a signed checkpoint: signature, index checks, leaf format + PAN scan,
 *                  epoch keys, shred ledger, rebuild, root comparison.
 * Plus a per-step breakdown of (c)'s leaf checks on a subset, to say where the time goes.
 */
import { createHash, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { formatCheckpointBody } from '../../src/log/checkpoint.js';
import { decodeCbor, decodeLeafFast, encodeCbor, parseCborLeaf } from '../../src/log/leaf.js';
import { checkLeafReference } from '../../src/audit/leaf-check.js';
import { SYNTH_ACCESS_SHARE, syntheticLeafSource } from './synthetic-log.js';
import { hashLeaf, StreamingTreeBuilder } from '../../src/log/merkle.js';
import { signNote, type NoteSigner, type NoteVerifier } from '../../src/log/note.js';
import { checkLeaf, verifyLog, type LogEntryInput } from '../../src/audit/index.js';
import { median, ratio, type BenchContext, type BenchSection, type Cell, type SectionResult } from './core.js';

export const REBUILD_PROFILES = {
  quick: { leaves: 50_000, rounds: 3, breakdownLeaves: 10_000 },
  full: { leaves: 200_000, rounds: 5, breakdownLeaves: 20_000 },
} as const;
/** Target: full rebuild entries/s ≥ 50% of raw SHA-256 over the same bytes. */
export const REBUILD_TARGET = 0.5;
const ORIGIN = 'paylog.bench/log';
/** RFC 9162 §2.1.1 leaf prefix. */
const LEAF_PREFIX = Buffer.from([0x00]);

// ------------------------------------------------------------------------------ synthetic leaves

/** N canonical leaves, deterministic (leaf format v3, see ./synthetic-log.ts). */
export function syntheticLeaves(n: number): Buffer[] {
  const leafAt = syntheticLeafSource();
  return Array.from({ length: n }, (_, i) => leafAt(i));
}

// ------------------------------------------------------------------------------ the three measurements

function localSigner(): { signer: NoteSigner; verifier: NoteVerifier } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url');
  return {
    signer: { name: ORIGIN, publicKey: raw, sign: async (m) => cryptoSign(null, m, privateKey) },
    verifier: { name: ORIGIN, publicKey: raw },
  };
}

/** (a) raw SHA-256, one hash object per leaf over 0x00 ‖ leaf. Returns seconds. */
function timeRaw(prefixed: readonly Buffer[]): number {
  const t0 = performance.now();
  let x = 0;
  for (const b of prefixed) x ^= createHash('sha256').update(b).digest()[0]!;
  const s = (performance.now() - t0) / 1000;
  if (x === 256) throw new Error('unreachable'); // keeps the digests live
  return s;
}

/** (b) tree rebuild only. Returns seconds and the root. */
function timeRebuild(leaves: readonly Buffer[]): { s: number; root: Buffer } {
  const t0 = performance.now();
  const b = new StreamingTreeBuilder();
  for (const leaf of leaves) b.push(hashLeaf(leaf));
  const root = b.root();
  return { s: (performance.now() - t0) / 1000, root };
}

async function* iterate(leaves: readonly Buffer[]): AsyncGenerator<LogEntryInput> {
  for (let i = 0; i < leaves.length; i++) yield { index: i, leaf: leaves[i]! };
}

/** (c) full verification. Returns seconds; throws if the log does not verify. */
async function timeVerifyLog(leaves: readonly Buffer[], checkpoint: string, verifier: NoteVerifier): Promise<number> {
  const t0 = performance.now();
  const report = await verifyLog({ checkpoint, verifiers: [verifier], entries: iterate(leaves), origin: ORIGIN });
  const s = (performance.now() - t0) / 1000;
  if (!report.ok || report.entriesVerified !== leaves.length) {
    throw new Error(`verifyLog did not verify the synthetic log: ${report.failures.slice(0, 3).map((f) => f.code).join(', ')}`);
  }
  return s;
}

// ------------------------------------------------------------------------------ breakdown of (c)

/** µs per leaf of the steps of the leaf check, reference path and fast path, measured on `leaves`. */
function leafCheckBreakdown(leaves: readonly Buffer[]): { key: string; step: string; usPerLeaf: number }[] {
  const us = (t0: number) => ((performance.now() - t0) * 1000) / leaves.length;
  let t = performance.now();
  const values = leaves.map((b) => decodeCbor(b));
  const cborUs = us(t);
  t = performance.now();
  for (const v of values) parseCborLeaf(v);
  const zodUs = us(t);
  t = performance.now();
  for (const v of values) encodeCbor(v);
  const reencodeUs = us(t);
  t = performance.now();
  for (let i = 0; i < leaves.length; i++) checkLeafReference(i, leaves[i]!);
  const refUs = us(t);
  t = performance.now();
  let missed = 0;
  for (const l of leaves) if (decodeLeafFast(l) === undefined) missed++;
  const fastUs = us(t);
  t = performance.now();
  for (let i = 0; i < leaves.length; i++) checkLeaf(i, leaves[i]!);
  const checkUs = us(t);
  t = performance.now();
  for (const leaf of leaves) hashLeaf(leaf);
  const hashUs = us(t);
  if (missed) throw new Error(`the fast path did not vouch for ${missed} synthetic leaves`);
  return [
    { key: 'cbor_decode', step: 'reference: decodeCbor', usPerLeaf: cborUs },
    { key: 'zod', step: 'reference: zod leaf schema', usPerLeaf: zodUs },
    { key: 'reencode', step: 'reference: re-encoding (canonical check)', usPerLeaf: reencodeUs },
    { key: 'check_leaf_reference', step: '= reference checkLeaf (decodeLeaf + PAN walk)', usPerLeaf: refUs },
    { key: 'fast_decode', step: 'fast path: decodeLeafFast', usPerLeaf: fastUs },
    { key: 'check_leaf', step: '= checkLeaf (fast path + PAN rule)', usPerLeaf: checkUs },
    { key: 'hash_leaf', step: 'hashLeaf (for comparison)', usPerLeaf: hashUs },
  ];
}

// ------------------------------------------------------------------------------ section

export async function runAuditorRebuild(ctx: BenchContext): Promise<SectionResult> {
  const p = REBUILD_PROFILES[ctx.profile];
  ctx.progress(`auditor_rebuild: generating ${p.leaves.toLocaleString('en-US')} canonical leaves`);
  const leaves = syntheticLeaves(p.leaves);
  const prefixed = leaves.map((l) => Buffer.concat([LEAF_PREFIX, l]));
  const bytes = leaves.reduce((a, l) => a + l.length, 0);
  let minBytes = Infinity;
  let maxBytes = 0;
  for (const l of leaves) {
    minBytes = Math.min(minBytes, l.length);
    maxBytes = Math.max(maxBytes, l.length);
  }
  const { signer, verifier } = localSigner();
  const { root } = timeRebuild(leaves);
  const checkpoint = await signNote(formatCheckpointBody({ origin: ORIGIN, size: leaves.length, rootHash: root }), [signer]);

  // Warm-up (JIT, zod caches) on a slice, then interleaved rounds.
  const warm = leaves.slice(0, Math.min(5_000, leaves.length));
  timeRaw(prefixed.slice(0, warm.length));
  timeRebuild(warm);
  checkLeaf(0, warm[0]!);
  for (const l of warm) checkLeaf(0, l);
  const raw: number[] = [];
  const rebuild: number[] = [];
  const full: number[] = [];
  for (let r = 0; r < p.rounds; r++) {
    ctx.progress(`auditor_rebuild: round ${r + 1}/${p.rounds}`);
    raw.push(leaves.length / timeRaw(prefixed));
    const b = timeRebuild(leaves);
    if (!b.root.equals(root)) throw new Error('rebuild is not deterministic');
    rebuild.push(leaves.length / b.s);
    full.push(leaves.length / (await timeVerifyLog(leaves, checkpoint, verifier)));
  }
  ctx.progress(`auditor_rebuild: leaf-check breakdown on ${p.breakdownLeaves.toLocaleString('en-US')} leaves`);
  const breakdown = leafCheckBreakdown(leaves.slice(0, p.breakdownLeaves));

  const rawRate = median(raw);
  const rebuildRate = median(rebuild);
  const fullRate = median(full);
  const mbps = (rate: number) => (rate * (bytes / leaves.length + 1)) / 1e6;
  const table: Cell[][] = [
    ['measurement', 'entries/s', 'MB/s', '÷ raw', 'rounds (entries/s)'],
    ['(a) raw SHA-256 over 0x00‖leaf', rawRate, mbps(rawRate), 1, raw.map(Math.round).join(', ')],
    ['(b) rebuild: StreamingTreeBuilder', rebuildRate, mbps(rebuildRate), ratio(rebuildRate, rawRate), rebuild.map(Math.round).join(', ')],
    ['(c) verifyLog (full auditor check)', fullRate, mbps(fullRate), ratio(fullRate, rawRate), full.map(Math.round).join(', ')],
  ];
  const fullVsRaw = ratio(fullRate, rawRate);
  const notes = [
    `${leaves.length.toLocaleString('en-US')} leaves, format v3 (${Math.round(SYNTH_ACCESS_SHARE * 100)}% access, rest card transactions), ${minBytes}–${maxBytes} bytes, mean ${Math.round(bytes / leaves.length)}; medians of ${p.rounds} interleaved rounds; in memory (no HTTP/DB)`,
    `target: full auditor verification ≥ ${REBUILD_TARGET * 100}% of raw SHA-256 — (c)/(a) = ${fullVsRaw == null ? '—' : (fullVsRaw * 100).toFixed(1) + '%'} ${fullVsRaw != null && fullVsRaw >= REBUILD_TARGET ? '✓' : '✗'}; tree rebuild alone (b)/(a) = ${((ratio(rebuildRate, rawRate) ?? 0) * 100).toFixed(1)}%`,
    `where (c)'s time goes, µs/leaf: ${breakdown.map((b) => `${b.step} ${b.usPerLeaf.toFixed(2)}`).join('; ')}; raw SHA-256 ≈ ${(1e6 / rawRate).toFixed(2)} µs/leaf`,
  ];
  return {
    table,
    figures: {
      raw_sha256_per_s: rawRate,
      tree_rebuild_entries_per_s: rebuildRate,
      rebuild_entries_per_s: fullRate,
      tree_rebuild_vs_sha256: ratio(rebuildRate, rawRate),
      rebuild_vs_sha256: fullVsRaw,
      leaves: leaves.length,
      mean_leaf_bytes: bytes / leaves.length,
      ...Object.fromEntries(breakdown.map((b) => [`${b.key}_us_per_leaf`, b.usPerLeaf])),
    },
    notes,
    details: { raw, rebuild, full, breakdown },
  };
}

export const auditorRebuildSection: BenchSection = {
  id: 'auditor_rebuild',
  title: '4a. Auditor: full rebuild entries/s vs raw SHA-256 (in memory)',
  // CPU-bound and self-contained: runs after the paylog child has stopped (quiet box).
  needs: 'none',
  run: runAuditorRebuild,
};
