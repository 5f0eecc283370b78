/**
 * Group-committing appender for the Merkle log.
 *
 * Contract: `append()` resolves only after the database transaction holding its entry has
 * committed (synchronous_commit: durable). Concurrent appends share one transaction — a batch
 * of up to `maxBatch` entries — and the Merkle state (nodes + tree head) advances once per
 * batch. Batches from several service instances on one database are serialised by a
 * transaction-scoped advisory lock, so indexes are dense and the tree is one tree.
 *
 * Idempotency: a transaction entry whose `transactionId` already exists (in the database or
 * earlier in the same batch) is not appended; it resolves `replayed` when its request MAC
 * matches, `conflict` otherwise.
 *
 * Preconditions: a transaction entry MAY name what must still hold when it commits
 * (`requires`: the submitting certificate is not revoked, its processor is active, its key
 * epoch neither retired nor shredded). They are
 * checked inside the batch transaction, under the append lock, and the rows they read are
 * locked FOR SHARE until the batch commits, so a concurrent disable, retirement or shred waits
 * for the batch and the entry MUST NOT commit once that change has taken effect. An entry whose
 * precondition fails is not appended and resolves `refused` with the reason. A revoked
 * submitter is refused first, even for a replay (a revoked certificate learns nothing); then
 * replays are decided (an identical replay stays a replay whatever else happened since).
 *
 * An access entry MAY likewise require that its record's key material is not shredded
 * (`requires.keyMaterial`, a granted release). Checked the same way, under the append lock: the
 * epoch row is read FOR SHARE, and every shred takes the append lock in the transaction of its
 * UPDATE (src/services/key-lifecycle.ts `commitShred`: the runtime role cannot lock data_keys
 * rows), so a shred commits either before the batch reads its state (the entry is refused) or
 * after the batch has committed. When it fails, the entry's `requires.otherwise` leaf (the
 * denied access) is appended IN ITS PLACE, in the same batch, and the entry resolves `denied`
 * with the reason: the attempt is logged exactly once, and the granted leaf never commits.
 */
import type pg from 'pg';
import type { AppDatabase, Db } from '../db/connection.js';
import type { dataKeys } from '../db/schema.js';
import { PaylogError, isPaylogError } from '../errors.js';
import { isTransientDatabaseError } from '../db/errors.js';
import { macEqual } from '../crypto/fingerprint.js';
import { EMPTY_ROOT, appendLeaves, hashLeaf, nodeKey, rangeNodes, type NodeId } from './merkle.js';
import { TREE_HEAD_PAGE, treeHeadMac, treeHeadMacValid } from './tree-head.js';

/** Advisory lock key serialising appends across instances ("paylogap"). */
export const APPEND_LOCK_KEY = 0x7061796c6f676170n;
export const DEFAULT_MAX_BATCH = 256;
export const DEFAULT_LINGER_MS = 0;
/** Entries waiting beyond this are refused at once (503) rather than queued without bound. */
export const MAX_QUEUED_ENTRIES = 10_000;

type DataKeyInsert = typeof dataKeys.$inferInsert;

/**
 * What a batch writes beside each leaf: only lookup rows (the record itself is the leaf, leaf
 * format v2). `transaction`: id → index and the idempotency MAC; `access`: transaction → index.
 */
export type AppendRequest =
  | {
      kind: 'transaction';
      leaf: Buffer;
      createdAt: Date;
      /**
       * Lookup columns of the `transactions` row. `processor` and `fingerprint` are opaque to
       * the log (stored as given, never in a leaf): they let a read authorize before decoding
       * the leaf, and keep the fingerprint out of the log (issue 17).
       */
      transaction: { transactionId: string; requestMac: Buffer; processor?: string; fingerprint?: string };
      dataKey: Omit<DataKeyInsert, 'createdAt'>;
      requires?: AppendPrecondition;
    }
  | { kind: 'access'; leaf: Buffer; createdAt: Date; access: { transactionId: string }; requires?: AccessPrecondition }
  | { kind: 'key_event'; leaf: Buffer; createdAt: Date; transactionId?: string }
  | { kind: 'admin_event'; leaf: Buffer; createdAt: Date };

