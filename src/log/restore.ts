/**
 * Restoring the log after the database was restored from a backup (`npm run restore-log`).
 *
 * A restored database is behind the last checkpoint the signer signed (src/log/signer-state.ts),
 * so the signer refuses to sign (reason `behind`). Signing a new history above the restored
 * head would fork the log, and there is no switch to allow it. The one way forward is to make
 * the database hold the signed history again: re-append the lost tail, byte for byte, from an
 * auditor export (`npm run export-log`) taken before the loss.
 *
 * Contract of `restoreLostTail`:
 * - The export's last checkpoint MUST verify under the service's own keys and origin, and cover
 *   at least the signer's last checkpoint.
 * - The stored tree (its MAC'd head, recomputed from stored nodes) plus the export's entries
 *   from the stored size on MUST hash to the signer's last checkpoint at its size, and to the
 *   export's checkpoint at its size. Anything else is refused (INCONSISTENT_TREE) before a
 *   single entry is written.
 * - Exactly those leaf bytes are appended, at exactly those indexes, through the normal append
 *   path (LogAppender: one batch transaction each, tree heads MAC'd); nothing else may append
 *   meanwhile (every paylog instance on the database MUST be stopped), and an entry that lands
 *   on another index stops the restore.
 * - A database that already extends the signer's checkpoint needs nothing: zero entries.
 * - The lookup rows of the lost entries are re-created from the leaves (`restoredEntry`), but
 *   not what only the lost rows held: the wrapped data keys (those records read as shredded:
 *   410, never openable again) and the request MACs (a retry of such a transaction id answers
 *   409, not a replay).
 */
import type { Db } from '../db/connection.js';
import { PaylogError } from '../errors.js';
import type { Appender, AppendRequest } from './appender.js';
import { readNodes, readTreeHead } from './store.js';
import { decodeLeaf, type Leaf } from './leaf.js';
import { verifyCheckpoint } from './checkpoint.js';
import { checkExtends, refusal } from './checkpoint-publisher.js';
import { openExport } from './export-format.js';
import { EMPTY_ROOT, appendLeaves, hashLeaf, nodeKey, rangeNodes } from './merkle.js';
import type { NoteVerifier } from './note.js';
import type { SignerStateFile } from './signer-state.js';

export interface RestoreReport {
  /** Tree size the database had before. */
  fromSize: number;
  /** Tree size after (the export's checkpoint size, or fromSize when nothing was needed). */
  toSize: number;
  /** The signer's last checkpoint size. */
  signedSize: number;
  appended: number;
}

interface RestoreDeps {
  db: Db;
  appender: Appender;
  headKey: Buffer;
  state: SignerStateFile;
  origin: string;
  verifiers: readonly NoteVerifier[];
}

/**
 * `transactions.request_mac` of a restored transaction: the request is lost, so no resubmission
 * matches it (a retry of that transaction id answers 409, never a replay of unknown content).
 */
const RESTORED_REQUEST_MAC = Buffer.alloc(32);
/** `data_keys.kms_key_id` of a restored format-1 record whose key reference was only in the lost row. */
const RESTORED_UNKNOWN_KEY = 'restored:unknown';

/**
 * The append request that re-creates one lost entry with its lookup rows (what GET, the access
 * list and verify-log's served-view check find records through): a transaction gets its
 * `transactions` row and a `data_keys` row WITHOUT a wrapped key (the key was only in the lost
 * rows: the record reads as shredded), an access entry its `access_entries` row. The leaf bytes
 * are appended unchanged whatever they decode to.
 */
function restoredEntry(leaf: Buffer, createdAt: Date): AppendRequest {
  let decoded: Leaf;
  try {
    decoded = decodeLeaf(leaf);
  } catch {
    return { kind: 'admin_event', leaf, createdAt };
  }
  if (decoded.type === 'transaction') {
    const transactionId = decoded.v === 1 ? decoded.transactionId : decoded.id;
    const processor = decoded.v === 1 ? decoded.processor : decoded.p;
    const key = decoded.v !== 1 && decoded.env.ep !== undefined ? { epochId: decoded.env.ep } : { kmsKeyId: decoded.v !== 1 && decoded.env.kms !== undefined ? decoded.env.kms : RESTORED_UNKNOWN_KEY };
    return { kind: 'transaction', leaf, createdAt, transaction: { transactionId, requestMac: RESTORED_REQUEST_MAC, processor }, dataKey: { wrappedKey: null, ...key } };
  }
  if (decoded.type === 'access') return { kind: 'access', leaf, createdAt, access: { transactionId: decoded.transactionId } };
  if (decoded.type === 'key_event') return { kind: 'key_event', leaf, createdAt };
  return { kind: 'admin_event', leaf, createdAt };
}

