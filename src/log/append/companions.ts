/**
 * Companion writes: row writes registered once, at construction, by the layer that knows what
 * they mean, that an access entry MAY ask the batch to make in the transaction that commits it
 * (src/log/append/types.ts `AccessRequest.companion`). The first user: the forward ledger's
 * pending → sent move, which must commit exactly when the forward's granted access entry does
 * (src/services/forward/ledger.ts `MARK_SENT`).
 *
 * Contract:
 * - The log core MUST NOT know what a write means: it binds, for the batch's entries naming the
 *   write, their assigned log indexes and their arguments as parallel arrays, runs the batch's
 *   writes as one statement in the batch transaction after its insert and before its COMMIT
 *   (queued with them: no round trip of its own under the append lock), and reports per entry
 *   whether it changed a row.
 * - That statement runs under the batch transaction's kept index plans (src/db/plans.ts): a
 *   write reads the table it changes, and a PLAIN generic plan made while that table was empty
 *   keeps scanning it whole as it grows, until the next ANALYZE (measured: a hash join over a
 *   sequential scan of 100,000 forward_requests rows) — under the append lock; with sequential
 *   scans priced out, the kept plan is an index lookup (test/forward-ledger.test.ts).
 * - A write's SQL is code registered by the service layer, never input: one data-modifying
 *   statement (UPDATE / INSERT / DELETE) whose `{index}` is the bigint[] of the entries' log
 *   indexes and `{arg0}` … `{argN-1}` (N = `args`) text[]s of their arguments, aligned with it;
 *   it MUST end `RETURNING <one bigint column>`: the `{index}` values of the entries whose write
 *   changed a row (at most once each).
 * - It runs only for an entry appended as asked (granted): never for one appended as its
 *   `requires.otherwise` leaf, nor for a refused one; it commits or rolls back with the batch.
 */
export interface CompanionWrite {
  /** Stable identifier (lower case, digits, underscores). */
  id: string;
  /** How many text arguments an entry gives (`{arg0}` … ). */
  args: number;
  sql: string;
}

const WRITE_ID = /^[a-z][a-z0-9_]*$/;

/** Validates a registry and indexes it by id. Throws on a malformed or duplicate write. */
export function companionTable(writes: readonly CompanionWrite[]): ReadonlyMap<string, CompanionWrite> {
  const table = new Map<string, CompanionWrite>();
  for (const w of writes) {
    if (!WRITE_ID.test(w.id)) throw new Error(`companion write id ${JSON.stringify(w.id)} is not [a-z][a-z0-9_]*`);
    if (table.has(w.id)) throw new Error(`companion write ${w.id} is registered twice`);
    if (!w.sql.includes('{index}')) throw new Error(`companion write ${w.id} never reads {index}`);
    for (let a = 0; a < w.args; a++) if (!w.sql.includes(`{arg${a}}`)) throw new Error(`companion write ${w.id} never reads {arg${a}}`);
    if (!/\bRETURNING\b/i.test(w.sql)) throw new Error(`companion write ${w.id} returns nothing (RETURNING the moved entries' {index})`);
    table.set(w.id, w);
  }
  return table;
}

/** One write of one batch: the entries (log index, arguments) that name it. */
export interface CompanionCall {
  write: CompanionWrite;
  indexes: number[];
  args: string[][];
}

/**
 * One statement making every call's write: a CTE per call and a SELECT of the log indexes
 * (`idx`) of the entries whose write changed a row. Call `i` binds its indexes and then its
 * arguments as consecutive parameters from $1 on.
 */
export function companionStatement(calls: readonly CompanionCall[]): { text: string; values: unknown[] } {
  const ctes: string[] = [];
  const selects: string[] = [];
  const values: unknown[] = [];
  let p = 1;
  calls.forEach((c, i) => {
    let sql = c.write.sql.replaceAll('{index}', `$${p++}::bigint[]`);
    values.push(c.indexes);
    for (let a = 0; a < c.write.args; a++) {
      sql = sql.replaceAll(`{arg${a}}`, `$${p++}::text[]`);
      values.push(c.args.map((args) => args[a] ?? null));
    }
    ctes.push(`cw${i} AS (\n  ${sql}\n)`);
    selects.push(`SELECT * FROM cw${i}`);
  });
  return { text: `WITH ${ctes.join(', ')}\nSELECT moved.idx::bigint AS idx FROM (${selects.join(' UNION ALL ')}) AS moved(idx)`, values };
}