/** What must still hold when a transaction entry commits (see the module contract). */
export interface AppendPrecondition {
  /**
   * The submitting client certificate is not in `revoked_certificates` (by fingerprint, or by
   * serial), read under the append lock: a revocation committed before the batch reads its
   * state refuses the entry.
   */
  principal?: { certificateFingerprint: string; serialHex: string };
  /** This processor exists and is active. */
  processor: string;
  /** This key epoch exists and is neither retired nor shredded. */
  epochId?: string;
}

/**
 * What must still hold when a (granted) access entry commits, and what is logged instead when it
 * does not (see the module contract).
 */
export interface AccessPrecondition {
  /**
   * The record's key material is not shredded: its data_keys row has `wrapped_key IS NOT NULL
   * AND shredded_at IS NULL`, and, for an envelope v2 record (`epochId`), its key_epochs row has
   * `shredded_at IS NULL AND wrapped_private_key IS NOT NULL`.
   */
  keyMaterial: { transactionId: string; epochId?: string };
  /**
   * The leaf appended in place of the entry's own when the precondition fails: the denied
   * access entry of the same attempt (same transaction). MUST NOT be the granted leaf.
   */
  otherwise: Buffer;
}

export type RefusalReason = 'principal_revoked' | 'processor_inactive' | 'epoch_unusable';
/** Why an access entry's key-material precondition failed. */
export type DenialReason = 'epoch_shredded' | 'data_key_shredded';

export type AppendOutcome =
  | { status: 'appended'; logIndex: number; leafHash: Buffer; createdAt: Date; treeSize: number }
  | { status: 'replayed'; logIndex: number; leafHash: Buffer; createdAt: Date }
  | { status: 'conflict'; logIndex: number }
  | { status: 'refused'; reason: RefusalReason }
  /** The precondition of an access entry failed: its `requires.otherwise` leaf was appended instead. */
  | { status: 'denied'; reason: DenialReason; logIndex: number; leafHash: Buffer; createdAt: Date; treeSize: number };

export interface TreeHead {
  size: number;
  rootHash: Buffer;
}

/** What an appender reports after each committed batch. */
export interface CommitInfo {
  batchSize: number;
  appended: number;
  head: TreeHead;
  durationMs: number;
}

/**
 * The append path as services see it (implemented by LogAppender). `append` MUST resolve only
 * after the batch holding the entry has committed, and MUST reject (PaylogError) when the entry
 * is not known to be durable. `close` refuses new entries and resolves once every queued one
 * has committed or failed.
 */
export interface Appender {
  append(req: AppendRequest): Promise<AppendOutcome>;
  close(): Promise<void>;
}

export interface AppenderOptions {
  maxBatch?: number;
  /** Extra wait before a batch starts, to gather more entries (0 = next tick). */
  lingerMs?: number;
  /** Key for tree-head MACs (`treeHeadKey(service key)`); without it heads are neither MAC'd nor checked. */
  headKey?: Buffer;
  /** Called after each committed batch (metrics, checkpoint publisher). */
  onCommit?: (info: CommitInfo) => void;
}

interface Pending {
  req: AppendRequest;
  resolve: (o: AppendOutcome) => void;
  reject: (e: unknown) => void;
}

export class LogAppender implements Appender {
  private queue: Pending[] = [];
  private running: Promise<void> | null = null;
  private closed = false;
  private readonly maxBatch: number;
  private readonly lingerMs: number;

  constructor(
    private readonly database: AppDatabase,
    private readonly opts: AppenderOptions = {},
  ) {
    this.maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;
    this.lingerMs = opts.lingerMs ?? DEFAULT_LINGER_MS;
  }

  /** Queues one entry; resolves only after the batch containing it is committed. */
  append(req: AppendRequest): Promise<AppendOutcome> {
    if (this.closed) return Promise.reject(new PaylogError('LOG_UNAVAILABLE', 'the log is shutting down'));
    if (this.queue.length >= MAX_QUEUED_ENTRIES) return Promise.reject(new PaylogError('LOG_UNAVAILABLE', 'the log is overloaded; retry later'));
    return new Promise<AppendOutcome>((resolve, reject) => {
      this.queue.push({ req, resolve, reject });
      if (!this.running) this.running = this.drain();
    });
  }

