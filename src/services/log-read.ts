/**
 * Read API for auditors (and processors for proofs of their own entries): checkpoints, keys,
 * entries and RFC 9162 proofs computed from stored subtree hashes — O(log n) node reads.
 */
import { eq } from 'drizzle-orm';
import type { Db } from '../db/connection.js';
import { logEntries } from '../db/schema.js';
import { decodeLeaf } from '../log/leaf.js';
import { legacyTransactionView, type TransactionRow } from './transaction-record.js';
import { PaylogError } from '../errors.js';
import { authorize, authorizeOnTransaction } from '../auth/policy.js';
import type { Principal } from '../auth/principal.js';
import type { ProcessorRegistry } from '../auth/processors.js';
import { readNodes, readTreeHead } from '../log/store.js';
import { readCheckpoint, type PublishedKey } from '../log/checkpoint-publisher.js';
import { ciphertextDigest } from '../crypto/envelope.js';
import { parseVerifierKey, type NoteVerifier } from '../log/note.js';
import { consistencyProof, consistencyProofNodes, inclusionProof, inclusionProofNodes, nodeKey, type NodeId } from '../log/merkle.js';

/** Largest page of entries one request returns. */
const MAX_ENTRIES_PAGE = 1000;

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

/** For each index in [start, end): the complete subtrees whose last leaf it is (levels 0..). */
function completedNodes(start: number, end: number): { index: number; ids: NodeId[] }[] {
  const out: { index: number; ids: NodeId[] }[] = [];
  for (let i = start; i < end; i++) {
    const ids: NodeId[] = [];
    for (let level = 0, span = 1; (i + 1) % span === 0; level++, span *= 2) ids.push({ level, index: (i + 1) / span - 1 });
    out.push({ index: i, ids });
  }
  return out;
}

/** The transaction a leaf is about (transaction and access leaves), and its processor when the leaf names it. */
function transactionOfLeaf(bytes: Buffer): { transactionId: string; processor?: string } | null {
  try {
    const l = decodeLeaf(bytes);
    if (l.type === 'transaction') return l.v === 1 ? { transactionId: l.transactionId, processor: l.processor } : { transactionId: l.id, processor: l.p };
    if (l.type === 'access') return { transactionId: l.transactionId };
  } catch {
    // not decodable: nothing to authorize against
  }
  return null;
}

export class LogReadService {
  private readonly verifiers: NoteVerifier[];

  constructor(
    private readonly db: Db,
    private readonly deps: {
      origin: string;
      keys: PublishedKey[];
      processors: ProcessorRegistry;
      headKey?: Buffer;
      /** With witnesses configured: the newest checkpoint that reached the quorum, with its cosignatures. */
      witnessed?: () => Promise<{ size: number; note: string } | null>;
    },
  ) {
    this.verifiers = deps.keys.map((k) => {
      const v = parseVerifierKey(k.vkey);
      return { name: v.name, publicKey: v.publicKey };
    });
  }

  async checkpoint(p: Principal, size?: number): Promise<string> {
    authorize(p, 'log:checkpoint');
    if (size === undefined && this.deps.witnessed !== undefined) {
      const w = await this.deps.witnessed();
      if (w === null) throw new PaylogError('LOG_UNAVAILABLE', 'no checkpoint has reached the witness quorum yet; retry later');
      return w.note;
    }
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
    return (await readTreeHead(this.db, this.deps.headKey))?.size ?? 0;
  }