/** Re-appends the lost tail from `exportPath` (see the module contract). */
export async function restoreLostTail(deps: RestoreDeps, exportPath: string): Promise<RestoreReport> {
  const signed = await deps.state.load();
  if (signed === null) throw new PaylogError('BAD_REQUEST', `no signer state at ${deps.state.path}: nothing is known to be lost`);
  const head = (await readTreeHead(deps.db, deps.headKey)) ?? { size: 0, rootHash: EMPTY_ROOT };
  if (head.size >= signed.size) {
    await checkExtends(deps.db, signed, head);
    return { fromSize: head.size, toSize: head.size, signedSize: signed.size, appended: 0 };
  }
  // The stored prefix: its nodes must give the MAC'd head's root.
  await checkExtends(deps.db, null, head);
  const frontierIds = rangeNodes(0, head.size);
  const nodes = await readNodes(deps.db, frontierIds);
  const frontier = frontierIds.map((id) => nodes.get(nodeKey(id))!);

  const exp = await openExport(exportPath);
  if (exp.origin !== deps.origin) {
    exp.close();
    throw new PaylogError('BAD_REQUEST', `the export is of ${exp.origin}, not of ${deps.origin}`);
  }
  let target;
  try {
    target = verifyCheckpoint(exp.checkpoints[exp.checkpoints.length - 1]!, deps.verifiers, { origin: deps.origin });
  } catch {
    exp.close();
    throw new PaylogError('BAD_REQUEST', "the export's checkpoint is not signed by this service's keys");
  }
  if (target.size < signed.size) {
    exp.close();
    throw new PaylogError('BAD_REQUEST', `the export covers ${target.size} entries; the signer has signed ${signed.size}: take an export that covers it`);
  }
  // The tail, in index order, held in memory until it is proven.
  const tail: Buffer[] = [];
  let expected = 0;
  for await (const e of exp.entries) {
    if (e.index !== expected) throw new PaylogError('BAD_REQUEST', `export entry ${e.index} is out of order (expected ${expected})`);
    expected += 1;
    if (e.index >= head.size && e.index < target.size) tail.push(Buffer.from(e.leaf));
  }
  if (head.size + tail.length !== target.size) throw new PaylogError('BAD_REQUEST', `the export holds entries up to ${expected}, its checkpoint covers ${target.size}`);
  const toSigned = appendLeaves(head.size, frontier, tail.slice(0, signed.size - head.size).map(hashLeaf));
  if (!toSigned.root.equals(signed.rootHash)) {
    throw refusal('inconsistent', signed.size, head.size, `the stored tree of size ${head.size} plus the export's entries does not give the signed checkpoint of size ${signed.size}`);
  }
  const toTarget = appendLeaves(signed.size, toSigned.frontier, tail.slice(signed.size - head.size).map(hashLeaf));
  if (!toTarget.root.equals(target.rootHash)) {
    throw refusal('inconsistent', target.size, head.size, `the export's entries do not give its own checkpoint of size ${target.size}`);
  }
  // Proven: append exactly these bytes at exactly these indexes.
  const createdAt = new Date();
  const outcomes = await Promise.all(tail.map((leaf) => deps.appender.append(restoredEntry(leaf, createdAt))));
  outcomes.forEach((o, i) => {
    if (o.status !== 'appended' || o.logIndex !== head.size + i) {
      throw new PaylogError('INCONSISTENT_TREE', `restored entry ${head.size + i} landed ${o.status === 'appended' ? `at index ${o.logIndex}` : `as ${o.status}`}: another process appended meanwhile; stop every instance and run the restore again`);
    }
  });
  const after = await readTreeHead(deps.db, deps.headKey);
  if (!after || after.size !== target.size || !after.rootHash.equals(target.rootHash)) {
    throw new PaylogError('INCONSISTENT_TREE', 'after the restore the stored tree head is not the export checkpoint');
  }
  return { fromSize: head.size, toSize: target.size, signedSize: signed.size, appended: tail.length };
}