  /** Refuses new entries and resolves when every queued batch has committed or failed. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.running) await this.running;
  }

  private async commit(batch: Pending[], started: number): Promise<void> {
    const { outcomes, head, appended } = await commitBatch(this.database.pool, batch.map((p) => p.req), this.opts.headKey);
    batch.forEach((p, i) => p.resolve(outcomes[i]!));
    try {
      this.opts.onCommit?.({ batchSize: batch.length, appended, head, durationMs: performance.now() - started });
    } catch {
      // a listener's failure must never look like a failed (and retried) batch
    }
  }

  private async drain(): Promise<void> {
    try {
      await (this.lingerMs > 0
        ? new Promise((r) => setTimeout(r, this.lingerMs))
        : new Promise((r) => setImmediate(r)));
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.maxBatch);
        const started = performance.now();
        try {
          await this.commit(batch, started);
        } catch (e) {
          if (batch.length > 1 && !(e instanceof CommitOutcomeUnknown) && !isTransientDatabaseError(e)) {
            // One bad entry must not fail its neighbours: retry each entry in a batch of its own.
            // Not when the database itself is unavailable (lost, restarting, timed out): that
            // fails every entry alike, and one retry each would multiply the wait by the batch.
            for (const p of batch) await this.commit([p], performance.now()).catch((e1: unknown) => p.reject(asLogError(e1)));
          } else {
            for (const p of batch) p.reject(asLogError(e));
          }
        }
      }
    } finally {
      this.running = null;
      if (this.queue.length > 0 && !this.running) this.running = this.drain();
    }
  }
}

function asLogError(e: unknown): PaylogError {
  return isPaylogError(e) ? e : new PaylogError('LOG_UNAVAILABLE', 'the log could not make the entry durable', undefined, { cause: e });
}

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** COMMIT itself failed: the batch may or may not be durable. */
class CommitOutcomeUnknown extends Error {
  constructor(cause: unknown) {
    super('commit outcome unknown', { cause });
  }
}

const SELECT_HEADS = `SELECT size, root_hash, mac,
    (mac IS NULL AND size <= coalesce((SELECT value FROM paylog_marks WHERE name = 'legacy_tree_head_max'), 0)) AS legacy
  FROM tree_heads WHERE size < $1 ORDER BY size DESC LIMIT ${TREE_HEAD_PAGE}`;
const SELECT_NODES =
  'SELECT n.level, n.idx, n.hash FROM merkle_nodes n JOIN unnest($1::smallint[], $2::bigint[]) AS w(level, idx) ON n.level = w.level AND n.idx = w.idx';
/**
 * One statement, under the append lock, for everything a batch must know before it writes
 * (RFC 9162 §2.1.4: appending needs only the tree size and the frontier — the roots of the
 * complete subtrees, one per set bit of the size):
 * - 'h': the largest tree head (its MAC is checked in Node; if it fails, the paged read in
 *   selectHead takes over),
 * - 'n': that head's frontier nodes — for each set bit l of size, the node at level l, index
 *   (size >> l) − 1 (the frontier CTE is MATERIALIZED: inlined, the planner looked the nodes up
 *   by level alone and filtered on the index, reading every node of each level — 256 rows per
 *   level at 3,000 entries, growing with the log; materialized, each is one primary-key lookup),
 * - 't': the transaction ids of the batch that already exist,
 * - 'p' / 'e': required processors that are not active / required epochs that cannot encrypt,
 * - 'f' / 's': required principals' certificate fingerprints / serials that are revoked,
 * - 'x' / 'k': access entries' required epochs whose private key is shredded / required
 *   transactions whose data key is shredded (or missing).
 * The rows a precondition holds on are locked FOR SHARE until the batch commits (a disable,
 * retirement or shred of them waits for it); data_keys rows cannot be locked by the runtime
 * role, and shreds take the append lock instead (module contract). Lock wait and round trips under the append lock
 * are what bounds throughput across processes, so this is one round trip, not four.
 */
const SELECT_BATCH_STATE = `
WITH head AS (
  SELECT size, root_hash, mac,
    (mac IS NULL AND size <= coalesce((SELECT value FROM paylog_marks WHERE name = 'legacy_tree_head_max'), 0)) AS legacy
  FROM tree_heads ORDER BY size DESC LIMIT 1
), frontier AS MATERIALIZED (
  SELECT l::smallint AS level, (h.size >> l) - 1 AS idx FROM head h, generate_series(0, 62) AS l WHERE ((h.size >> l) & 1) = 1
), active_processors AS (
  SELECT name FROM processors WHERE name = ANY($2::text[]) AND status = 'active' FOR SHARE
), usable_epochs AS (
  SELECT epoch_id FROM key_epochs WHERE epoch_id = ANY($3::text[]) AND retired_at IS NULL AND shredded_at IS NULL FOR SHARE
), unshredded_epochs AS (
  SELECT epoch_id FROM key_epochs WHERE epoch_id = ANY($6::text[]) AND shredded_at IS NULL AND wrapped_private_key IS NOT NULL FOR SHARE
)
SELECT 'h' AS kind, NULL::text AS id, h.size AS n, NULL::smallint AS level, h.root_hash AS hash, h.mac AS mac, h.legacy, NULL::timestamptz AS created_at FROM head h
UNION ALL
SELECT 'n', NULL, f.idx, f.level, m.hash, NULL, NULL, NULL FROM frontier f JOIN merkle_nodes m ON m.level = f.level AND m.idx = f.idx
UNION ALL
SELECT 't', transaction_id, log_index, NULL, NULL, request_mac, NULL, created_at FROM transactions WHERE transaction_id = ANY($1::text[])
UNION ALL
SELECT 'p', g.name, NULL, NULL, NULL, NULL, NULL, NULL FROM unnest($2::text[]) AS g(name) WHERE g.name NOT IN (SELECT name FROM active_processors)
UNION ALL
SELECT 'e', g.id, NULL, NULL, NULL, NULL, NULL, NULL FROM unnest($3::text[]) AS g(id) WHERE g.id NOT IN (SELECT epoch_id FROM usable_epochs)
UNION ALL
SELECT 'f', fingerprint, NULL, NULL, NULL, NULL, NULL, NULL FROM revoked_certificates WHERE fingerprint = ANY($4::text[])
UNION ALL
SELECT 's', serial, NULL, NULL, NULL, NULL, NULL, NULL FROM revoked_certificates WHERE serial IS NOT NULL AND serial = ANY($5::text[])
UNION ALL
SELECT 'x', g.id, NULL, NULL, NULL, NULL, NULL, NULL FROM unnest($6::text[]) AS g(id) WHERE g.id NOT IN (SELECT epoch_id FROM unshredded_epochs)
UNION ALL
SELECT 'k', g.id, NULL, NULL, NULL, NULL, NULL, NULL FROM unnest($7::text[]) AS g(id)
  WHERE NOT EXISTS (SELECT 1 FROM data_keys d WHERE d.transaction_id = g.id AND d.wrapped_key IS NOT NULL AND d.shredded_at IS NULL)`;

interface BatchState {
  head: TreeHead;
  /** The head's frontier, in rangeNodes(0, size) order. */
  frontier: Buffer[];
  existing: Map<string, { mac: Buffer; logIndex: number; createdAt: Date }>;
  inactiveProcessors: Set<string>;
  unusableEpochs: Set<string>;
  revokedFingerprints: Set<string>;
  revokedSerials: Set<string>;
  shreddedEpochs: Set<string>;
  shreddedDataKeys: Set<string>;
}

async function readBatchState(client: pg.PoolClient, reqs: AppendRequest[], headKey: Buffer | undefined): Promise<BatchState> {
  const txs = reqs.filter((r): r is TxReq => r.kind === 'transaction');
  const processors = [...new Set(txs.flatMap((r) => (r.requires ? [r.requires.processor] : [])))];
  const epochIds = [...new Set(txs.flatMap((r) => (r.requires?.epochId ? [r.requires.epochId] : [])))];
  const principals = txs.flatMap((r) => (r.requires?.principal ? [r.requires.principal] : []));
  const keyMaterial = reqs.flatMap((r) => (r.kind === 'access' && r.requires ? [r.requires.keyMaterial] : []));
  const r = await client.query({
    name: 'paylog_batch_state',
    text: SELECT_BATCH_STATE,
    values: [
      txs.map((t) => t.transaction.transactionId),
      processors,
      epochIds,
      [...new Set(principals.map((p) => p.certificateFingerprint))],
      [...new Set(principals.map((p) => p.serialHex))],
      [...new Set(keyMaterial.flatMap((k) => (k.epochId !== undefined ? [k.epochId] : [])))],
      [...new Set(keyMaterial.map((k) => k.transactionId))],
    ],
  });
  type Row = { kind: 'h' | 'n' | 't' | 'p' | 'e' | 'f' | 's' | 'x' | 'k'; id: string | null; n: string | null; level: number | null; hash: Buffer | null; mac: Buffer | null; legacy: boolean | null; created_at: Date | null };
  const state: BatchState = {
    head: { size: 0, rootHash: EMPTY_ROOT },
    frontier: [],
    existing: new Map(),
    inactiveProcessors: new Set(),
    unusableEpochs: new Set(),
    revokedFingerprints: new Set(),
    revokedSerials: new Set(),
    shreddedEpochs: new Set(),
    shreddedDataKeys: new Set(),
  };
  const nodes = new Map<string, Buffer>();
  let top: Row | undefined;
  for (const row of r.rows as Row[]) {
    if (row.kind === 'h') top = row;
    else if (row.kind === 'n') nodes.set(nodeKey({ level: row.level!, index: Number(row.n) }), row.hash!);
    else if (row.kind === 't') state.existing.set(row.id!, { mac: row.mac!, logIndex: Number(row.n), createdAt: row.created_at! });
    else if (row.kind === 'p') state.inactiveProcessors.add(row.id!);
    else if (row.kind === 'e') state.unusableEpochs.add(row.id!);
    else if (row.kind === 'f') state.revokedFingerprints.add(row.id!);
    else if (row.kind === 's') state.revokedSerials.add(row.id!);
    else if (row.kind === 'x') state.shreddedEpochs.add(row.id!);
    else state.shreddedDataKeys.add(row.id!);
  }
  let head: TreeHead | null = null;
  if (top) {
    const size = Number(top.n);
    if (headKey === undefined || top.legacy || treeHeadMacValid(headKey, size, top.hash!, top.mac)) head = { size, rootHash: top.hash! };
  }
  if (top && !head) {
    // The largest row is not ours (forged or damaged): the paged read finds the real head.
    head = await selectHead(client, headKey);
    nodes.clear();
    if (head) for (const [k, v] of await selectNodes(client, rangeNodes(0, head.size))) nodes.set(k, v);
  }
  if (head) {
    state.head = head;
    state.frontier = rangeNodes(0, head.size).map((id) => {
      const h = nodes.get(nodeKey(id));
      if (!h) throw new PaylogError('INTERNAL', 'stored Merkle frontier is incomplete');
      return h;
    });
  }
  return state;
}

/**
 * Reads the latest tree head the service can trust (null when the log is empty): see
 * src/log/tree-head.ts. Without `headKey` the largest row is taken as is.
 */
export async function readTreeHead(db: Db, headKey?: Buffer): Promise<TreeHead | null> {
  return await selectHead(db.$client, headKey);
}

async function selectHead(q: Queryable, headKey?: Buffer): Promise<TreeHead | null> {
  let below = Number.MAX_SAFE_INTEGER;
  for (;;) {
    const r = await q.query({ name: 'paylog_heads', text: SELECT_HEADS, values: [below] });
    const rows = r.rows as { size: string; root_hash: Buffer; mac: Buffer | null; legacy: boolean }[];
    for (const row of rows) {
      const size = Number(row.size);
      if (headKey === undefined || row.legacy || treeHeadMacValid(headKey, size, row.root_hash, row.mac)) {
        return { size, rootHash: row.root_hash };
      }
    }
    if (rows.length < TREE_HEAD_PAGE) return null;
    below = Number(rows[rows.length - 1]!.size);
  }
}

/** Fetches stored Merkle nodes by id in one indexed query. */
export async function readNodes(db: Db, ids: NodeId[]): Promise<Map<string, Buffer>> {
  return await selectNodes(db.$client, ids);
}

async function selectNodes(q: Queryable, ids: NodeId[]): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  if (ids.length === 0) return out;
  const r = await q.query({
    name: 'paylog_nodes',
    text: SELECT_NODES,
    values: [ids.map((n) => n.level), ids.map((n) => n.index)],
  });
  for (const row of r.rows as { level: number; idx: string; hash: Buffer }[]) {
    out.set(nodeKey({ level: row.level, index: Number(row.idx) }), row.hash);
  }
  return out;
}

