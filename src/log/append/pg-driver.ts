/**
 * The PostgreSQL storage driver of the append path: one database transaction per batch.
 *
 * Contract:
 * - `commitBatch` resolves only after the batch's transaction has COMMITted with
 *   synchronous_commit on (durable: PCI DSS 10.2, nothing acknowledged is lost), with one
 *   outcome per request, in order (decided by src/log/append/plan.ts).
 * - Batches from every instance on one database are serialised by a transaction-scoped
 *   advisory lock (APPEND_LOCK_KEY), so indexes are dense and the tree is one tree. Anything
 *   that must not interleave with a batch (a shred whose rows the runtime role cannot lock)
 *   takes the same lock.
 * - Under the lock the event loop MUST NOT be waited on more often than needed: another
 *   process's batch waits for this one. Two turns of the loop per batch whatever its size
 *   (BEGIN + lock + state read queued back to back; inserts + COMMIT queued back to back), and
 *   a batch with replays reads their stored leaf hashes alongside its inserts before COMMIT.
 * - A failed COMMIT leaves the outcome unknown: it MUST surface as `CommitOutcomeUnknown`, its
 *   connection MUST be discarded, and the batch MUST NOT be retried entry by entry.
 * - It knows nothing about payments: preconditions are registered checks (preconditions.ts)
 *   whose SQL it splices into its one state read; companion writes (companions.ts) are
 *   registered writes it makes in the batch transaction, queued behind its insert, so they
 *   commit exactly when the entries that asked for them do.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { PaylogError } from '../../errors.js';
import { isTransientDatabaseError } from '../../db/errors.js';
import { FRESH_PLAN_MODE, KEEP_INDEX_PLANS, KEPT_PLAN_MODE } from '../../db/plans.js';
import { EMPTY_ROOT, nodeKey, rangeNodes, type NodeId } from '../merkle.js';
import { treeHeadMac } from '../tree-head.js';
import { LEGACY_HEAD_COLUMN, headTrusted, selectHead, selectNodes, type TreeHead } from '../store.js';
import { batchKeys, companionCalls, planBatch, withCompanionResults, withReplayLeafHashes, type AcceptedEntry, type BatchState, type StoredTransaction } from './plan.js';
import { companionStatement, companionTable, type CompanionCall, type CompanionWrite } from './companions.js';
import { checkRowKind, checkSql, checkTable, type CheckTable, type PreconditionCheck } from './preconditions.js';
import type { AccessRequest, AppendDriver, AppendRequest, BatchResult, TransactionRequest } from './types.js';

/** Advisory lock key serialising appends across instances ("paylogap"). */
export const APPEND_LOCK_KEY = 0x7061796c6f676170n;

/** COMMIT itself failed: the batch may or may not be durable. */
class CommitOutcomeUnknown extends Error {
  constructor(cause: unknown) {
    super('commit outcome unknown', { cause });
  }
}

/**
 * The head of the batch-state read (RFC 9162 §2.1.4: appending needs only the tree size and the
 * frontier — the roots of the complete subtrees, one per set bit of the size):
 * - 'h': the largest tree head (its MAC is checked in Node; if it fails, the paged read in
 *   selectHead takes over),
 * - 'n': that head's frontier nodes — for each set bit l of size, the node at level l, index
 *   (size >> l) − 1 (the frontier CTE is MATERIALIZED: inlined, the planner looked the nodes up
 *   by level alone and filtered on the index, reading every node of each level — 256 rows per
 *   level at 3,000 entries, growing with the log; materialized, each is one primary-key lookup),
 * - 't': the transaction ids of the batch that already exist,
 * - 'c<i>': the keys for which the i-th check OF THIS READ fails (preconditions.ts), its rows
 *   locked FOR SHARE by its `held` CTE until the batch commits. A read carries only the checks
 *   the batch's entries name (a check with no keys can fail for none and hold no row, so leaving
 *   it out changes nothing but the planning time),
 * Each variant (set of checks) is a named statement with one kept index plan per connection
 * (src/db/plans.ts, set by the lock statement): planned afresh, its planning cost more than its
 * execution, under the append lock.
 * Lock wait and round trips under the append lock are what bounds throughput across processes,
 * so this is one round trip whatever the number of checks.
 */