  /**
   * Entries [start, end) — fewer when capped by page size or the tree size. Besides the leaf,
   * each entry carries what the service serves from the other log tables for that index, so
   * `verify-log` can check it against the leaf and the signed root:
   * - `lookup`: the transaction id the `transactions` / `access_entries` rows map to this index;
   * - `view` (format-1 transaction records only): the values served from their columns;
   * - `ciphertextSha256` (format-1 records only): digest of the stored ciphertext;
   * - `nodes`: the stored `merkle_nodes` hashes completed by this entry, levels 0.. (node
   *   (l, (index+1)/2^l − 1) for every l with 2^l dividing index+1).
   */
  async entries(p: Principal, start: number | undefined, end: number | undefined) {
    authorize(p, 'log:entries');
    if (start === undefined || end === undefined) throw new PaylogError('VALIDATION_FAILED', 'start and end are required');
    if (end < start) throw new PaylogError('VALIDATION_FAILED', 'end must not be smaller than start');
    const size = await this.treeSize();
    const last = Math.min(end, start + MAX_ENTRIES_PAGE, size);
    if (start >= last) return { start, end: start, treeSize: size, entries: [] };
    const r = await this.db.$client.query({
      name: 'paylog_entries_page',
      text: `SELECT e.idx, e.leaf, a.transaction_id AS access_tx, t.transaction_id, t.log_index, t.request_mac, t.processor,
               t.payment_method_type, t.masked, t.fingerprint, t.fingerprint_v2, t.amount_value, t.currency, t.metadata, t.envelope_version,
               t.iv, t.ciphertext, t.tag, t.key_commitment, t.salt, t.created_at
             FROM log_entries e
             LEFT JOIN transactions t ON t.log_index = e.idx
             LEFT JOIN access_entries a ON a.log_index = e.idx
             WHERE e.idx >= $1 AND e.idx < $2 ORDER BY e.idx`,
      values: [start, last],
    });
    const rows = r.rows as (TransactionRow & { idx: string; access_tx: string | null })[];
    const nodeIds = completedNodes(start, last);
    const stored = await readNodes(this.db, nodeIds.flatMap((x) => x.ids));
    return {
      start,
      end: last,
      treeSize: size,
      entries: rows.map((row) => {
        const index = Number(row.idx);
        const legacy = row.transaction_id !== null && row.ciphertext !== null && row.iv !== null && row.tag !== null && row.key_commitment !== null;
        const ids = nodeIds[index - start]?.ids ?? [];
        return {
          index,
          leaf: (row.leaf as Buffer).toString('base64'),
          lookup: {
            ...(row.transaction_id !== null ? { transaction: row.transaction_id } : {}),
            ...(row.access_tx !== null ? { access: row.access_tx } : {}),
          },
          ...(legacy
            ? {
                view: legacyTransactionView(row),
                // The digest of the ciphertext stored now (never the ciphertext itself).
                ciphertextSha256: ciphertextDigest({
                  version: 1,
                  salt: row.salt ?? Buffer.alloc(0),
                  iv: row.iv!,
                  ciphertext: row.ciphertext!,
                  tag: row.tag!,
                  keyCommitment: row.key_commitment!,
                }).toString('base64'),
              }
            : {}),
          nodes: ids.map((id) => stored.get(nodeKey(id))?.toString('base64') ?? null),
        };
      }),
    };
  }

  /** Inclusion proof and checkpoint for a served record (no authorization: the caller already authorized the read). */
  async servedProof(index: number): Promise<{ treeSize: number; hashes: string[]; checkpoint: string } | null> {
    const c = await readCheckpoint(this.db, this.verifiers);
    if (!c || c.size <= index) return null;
    const nodes = await readNodes(this.db, inclusionProofNodes(index, c.size));
    return { treeSize: c.size, hashes: inclusionProof(index, c.size, nodes).map((h) => h.toString('base64')), checkpoint: c.note };
  }

  /** Processor assigned to `transactionId`, read from its transaction leaf (null if none or mismatched). */
  private async assignedProcessor(transactionId: string): Promise<{ processor: string; index: number } | null> {
    const r = await this.db.$client.query({
      name: 'paylog_tx_leaf',
      text: 'SELECT t.log_index, e.leaf FROM transactions t JOIN log_entries e ON e.idx = t.log_index WHERE t.transaction_id = $1',
      values: [transactionId],
    });
    const row = r.rows[0] as { log_index: string; leaf: Buffer } | undefined;
    if (!row) return null;
    const t = transactionOfLeaf(row.leaf);
    return t && t.transactionId === transactionId && t.processor ? { processor: t.processor, index: Number(row.log_index) } : null;
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
    let assigned: string | undefined;
    if (q.transactionId !== undefined) {
      const a = await this.assignedProcessor(q.transactionId);
      if (!a) {
        authorizeOnTransaction(p, 'log:proof:inclusion', {});
        throw new PaylogError('NOT_FOUND', 'no such transaction');
      }
      index = a.index;
      assigned = a.processor;
    }
    if (index === undefined) throw new PaylogError('VALIDATION_FAILED', 'index or transactionId is required');
    const entry = (await this.db.select({ leaf: logEntries.leaf }).from(logEntries).where(eq(logEntries.idx, index)).limit(1))[0];
    if (assigned === undefined && entry) {
      // Which transaction this entry is about comes from the leaf, never from a lookup column.
      const t = transactionOfLeaf(entry.leaf);
      if (t?.processor) assigned = t.processor;
      else if (t) assigned = (await this.assignedProcessor(t.transactionId))?.processor;
    }
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