/**
 * One statement inserting everything a batch writes (data-modifying CTEs; foreign keys are
 * checked at the end of the statement). Arrays are bound as parameters, one per column.
 */
const INSERT_BATCH = `
WITH le AS (
  INSERT INTO log_entries (idx, leaf, created_at)
  SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::timestamptz[])
), mn AS (
  INSERT INTO merkle_nodes (level, idx, hash)
  SELECT * FROM unnest($4::smallint[], $5::bigint[], $6::bytea[])
), tx AS (
  INSERT INTO transactions (transaction_id, log_index, request_mac, created_at, processor, fingerprint)
  SELECT * FROM unnest($7::text[], $8::bigint[], $9::bytea[], $10::timestamptz[], $22::text[], $23::text[])
), dk AS (
  INSERT INTO data_keys (transaction_id, kms_key_id, wrapped_key, created_at, epoch_id)
  SELECT * FROM unnest($11::text[], $12::text[], $13::bytea[], $14::timestamptz[], $21::text[])
), ae AS (
  INSERT INTO access_entries (log_index, transaction_id, created_at)
  SELECT * FROM unnest($15::bigint[], $16::text[], $17::timestamptz[])
)
INSERT INTO tree_heads (size, root_hash, mac) VALUES ($18, $19, $20)`;