function batchStateSql(checks: readonly PreconditionCheck[]): string {
  const { ctes, arms } = checkSql(checks, 2);
  return `
WITH head AS (
  SELECT size, root_hash, mac,
    ${LEGACY_HEAD_COLUMN}
  FROM tree_heads ORDER BY size DESC LIMIT 1
), frontier AS MATERIALIZED (
  SELECT l::smallint AS level, (h.size >> l) - 1 AS idx FROM head h, generate_series(0, 62) AS l WHERE ((h.size >> l) & 1) = 1
)${ctes.map((c) => `, ${c}`).join('')}
SELECT 'h' AS kind, NULL::text AS id, h.size AS n, NULL::smallint AS level, h.root_hash AS hash, h.mac AS mac, h.legacy FROM head h
UNION ALL
SELECT 'n', NULL, f.idx, f.level, m.hash, NULL, NULL FROM frontier f JOIN merkle_nodes m ON m.level = f.level AND m.idx = f.idx
UNION ALL
SELECT 't', transaction_id, log_index, NULL, NULL, request_mac, NULL FROM transactions WHERE transaction_id = ANY($1::text[])
${arms.map((a) => `\nUNION ALL\n${a}`).join('')}`;
}

/**
 * One statement inserting everything a batch writes (data-modifying CTEs; foreign keys are
 * checked at the end of the statement). Arrays are bound as parameters, one per column.
 */
const INSERT_BATCH = `
WITH le AS (
  INSERT INTO log_entries (idx, leaf)
  SELECT * FROM unnest($1::bigint[], $2::bytea[])
), mn AS (
  INSERT INTO merkle_nodes (level, idx, hash)
  SELECT * FROM unnest($3::smallint[], $4::bigint[], $5::bytea[])
), tx AS (
  INSERT INTO transactions (transaction_id, log_index, request_mac, created_at, processor, fingerprint_v2)
  SELECT id, log_index, mac, CASE WHEN kms_key_id IS NOT NULL THEN created_at END, processor, fp
    FROM unnest($6::text[], $7::bigint[], $8::bytea[], $9::timestamptz[], $11::text[], $20::text[], $21::bytea[]) AS x(id, log_index, mac, created_at, kms_key_id, processor, fp)
), kw AS (
  INSERT INTO key_wrap_windows (id, enc, epoch_id)
  SELECT DISTINCT ON (id) id, enc, epoch_id FROM unnest($22::bigint[], $23::bytea[], $19::text[]) AS w(id, enc, epoch_id) WHERE id IS NOT NULL
  ON CONFLICT (id) DO NOTHING
), dk AS (
  INSERT INTO data_keys (log_index, window_id, kms_key_id, wrapped_key, epoch_id)
  SELECT log_index, window_id, kms_key_id, wrapped_key, CASE WHEN window_id IS NULL THEN epoch_id END
    FROM unnest($10::bigint[], $22::bigint[], $11::text[], $12::bytea[], $19::text[]) AS d(log_index, window_id, kms_key_id, wrapped_key, epoch_id)
), ae AS (
  INSERT INTO access_entries (log_index, transaction_id, created_at)
  SELECT * FROM unnest($13::bigint[], $14::text[], $15::timestamptz[])
)
INSERT INTO tree_heads (size, root_hash, mac) VALUES ($16, $17, $18)`;
/**
 * The companion writes of a batch (companions.ts), queued after its insert, each batch's set as
 * one statement (named per text), under the transaction's kept index plans (see companions.ts
 * for why not a plain generic plan). Resolves the log indexes of the entries whose write
 * changed a row.
 */
function queueCompanionWrites(client: pg.PoolClient, calls: readonly CompanionCall[]): Promise<Set<number>> {
  const { text, values } = companionStatement(calls);
  const name = `paylog_companions_${createHash('sha256').update(text).digest('hex').slice(0, 12)}`;
  return client.query({ name, text, values }).then((r) => new Set((r.rows as { idx: string }[]).map((row) => Number(row.idx))));
}

/** A batch-state read for one set of checks: its text, statement name, and row kind → check id. */
interface StateRead {
  text: string;
  name: string;
  checks: readonly PreconditionCheck[];
  kindOf: ReadonlyMap<string, string>;
}

function stateRead(checks: readonly PreconditionCheck[]): StateRead {
  const text = batchStateSql(checks);
  // Named per text: two registries on one pool must not share a prepared statement name.
  const name = `paylog_batch_state_${createHash('sha256').update(text).digest('hex').slice(0, 12)}`;
  return { text, name, checks, kindOf: new Map(checks.map((c, i) => [checkRowKind(i), c.id])) };
}

