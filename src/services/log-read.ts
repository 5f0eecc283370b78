/**
 * Read API for auditors (and processors for proofs of their own entries): checkpoints, keys,
 * entries and RFC 9162 proofs computed from stored subtree hashes — O(log n) node reads.
 */
import { and, asc, eq, gte, lt } from 'drizzle-orm';
import type { Db } from '../db/connection.js';
import { logEntries, transactions } from '../db/schema.js';
import { PaylogError } from '../errors.js';
import { authorize, authorizeOnTransaction } from '../auth/policy.js';
import type { Principal } from '../auth/principal.js';
import type { ProcessorRegistry } from '../auth/processors.js';
import { readNodes, readTreeHead } from '../log/appender.js';
import { readCheckpoint, type PublishedKey } from '../log/checkpoints.js';
import { ciphertextDigestOf } from '../crypto/envelope-v2.js';
import { parseVerifierKey, type NoteVerifier } from '../log/note.js';
import { consistencyProof, consistencyProofNodes, inclusionProof, inclusionProofNodes } from '../log/merkle.js';

/** Largest page of entries one request returns. */
export const MAX_ENTRIES_PAGE = 1000;

const NON_NEGATIVE_INT = /^(0|[1-9]\d{0,15})$/;

/** Parses a decimal query parameter; absent → undefined; malformed → VALIDATION_FAILED. */
export function parseIndexParam(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (Array.isArray(v)) throw new PaylogError('VALIDATION_FAILED', `query parameter ${name} may be given once`);
  if (typeof v !== 'string' || !NON_NEGATIVE_INT.test(v) || !Number.isSafeInteger(Number(v))) {
    throw new PaylogError('VALIDATION_FAILED', `query parameter ${name} must be a non-negative decimal integer`);
  }
  return Number(v);
}

export class LogReadService {
  private readonly verifiers: NoteVerifier[];

  constructor(
    private readonly db: Db,
    private readonly deps: { origin: string; keys: PublishedKey[]; processors: ProcessorRegistry },
  ) {
    this.verifiers = deps.keys.map((k) => {
      const v = parseVerifierKey(k.vkey);
      return { name: v.name, publicKey: v.publicKey };
    });
  }

  async checkpoint(p: Principal, size?: number): Promise<string> {
    authorize(p, 'log:checkpoint');
    const c = await readCheckpoint(this.db, this.verifiers, size);
    if (!c) throw new PaylogError('NOT_FOUND', size === undefined ? 'no checkpoint has been signed yet' : 'no checkpoint for that tree size');
    return c.note;
  }

  key(p: Principal) {
    authorize(p, 'log:key');
    const first = this.deps.keys[0];
    return {
      origin: this.deps.origin,
      keys: this.deps.keys.map((k) => ({ vkey: k.vkey, keyId: k.keyId, pem: k.pem })),
      vkey: first?.vkey,
      pem: first?.pem,
    };
  }

  private async treeSize(): Promise<number> {
    return (await readTreeHead(this.db))?.size ?? 0;
  }

  /** Entries [start, end) — fewer when capped by page size or the tree size. */
  async entries(p: Principal, start: number | undefined, end: number | undefined) {
    authorize(p, 'log:entries');
    if (start === undefined || end === undefined) throw new PaylogError('VALIDATION_FAILED', 'start and end are required');
    if (end < start) throw new PaylogError('VALIDATION_FAILED', 'end must not be smaller than start');
    const size = await this.treeSize();
    const last = Math.min(end, start + MAX_ENTRIES_PAGE, size);
    if (start >= last) return { start, end: start, treeSize: size, entries: [] };
    const rows = await this.db
      .select({
        idx: logEntries.idx,
        leaf: logEntries.leaf,
        version: transactions.envelopeVersion,
        salt: transactions.salt,
        iv: transactions.iv,
        ciphertext: transactions.ciphertext,
        tag: transactions.tag,
        keyCommitment: transactions.keyCommitment,
      })
      .from(logEntries)
      .leftJoin(transactions, eq(transactions.logIndex, logEntries.idx))
      .where(and(gte(logEntries.idx, start), lt(logEntries.idx, last)))
      .orderBy(asc(logEntries.idx));
    return {
      start,
      end: last,
      treeSize: size,
      entries: rows.map((r) => ({
        index: r.idx,
        leaf: r.leaf.toString('base64'),
        // For transaction entries: the digest of the ciphertext stored now, so auditors can
        // check it against the commitment in the leaf (never the ciphertext itself).
        ...(r.ciphertext && r.iv && r.tag && r.keyCommitment
          ? {
              ciphertextSha256: ciphertextDigestOf(r.version ?? 1, {
                salt: r.salt ?? Buffer.alloc(0),
                iv: r.iv,
                ciphertext: r.ciphertext,
                tag: r.tag,
                keyCommitment: r.keyCommitment,
              }).toString('base64'),
            }
          : {}),
      })),
    };
  }