type TxReq = Extract<AppendRequest, { kind: 'transaction' }>;

/**
 * The batch insert runs with a generic plan (for the rest of its transaction, which then only
 * commits). The pool's connections plan every statement afresh (plan_cache_mode=
 * force_custom_plan, src/db/connection.ts: reads must not keep a plan made while the tables
 * were tiny), and that includes the foreign-key checks the insert fires for each data_keys
 * row: re-planned per row they were half the insert's time (measured with pg_stat_statements:
 * 3.1 → 1.5 ms per batch of ~16). The insert reads no table itself, and the foreign-key checks
 * are primary-key lookups, so one plan fits every size (and ANALYZE re-plans them anyway).
 */
const INSERT_PLAN_MODE = 'SET LOCAL plan_cache_mode = force_generic_plan';

/** The submitter's certificate is revoked (checked before anything else, replays included). */
function principalRevoked(requires: AppendPrecondition | undefined, state: BatchState): boolean {
  const p = requires?.principal;
  return p !== undefined && (state.revokedFingerprints.has(p.certificateFingerprint) || state.revokedSerials.has(p.serialHex));
}

function refusalOf(requires: AppendPrecondition | undefined, state: BatchState): RefusalReason | null {
  if (!requires) return null;
  if (state.inactiveProcessors.has(requires.processor)) return 'processor_inactive';
  if (requires.epochId !== undefined && state.unusableEpochs.has(requires.epochId)) return 'epoch_unusable';
  return null;
}
type AccessReq = Extract<AppendRequest, { kind: 'access' }>;

