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
 */
import { inArray, sql, desc, and, eq, or } from 'drizzle-orm';
import type { AppDatabase, Db } from '../db/connection.js';
import {
  accessEntries,
  dataKeys,
  logEntries,
  merkleNodes,
  transactions,
  treeHeads,
} from '../db/schema.js';
import { PaylogError, isPaylogError } from '../errors.js';
import { appendLeaves, hashLeaf, nodeKey, rangeNodes, type NodeId } from './merkle.js';

/** Advisory lock key serialising appends across instances ("paylogap"). */
export const APPEND_LOCK_KEY = 0x7061796c6f676170n;
export const DEFAULT_MAX_BATCH = 256;
export const DEFAULT_LINGER_MS = 0;

type TransactionInsert = typeof transactions.$inferInsert;
type DataKeyInsert = typeof dataKeys.$inferInsert;
type AccessInsert = typeof accessEntries.$inferInsert;

export type AppendRequest =
  | {
      kind: 'transaction';
      leaf: Buffer;
      createdAt: Date;
      transaction: Omit<TransactionInsert, 'logIndex' | 'createdAt'>;
      dataKey: Omit<DataKeyInsert, 'createdAt'>;
    }
  | { kind: 'access'; leaf: Buffer; createdAt: Date; access: Omit<AccessInsert, 'logIndex' | 'createdAt'> }
  | { kind: 'key_event'; leaf: Buffer; createdAt: Date; transactionId?: string };

export type AppendOutcome =
  | { status: 'appended'; logIndex: number; leafHash: Buffer; createdAt: Date; treeSize: number }
  | { status: 'replayed'; logIndex: number; leafHash: Buffer; createdAt: Date }
  | { status: 'conflict'; logIndex: number };

export interface TreeHead {
  size: number;
  rootHash: Buffer;
}

export interface AppenderOptions {
  maxBatch?: number;
  /** Extra wait before a batch starts, to gather more entries (0 = next tick). */
  lingerMs?: number;
  /** Called after each committed batch (metrics, checkpoint publisher). */
  onCommit?: (info: { batchSize: number; appended: number; head: TreeHead; durationMs: number }) => void;
}

interface Pending {
  req: AppendRequest;
  resolve: (o: AppendOutcome) => void;
  reject: (e: unknown) => void;
}