type StateRow = { kind: string; id: string | null; n: string | null; level: number | null; hash: Buffer | null; mac: Buffer | null; legacy: boolean | null };

/**
 * Integer and time columns go as array literals we write ourselves (issue 20): node-postgres
 * would format each element through its generic path (a Date in local time with its offset,
 * element by element), several times per batch. Integers are written in decimal (each checked to
 * be a safe integer), instants as ISO 8601 UTC (`Date.prototype.toISOString`, millisecond
 * precision like the Date itself): the `::bigint[]`, `::smallint[]` and `::timestamptz[]` casts
 * read them as the same values.
 */
function intArray(xs: readonly number[]): string {
  for (const x of xs) if (!Number.isSafeInteger(x)) throw new PaylogError('INTERNAL', 'batch column value is not a safe integer');
  return `{${xs.join(',')}}`;
}

/** See `intArray`. */
function timeArray(xs: readonly Date[]): string {
  return `{${xs.map((d) => d.toISOString()).join(',')}}`;
}

function batchValues(accepted: AcceptedEntry[], nodes: Array<NodeId & { hash: Buffer }>, head: TreeHead, headKey: Buffer | undefined): unknown[] {
  const txs = accepted.filter((a): a is AcceptedEntry & { req: TransactionRequest } => a.req.kind === 'transaction');
  const acc = accepted.filter((a): a is AcceptedEntry & { req: AccessRequest } => a.req.kind === 'access');
  const col = <T, R>(xs: T[], f: (x: T) => R) => xs.map(f);
  return [
    intArray(col(accepted, (a) => a.index)),
    col(accepted, (a) => a.req.leaf),
    intArray(col(nodes, (n) => n.level)),
    intArray(col(nodes, (n) => n.index)),
    col(nodes, (n) => n.hash),
    col(txs, (a) => a.req.transaction.transactionId),
    intArray(col(txs, (a) => a.index)),
    col(txs, (a) => a.req.transaction.requestMac),
    timeArray(col(txs, (a) => a.req.createdAt)),
    intArray(col(txs, (a) => a.index)),
    col(txs, (a) => a.req.dataKey.kmsKeyId ?? null),
    col(txs, (a) => a.req.dataKey.wrappedKey),
    intArray(col(acc, (a) => a.index)),
    col(acc, (a) => a.req.access.transactionId),
    timeArray(col(acc, (a) => a.req.createdAt)),
    head.size,
    head.rootHash,
    headKey ? treeHeadMac(headKey, head.size, head.rootHash) : null,
    col(txs, (a) => a.req.dataKey.epochId ?? null),
    col(txs, (a) => a.req.transaction.processor ?? null),
    col(txs, (a) => a.req.transaction.fingerprint ?? null),
    col(txs, (a) => a.req.dataKey.window?.id ?? null),
    col(txs, (a) => a.req.dataKey.window?.enc ?? null),
  ];
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

interface PgDriverOptions {
  /** Key for tree-head MACs (`treeHeadKey(service key)`); without it heads are neither MAC'd nor checked. */
  headKey?: Buffer;
  /** The preconditions entries may name (registered by the service layer). */
  checks?: readonly PreconditionCheck[];
  /** The companion writes access entries may ask for (registered by the service layer). */
  companions?: readonly CompanionWrite[];
}

export class PgAppendDriver implements AppendDriver {
  private readonly checks: readonly PreconditionCheck[];
  private readonly table: CheckTable;
  private readonly writes: ReadonlyMap<string, CompanionWrite>;
  /** State reads by the set of checks the batch names (their ids, in registry order). */
  private readonly stateReads = new Map<string, StateRead>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly opts: PgDriverOptions = {},
  ) {
    this.checks = opts.checks ?? [];
    this.table = checkTable(this.checks);
    this.writes = companionTable(opts.companions ?? []);
  }

  knows(check: string): boolean {
    return this.table.has(check);
  }

  knowsWrite(write: string, args: number): boolean {
    return this.writes.get(write)?.args === args;
  }

  mayRetryAlone(e: unknown): boolean {
    return !(e instanceof CommitOutcomeUnknown) && !isTransientDatabaseError(e);
  }

  /** Reads, under the lock, everything the plan needs (one round trip; see batchStateSql). */
  private async readBatchState(client: pg.PoolClient, reqs: AppendRequest[]): Promise<BatchState> {
    const keys = batchKeys(reqs);
    const named = this.checks.filter((c) => keys.byCheck.has(c.id));
    const id = named.map((c) => c.id).join(' ');
    let read = this.stateReads.get(id);
    if (!read) this.stateReads.set(id, (read = stateRead(named)));
    const r = await client.query({
      name: read.name,
      text: read.text,
      values: [keys.transactionIds, ...read.checks.map((c) => keys.byCheck.get(c.id)!)],
    });
    const kindOf = read.kindOf;
    const existing = new Map<string, StoredTransaction>();
    const failed = new Map<string, Set<string>>(this.checks.map((c) => [c.id, new Set<string>()]));
    const nodes = new Map<string, Buffer>();
    let top: StateRow | undefined;
    for (const row of r.rows as StateRow[]) {
      if (row.kind === 'h') top = row;
      else if (row.kind === 'n') nodes.set(nodeKey({ level: row.level!, index: Number(row.n) }), row.hash!);
      else if (row.kind === 't') existing.set(row.id!, { mac: row.mac!, logIndex: Number(row.n) });
      else failed.get(kindOf.get(row.kind)!)!.add(row.id!);
    }
    let head: TreeHead | null = null;
    if (top) {
      const size = Number(top.n);
      if (headTrusted(this.opts.headKey, size, top.hash!, top.mac, top.legacy ?? false)) head = { size, rootHash: top.hash! };
    }
    if (top && !head) {
      // The largest row is not ours (forged or damaged): the paged read finds the real head.
      await client.query(FRESH_PLAN_MODE); // the rare reads after the state read (a head that is not ours)
      head = await selectHead(client, this.opts.headKey);
      nodes.clear();
      if (head) for (const [k, v] of await selectNodes(client, rangeNodes(0, head.size))) nodes.set(k, v);
      await client.query(KEPT_PLAN_MODE);
    }
    const state: BatchState = { head: { size: 0, rootHash: EMPTY_ROOT }, frontier: [], existing, failed };
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
   * Commits one batch in one database transaction: lock, batch state, leaf + node + row
   * inserts, new tree head, COMMIT (module contract). A batch with replays reads their stored
   * leaf hashes before it commits (a missing one fails the batch, which is then retried entry
   * by entry).
   */
  async commitBatch(reqs: AppendRequest[]): Promise<BatchResult> {
    const headKey = this.opts.headKey;
    const client = await this.pool.connect();
    let broken = false;
    let finished = false;
    try {
      // Durable on commit whatever the server default (PCI DSS 10.2: nothing acknowledged is lost).
      // Kept index plans (src/db/plans.ts) for the whole transaction: the state read, the insert and
      // the foreign-key checks it fires per data_keys row (re-planned per row they were half the
      // insert's time: 3.1 → 1.5 ms per batch of ~16, pg_stat_statements). All are key lookups.
      const lock = client.query(`BEGIN; SET LOCAL synchronous_commit = on; ${KEEP_INDEX_PLANS}; SELECT pg_advisory_xact_lock(${APPEND_LOCK_KEY.toString()})`);
      const [, state] = await Promise.all([lock, this.readBatchState(client, reqs)]);
      const plan = planBatch(state, reqs, this.table);
      const calls = companionCalls(plan, this.writes);
      const inserted =
        plan.accepted.length > 0
          ? client.query({ name: 'paylog_insert_batch', text: INSERT_BATCH, values: batchValues(plan.accepted, plan.newNodes, plan.head, headKey) })
          : null;
      // Queued right behind the insert (same transaction, no turn of the loop in between).
      const moved = calls.length > 0 ? queueCompanionWrites(client, calls) : null;
      // The insert's error, if any, is the one reported (a failed insert fails what follows it).
      const insert = moved ? Promise.all([inserted, moved]).then(([r]) => r) : inserted;
      let outcomes = plan.outcomes;
      if (plan.replayIndexes.length > 0) {
        const [leafNodes] = await Promise.all([selectNodes(client, plan.replayIndexes.map((index) => ({ level: 0, index }))), insert]);
        outcomes = withReplayLeafHashes(plan, leafNodes);
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
      if (moved) outcomes = withCompanionResults(outcomes, reqs, await moved);
      return { outcomes, head: plan.head, appended: plan.accepted.length };
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
}