/** Why an access entry's key material may no longer be used (null: it may). */
function denialOf(requires: AccessPrecondition | undefined, state: BatchState): DenialReason | null {
  if (!requires) return null;
  const { epochId, transactionId } = requires.keyMaterial;
  if (epochId !== undefined && state.shreddedEpochs.has(epochId)) return 'epoch_shredded';
  if (state.shreddedDataKeys.has(transactionId)) return 'data_key_shredded';
  return null;
}

function batchValues(
  accepted: { req: AppendRequest; index: number }[],
  nodes: Array<NodeId & { hash: Buffer }>,
  head: TreeHead,
  headKey: Buffer | undefined,
): unknown[] {
  const txs = accepted.filter((a): a is { req: TxReq; index: number } => a.req.kind === 'transaction');
  const acc = accepted.filter((a): a is { req: AccessReq; index: number } => a.req.kind === 'access');
  const col = <T, R>(xs: T[], f: (x: T) => R) => xs.map(f);
  return [
    col(accepted, (a) => a.index),
    col(accepted, (a) => a.req.leaf),
    col(accepted, (a) => a.req.createdAt),
    col(nodes, (n) => n.level),
    col(nodes, (n) => n.index),
    col(nodes, (n) => n.hash),
    col(txs, (a) => a.req.transaction.transactionId),
    col(txs, (a) => a.index),
    col(txs, (a) => a.req.transaction.requestMac),
    col(txs, (a) => a.req.createdAt),
    col(txs, (a) => a.req.dataKey.transactionId),
    col(txs, (a) => a.req.dataKey.kmsKeyId ?? null),
    col(txs, (a) => a.req.dataKey.wrappedKey),
    col(txs, (a) => a.req.createdAt),
    col(acc, (a) => a.index),
    col(acc, (a) => a.req.access.transactionId),
    col(acc, (a) => a.req.createdAt),
    head.size,
    head.rootHash,
    headKey ? treeHeadMac(headKey, head.size, head.rootHash) : null,
    col(txs, (a) => a.req.dataKey.epochId ?? null),
    col(txs, (a) => a.req.transaction.processor ?? null),
    col(txs, (a) => a.req.transaction.fingerprint ?? null),
  ];
}