export class LogAppender {
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
    const { outcomes, head, appended } = await commitBatch(this.database.db, batch.map((p) => p.req));
    batch.forEach((p, i) => p.resolve(outcomes[i]!));
    this.opts.onCommit?.({ batchSize: batch.length, appended, head, durationMs: performance.now() - started });
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
          if (batch.length > 1) {
            // One bad entry must not fail its neighbours: retry each entry in a batch of its own.
            for (const p of batch) await this.commit([p], performance.now()).catch((e1: unknown) => p.reject(asLogError(e1)));
          } else {
            batch[0]!.reject(asLogError(e));
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

/** Reads the latest tree head (size 0 with the empty root when the log is empty). */
export async function readTreeHead(db: Db): Promise<TreeHead | null> {
  const rows = await db.select().from(treeHeads).orderBy(desc(treeHeads.size)).limit(1);
  const row = rows[0];
  return row ? { size: row.size, rootHash: row.rootHash } : null;
}

/** Fetches stored Merkle nodes by id in one query. */
export async function readNodes(db: Db, ids: NodeId[]): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  if (ids.length === 0) return out;
  const rows = await db
    .select()
    .from(merkleNodes)
    .where(or(...ids.map((n) => and(eq(merkleNodes.level, n.level), eq(merkleNodes.idx, n.index)))));
  for (const r of rows) out.set(nodeKey({ level: r.level, index: r.idx }), r.hash);
  return out;
}

/**
 * Commits one batch in one database transaction: lock, idempotency check, leaf + node + row
 * inserts, new tree head. Resolves with one outcome per request, in order.
 */
async function commitBatch(
  db: Db,
  reqs: AppendRequest[],
): Promise<{ outcomes: AppendOutcome[]; head: TreeHead; appended: number }> {
  return await db.transaction(async (tx) => {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(${APPEND_LOCK_KEY.toString()}::bigint)`);
    const head = (await readTreeHead(tx as unknown as Db)) ?? { size: 0, rootHash: Buffer.alloc(0) };

    // Idempotency: existing transaction ids (database, then earlier in this batch).
    const txIds = reqs.flatMap((r) => (r.kind === 'transaction' ? [r.transaction.transactionId] : []));
    const existing = new Map<string, { mac: Buffer; logIndex: number; createdAt: Date }>();
    if (txIds.length > 0) {
      const rows = await tx
        .select({
          id: transactions.transactionId,
          mac: transactions.requestMac,
          logIndex: transactions.logIndex,
          createdAt: transactions.createdAt,
        })
        .from(transactions)
        .where(inArray(transactions.transactionId, txIds));
      for (const r of rows) existing.set(r.id, { mac: r.mac, logIndex: r.logIndex, createdAt: r.createdAt });
    }

    const outcomes: (AppendOutcome | undefined)[] = new Array(reqs.length);
    const accepted: { i: number; req: AppendRequest; index: number; leafHash: Buffer }[] = [];
    const replayIndexes: number[] = [];
    for (let i = 0; i < reqs.length; i++) {
      const req = reqs[i]!;
      if (req.kind === 'transaction') {
        const prior = existing.get(req.transaction.transactionId);
        if (prior) {
          if (prior.mac.equals(req.transaction.requestMac)) {
            outcomes[i] = { status: 'replayed', logIndex: prior.logIndex, leafHash: Buffer.alloc(0), createdAt: prior.createdAt };
            replayIndexes.push(prior.logIndex);
          } else {
            outcomes[i] = { status: 'conflict', logIndex: prior.logIndex };
          }
          continue;
        }
      }
      const index = head.size + accepted.length;
      const leafHash = hashLeaf(req.leaf);
      accepted.push({ i, req, index, leafHash });
      if (req.kind === 'transaction') {
        existing.set(req.transaction.transactionId, { mac: req.transaction.requestMac, logIndex: index, createdAt: req.createdAt });
      }
    }

    let newHead = head;
    if (accepted.length > 0) {
      const frontierIds = rangeNodes(0, head.size);
      const stored = await readNodes(tx as unknown as Db, frontierIds);
      const frontier = frontierIds.map((id) => {
        const h = stored.get(nodeKey(id));
        if (!h) throw new PaylogError('INTEGRITY_FAILURE', 'stored Merkle frontier is incomplete');
        return h;
      });
      const { newNodes, root } = appendLeaves(
        head.size,
        frontier,
        accepted.map((a) => a.leafHash),
      );

      await tx.insert(logEntries).values(
        accepted.map((a) => ({
          idx: a.index,
          entryType: a.req.kind,
          transactionId:
            a.req.kind === 'transaction'
              ? a.req.transaction.transactionId
              : a.req.kind === 'access'
                ? a.req.access.transactionId
                : (a.req.transactionId ?? null),
          leaf: a.req.leaf,
          createdAt: a.req.createdAt,
        })),
      );
      await tx.insert(merkleNodes).values(newNodes.map((n) => ({ level: n.level, idx: n.index, hash: n.hash })));
      const txRows = accepted.filter((a) => a.req.kind === 'transaction');
      if (txRows.length > 0) {
        await tx.insert(transactions).values(
          txRows.map((a) => {
            const r = a.req as Extract<AppendRequest, { kind: 'transaction' }>;
            return { ...r.transaction, logIndex: a.index, createdAt: r.createdAt };
          }),
        );
        await tx.insert(dataKeys).values(
          txRows.map((a) => {
            const r = a.req as Extract<AppendRequest, { kind: 'transaction' }>;
            return { ...r.dataKey, createdAt: r.createdAt };
          }),
        );
      }
      const accessRows = accepted.filter((a) => a.req.kind === 'access');
      if (accessRows.length > 0) {
        await tx.insert(accessEntries).values(
          accessRows.map((a) => {
            const r = a.req as Extract<AppendRequest, { kind: 'access' }>;
            return { ...r.access, logIndex: a.index, createdAt: r.createdAt };
          }),
        );
      }
      newHead = { size: head.size + accepted.length, rootHash: root };
      await tx.insert(treeHeads).values({ size: newHead.size, rootHash: newHead.rootHash });
      for (const a of accepted) {
        outcomes[a.i] = { status: 'appended', logIndex: a.index, leafHash: a.leafHash, createdAt: a.req.createdAt, treeSize: newHead.size };
      }
    }

    // Replays report the stored leaf hash of the original entry.
    if (replayIndexes.length > 0) {
      const leafNodes = await readNodes(
        tx as unknown as Db,
        replayIndexes.map((index) => ({ level: 0, index })),
      );
      for (const o of outcomes) {
        if (o?.status === 'replayed') {
          const fresh = accepted.find((a) => a.index === o.logIndex);
          o.leafHash = fresh?.leafHash ?? leafNodes.get(nodeKey({ level: 0, index: o.logIndex })) ?? Buffer.alloc(0);
        }
      }
    }
    return { outcomes: outcomes as AppendOutcome[], head: newHead, appended: accepted.length };
  });
}