  /** Resolves the tree size a proof is for: given, else the latest checkpoint's. */
  private async proofSize(treeSize: number | undefined): Promise<number> {
    const current = await this.treeSize();
    const size = treeSize ?? (await readCheckpoint(this.db, this.verifiers))?.size ?? current;
    if (size > current) throw new PaylogError('VALIDATION_FAILED', 'treeSize is larger than the log');
    return size;
  }

  /** RFC 9162 §2.1.3.1 inclusion proof, by index or by transactionId (its transaction entry). */
  async inclusion(p: Principal, q: { index?: number; transactionId?: string; treeSize?: number }) {
    if (p.role !== 'auditor' && p.role !== 'processor') authorize(p, 'log:proof:inclusion');
    let index = q.index;
    let txId: string | null = null;
    if (q.transactionId !== undefined) {
      const row = (await this.db.select({ idx: transactions.logIndex }).from(transactions).where(eq(transactions.transactionId, q.transactionId)).limit(1))[0];
      if (!row) {
        authorizeOnTransaction(p, 'log:proof:inclusion', {});
        throw new PaylogError('NOT_FOUND', 'no such transaction');
      }
      index = row.idx;
      txId = q.transactionId;
    }
    if (index === undefined) throw new PaylogError('VALIDATION_FAILED', 'index or transactionId is required');
    const entry = (await this.db.select({ tx: logEntries.transactionId, leaf: logEntries.leaf }).from(logEntries).where(eq(logEntries.idx, index)).limit(1))[0];
    txId = txId ?? entry?.tx ?? null;
    const assigned = txId
      ? (await this.db.select({ processor: transactions.processor }).from(transactions).where(eq(transactions.transactionId, txId)).limit(1))[0]?.processor
      : undefined;
    const active = await this.deps.processors.inGoodStanding(p);
    authorizeOnTransaction(p, 'log:proof:inclusion', assigned && active ? { assignedProcessor: assigned } : {});
    const treeSize = await this.proofSize(q.treeSize);
    if (index >= treeSize) throw new PaylogError('VALIDATION_FAILED', 'index must be smaller than treeSize');
    if (!entry) throw new PaylogError('NOT_FOUND', 'no entry at that index');
    const nodes = await readNodes(this.db, inclusionProofNodes(index, treeSize));
    return {
      index,
      treeSize,
      hashes: inclusionProof(index, treeSize, nodes).map((h) => h.toString('base64')),
      // The leaf bytes, so a holder of the proof can recompute the leaf hash (no card data).
      leaf: entry.leaf.toString('base64'),
    };
  }

  /** RFC 9162 §2.1.4.1 consistency proof between two tree sizes. */
  async consistency(p: Principal, from: number | undefined, to: number | undefined) {
    authorize(p, 'log:proof:consistency');
    if (from === undefined || to === undefined) throw new PaylogError('VALIDATION_FAILED', 'from and to are required');
    if (from > to) throw new PaylogError('VALIDATION_FAILED', 'from must not be larger than to');
    if (to > (await this.treeSize())) throw new PaylogError('VALIDATION_FAILED', 'to is larger than the log');
    const nodes = await readNodes(this.db, consistencyProofNodes(from, to));
    return { from, to, hashes: consistencyProof(from, to, nodes).map((h) => h.toString('base64')) };
  }
}