/**
 * Commits one batch in one database transaction: lock, batch state, leaf + node + row inserts,
 * new tree head, COMMIT. Resolves with one outcome per request, in order.
 *
 * Under the append lock the event loop MUST NOT be waited on more often than needed: another
 * process's batch waits for this one, and on a busy loop every turn costs milliseconds. So
 * statements that do not depend on a decision made here are queued back to back (node-postgres
 * sends the next queued statement as soon as the previous one completes, from its socket
 * callback): BEGIN + lock with the batch-state read, and the inserts with COMMIT. That is two
 * turns of the loop per batch whatever its size. A batch with replays reads their stored leaf
 * hashes before it commits (a missing one fails the batch, which is then retried entry by entry).
 */
async function commitBatch(
  pool: pg.Pool,
  reqs: AppendRequest[],
  headKey?: Buffer,
): Promise<{ outcomes: AppendOutcome[]; head: TreeHead; appended: number }> {
  const client = await pool.connect();
  let broken = false;
  let finished = false;
  try {
    // Durable on commit whatever the server default (PCI DSS 10.2: nothing acknowledged is lost).
    const lock = client.query(`BEGIN; SET LOCAL synchronous_commit = on; SELECT pg_advisory_xact_lock(${APPEND_LOCK_KEY.toString()})`);
    const [, state] = await Promise.all([lock, readBatchState(client, reqs, headKey)]);
    const plan = planBatch(state, reqs);
    const insert =
      plan.accepted.length > 0
        ? Promise.all([
            client.query(INSERT_PLAN_MODE),
            client.query({ name: 'paylog_insert_batch', text: INSERT_BATCH, values: batchValues(plan.accepted, plan.newNodes, plan.head, headKey) }),
          ])
        : null;
    if (plan.replayIndexes.length > 0) {
      const [leafNodes] = await Promise.all([selectNodes(client, plan.replayIndexes.map((index) => ({ level: 0, index }))), insert]);
      fillReplayLeafHashes(plan, leafNodes);
      await commitOrUnknown(client.query('COMMIT'));
    } else {
      const commit = commitOrUnknown(client.query('COMMIT'));
      // Both settle before either is judged: an insert error aborts the transaction, and COMMIT
      // then ends it as a rollback (the insert's error is the one to report).
      const [ins, com] = await Promise.allSettled([insert, commit]);
      if (ins.status === 'rejected') {
        finished = com.status === 'fulfilled';
        throw ins.reason;
      }
      if (com.status === 'rejected') throw com.reason;
    }
    finished = true;
    return { outcomes: plan.outcomes as AppendOutcome[], head: plan.head, appended: plan.accepted.length };
  } catch (e) {
    if (e instanceof CommitOutcomeUnknown) broken = true;
    else if (!finished) {
      await client.query('ROLLBACK').catch(() => {
        broken = true;
      });
    }
    throw e;
  } finally {
    client.release(broken);
  }
}

/** Awaits a COMMIT; its failure (or a transaction that ended otherwise) leaves the outcome unknown. */
async function commitOrUnknown(commit: Promise<pg.QueryResult>): Promise<void> {
  let r: pg.QueryResult;
  try {
    r = await commit;
  } catch (e) {
    // The outcome of a failed COMMIT is unknown: never retry it entry by entry.
    throw new CommitOutcomeUnknown(e);
  }
  if (r.command !== 'COMMIT') throw new PaylogError('LOG_UNAVAILABLE', `the batch transaction ended with ${r.command}, not COMMIT`);
}

interface BatchPlan {
  outcomes: (AppendOutcome | undefined)[];
  /** `req.leaf` is the leaf appended (an access entry's `otherwise` leaf when it was denied). */
  accepted: { i: number; req: AppendRequest; index: number; leafHash: Buffer; denied?: DenialReason }[];
  newNodes: Array<NodeId & { hash: Buffer }>;
  head: TreeHead;
  replayIndexes: number[];
}

/**
 * Decides every entry of a batch from the state read under the lock (pure): replays and
 * conflicts first, then refused preconditions (an access entry whose key material is shredded
 * is appended as its `otherwise` leaf instead), then the rest appended densely after the head
 * (RFC 9162 §2.1.4: the new nodes and root follow from the frontier and the new leaf hashes).
 */
function planBatch(state: BatchState, reqs: AppendRequest[]): BatchPlan {
  const { head, frontier, existing } = state;
  const outcomes: (AppendOutcome | undefined)[] = new Array(reqs.length);
  const accepted: BatchPlan['accepted'] = [];
  const replayIndexes: number[] = [];
  for (let i = 0; i < reqs.length; i++) {
    const req = reqs[i]!;
    if (req.kind === 'transaction') {
      if (principalRevoked(req.requires, state)) {
        outcomes[i] = { status: 'refused', reason: 'principal_revoked' };
        continue;
      }
      const prior = existing.get(req.transaction.transactionId);
      if (prior) {
        if (macEqual(prior.mac, req.transaction.requestMac)) {
          outcomes[i] = { status: 'replayed', logIndex: prior.logIndex, leafHash: Buffer.alloc(0), createdAt: prior.createdAt };
          replayIndexes.push(prior.logIndex);
        } else {
          outcomes[i] = { status: 'conflict', logIndex: prior.logIndex };
        }
        continue;
      }
      const refusal = refusalOf(req.requires, state);
      if (refusal) {
        outcomes[i] = { status: 'refused', reason: refusal };
        continue;
      }
    }
    const index = head.size + accepted.length;
    const denied = req.kind === 'access' ? denialOf(req.requires, state) : null;
    if (denied && req.kind === 'access') {
      const leaf = req.requires!.otherwise;
      accepted.push({ i, req: { ...req, leaf }, index, leafHash: hashLeaf(leaf), denied });
      continue;
    }
    accepted.push({ i, req, index, leafHash: hashLeaf(req.leaf) });
    if (req.kind === 'transaction') {
      existing.set(req.transaction.transactionId, { mac: req.transaction.requestMac, logIndex: index, createdAt: req.createdAt });
    }
  }
  if (accepted.length === 0) return { outcomes, accepted, newNodes: [], head, replayIndexes };
  const { newNodes, root } = appendLeaves(head.size, frontier, accepted.map((a) => a.leafHash));
  const newHead = { size: head.size + accepted.length, rootHash: root };
  for (const a of accepted) {
    const at = { logIndex: a.index, leafHash: a.leafHash, createdAt: a.req.createdAt, treeSize: newHead.size };
    outcomes[a.i] = a.denied ? { status: 'denied', reason: a.denied, ...at } : { status: 'appended', ...at };
  }
  return { outcomes, accepted, newNodes, head: newHead, replayIndexes };
}

/** Replays report the stored leaf hash of the original entry (or of its twin earlier in the batch). */
function fillReplayLeafHashes(plan: BatchPlan, leafNodes: Map<string, Buffer>): void {
  for (const o of plan.outcomes) {
    if (o?.status === 'replayed') {
      const fresh = plan.accepted.find((a) => a.index === o.logIndex);
      const stored = fresh?.leafHash ?? leafNodes.get(nodeKey({ level: 0, index: o.logIndex }));
      // MUST NOT answer a replay without the original's leaf hash: a missing level-0 node means
      // the stored tree is damaged. Thrown before COMMIT, the batch is retried entry by entry,
      // so only this replay fails.
      if (!stored) throw new PaylogError('INTERNAL', 'the stored leaf hash of a replayed entry is missing');
      o.leafHash = stored;
    }
  }
}
