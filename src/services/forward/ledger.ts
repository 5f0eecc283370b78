/**
 * The forward ledger (issue 18 item 5): one `forward_requests` row per (transaction,
 * Idempotency-Key), so that a forward is sent at most once.
 *
 * Contract:
 * - A row is claimed (`pending`) BEFORE the access entry is appended; it becomes `sent` (with
 *   the access entry's index) IN THE TRANSACTION THAT COMMITS the granted access entry (the
 *   companion write MARK_SENT, made by the append batch: src/log/append/companions.ts), so a
 *   row is `sent` exactly when its granted entry is committed; `done` with the masked answer
 *   after the result. Nothing is sent unless this attempt's access entry moved the row from
 *   pending to sent (its outcome's `companion`).
 * - A `sent` row that is not `done` after its stale time belongs to a forward whose process
 *   stopped (crash, kill) after it may have sent: its outcome is unknown, it is never sent again.
 *   A stale `pending` row never sent anything: a retry with the same request takes it over.
 * - Rows are written with asynchronous commit (`synchronous_commit = off` for the writing
 *   statement's transaction only, one statement per write: no fsync wait, one round trip) —
 *   except the move to `sent`, durable with the log batch that commits its access entry: the
 *   LOG, not this table, is what keeps a forward from being sent twice (the granted access entry
 *   carries a keyed MAC of the key, checked before every first attempt), so a row lost in a crash
 *   costs at most a retry answered `unknown` instead of the recorded answer.
 *   The move to `done` runs with a kept index plan (src/db/plans.ts), not planned afresh.
 * - `finish` calls made in the same turn of the event loop (the forwards whose entries one
 *   append batch committed) are written as ONE statement (an UPDATE … FROM unnest); of several
 *   calls for one (transaction, key) in a turn only the first can succeed. Likewise, of several
 *   access entries of one batch asking MARK_SENT for one row, only one moves it.
 * - The stored answer is the MASKED answer (what the caller got); header values of the request
 *   are never stored (only the request's keyed MAC).
 * - It round-trips exactly, whatever characters it holds: `read` gives back a value deep-equal
 *   to the one `finish` stored, every string the same UTF-16 code units. A processor may answer
 *   U+0000 (a NUL byte of its body survives the UTF-8 decoding and the masking,
 *   src/forward/mask.ts), and a StoredAnswer may hold unpaired surrogates (a JS string can; the
 *   masked body cannot today, being decoded from bytes, but nothing here relies on that). The
 *   answer is stored as the text JSON.stringify makes of it — which escapes U+0000 and every
 *   unpaired surrogate as `\uXXXX` (well-formed JSON.stringify, ES2019), so it is plain
 *   well-formed UTF-8, and JSON.parse inverts it — in a `json` column (migration 0028), which
 *   keeps an exact copy of its input text and checks only its syntax. Not jsonb: jsonb refuses
 *   `\u0000` and unpaired surrogate escapes, so such an answer's move to `done` failed (and, as
 *   one statement, failed every forward finished in its turn); nothing queries into the answer,
 *   so jsonb's operators are not missed. Not `text`: `json` holds the same text and still refuses
 *   what is not JSON, and a reader of the table (the auditor role may read it) sees JSON. Not
 *   jsonb with such strings encoded: a second encoding, in every writer and reader, for nothing.
 *   As every value of the batch is JSON.stringify's text, one answer cannot fail the statement
 *   it shares with the others.
 */
import type { AppDatabase } from '../../db/connection.js';
import type { CompanionWrite } from '../../log/appender.js';
import { queryKeepingIndexPlans } from '../../db/plans.js';

/** What a retry receives: the answer as first returned, or the error. */
export type StoredAnswer =
  | { kind: 'answer'; answer: ForwardAnswer }
  | { kind: 'error'; code: string; message: string };

export interface ForwardAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  masked: number;
  accessLogIndex: number;
  resultLogIndex: number | null;
  durationMs: number;
}

interface LedgerRow {
  requestMac: Buffer;
  state: 'pending' | 'sent' | 'done';
  accessLogIndex: number | null;
  answer: StoredAnswer | null;
  ageMs: number;
}

/** Joined by every write: makes the statement's own transaction commit without waiting for fsync. */
const ASYNC_COMMIT = "(SELECT set_config('synchronous_commit', 'off', true)) AS async_commit";

type DbRow = { request_mac: Buffer; state: LedgerRow['state']; access_log_index: string | null; answer: StoredAnswer | null; age_ms: string | number };

/**
 * Calls of one write made in the same turn of the event loop, sent together: `write` gets the
 * distinct calls (by `id`) and resolves which of them moved their row; repeats of an id in the
 * turn resolve false (only one call per row may win).
 */
class CoalescedWrite<A extends { transactionId: string; key: string }> {
  private queue: { args: A; resolve: (moved: boolean) => void; reject: (e: unknown) => void }[] = [];

  constructor(private readonly write: (calls: A[]) => Promise<Set<string>>) {}

  add(args: A): Promise<boolean> {
    return new Promise((resolve, reject) => {
      if (this.queue.length === 0) setImmediate(() => void this.flush());
      this.queue.push({ args, resolve, reject });
    });
  }

  private async flush(): Promise<void> {
    const calls = this.queue;
    this.queue = [];
    const first = new Map<string, (typeof calls)[number]>();
    for (const c of calls) if (!first.has(rowId(c.args))) first.set(rowId(c.args), c);
    try {
      const moved = await this.write([...first.values()].map((c) => c.args));
      for (const c of calls) c.resolve(first.get(rowId(c.args)) === c && moved.has(rowId(c.args)));
    } catch (e) {
      for (const c of calls) c.reject(e);
    }
  }
}

const rowId = (r: { transactionId: string; key: string }) => JSON.stringify([r.transactionId, r.key]);
const movedRows = (rows: unknown[]) => new Set((rows as { transaction_id: string; idempotency_key: string }[]).map((r) => rowId({ transactionId: r.transaction_id, key: r.idempotency_key })));

/**
 * The move pending → sent of the rows whose forwards' granted access entries a batch commits
 * (registered with the appender: src/bootstrap/log.ts, src/bootstrap/integrator.ts); arguments
 * (transaction id, Idempotency-Key), as `markSentWith` gives them.
 */
export const MARK_SENT: CompanionWrite = {
  id: 'forward_mark_sent',
  args: 2,
  sql: `UPDATE forward_requests f SET state = 'sent', access_log_index = u.idx
  FROM unnest({index}, {arg0}, {arg1}) AS u(idx, tx, k)
  WHERE f.transaction_id = u.tx AND f.idempotency_key = u.k AND f.state = 'pending' RETURNING u.idx`,
};

/** The companion an access entry asks for to move (transaction, key) from pending to sent as it commits. */
export function markSentWith(transactionId: string, key: string): { write: string; args: string[] } {
  return { write: MARK_SENT.id, args: [transactionId, key] };
}

type DoneCall = { transactionId: string; key: string; from: 'pending' | 'sent'; answer: string; resultLogIndex: number | null };

export class ForwardLedger {
  private readonly done: CoalescedWrite<DoneCall>;

  constructor(private readonly database: AppDatabase) {
    this.done = new CoalescedWrite((calls) => this.writeDone(calls));
  }

  /**
   * One statement, alone in its (implicit) transaction, committed asynchronously: every write
   * statement joins ASYNC_COMMIT, whose `set_config(…, true)` sets synchronous_commit for the
   * statement's own transaction only (the commit reads it; the session keeps its setting). One
   * statement, one round trip: no BEGIN / SET LOCAL / COMMIT around it.
   */
  private async write(q: { name: string; text: string; values: unknown[] }): Promise<{ rows: unknown[] }> {
    return await this.database.pool.query(q);
  }

  /** Claims the key (true), or reports the row that holds it. */
  async claim(transactionId: string, key: string, mac: Buffer): Promise<{ claimed: true } | { claimed: false; row: LedgerRow }> {
    const r = await this.write({
      name: 'paylog_forward_claim',
      text: `INSERT INTO forward_requests (transaction_id, idempotency_key, request_mac, state) SELECT $1::text, $2::text, $3::bytea, 'pending' FROM ${ASYNC_COMMIT} ON CONFLICT DO NOTHING RETURNING 1`,
      values: [transactionId, key, mac],
    });
    if (r.rows.length > 0) return { claimed: true };
    const row = await this.read(transactionId, key);
    if (!row) return await this.claim(transactionId, key, mac);
    return { claimed: false, row };
  }

  /** The row of (transaction, key); its answer as `finish` stored it (node-postgres parses json with JSON.parse). */
  async read(transactionId: string, key: string): Promise<LedgerRow | null> {
    const r = await this.database.pool.query({
      name: 'paylog_forward_read',
      text: `SELECT request_mac, state, access_log_index, answer, (extract(epoch FROM now() - started_at) * 1000)::bigint AS age_ms
             FROM forward_requests WHERE transaction_id = $1 AND idempotency_key = $2`,
      values: [transactionId, key],
    });
    const row = r.rows[0] as DbRow | undefined;
    if (!row) return null;
    return { requestMac: row.request_mac, state: row.state, accessLogIndex: row.access_log_index === null ? null : Number(row.access_log_index), answer: row.answer, ageMs: Number(row.age_ms) };
  }

  /** → done with the answer; true only for the one caller that made the move from `from`. */
  finish(transactionId: string, key: string, from: 'pending' | 'sent', answer: StoredAnswer, resultLogIndex: number | null): Promise<boolean> {
    return this.done.add({ transactionId, key, from, answer: JSON.stringify(answer), resultLogIndex });
  }

  /** Kept plan (src/db/plans.ts): an UPDATE by primary key, one per turn of every forward. */
  private async writeDone(calls: DoneCall[]): Promise<Set<string>> {
    const col = <R>(f: (c: DoneCall) => R) => calls.map(f);
    const r = await queryKeepingIndexPlans(this.database, {
      name: 'paylog_forward_done',
      text: `UPDATE forward_requests f SET state = 'done', answer = u.answer::json, result_log_index = u.result
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) AS u(tx, k, from_state, answer, result), ${ASYNC_COMMIT}
             WHERE f.transaction_id = u.tx AND f.idempotency_key = u.k AND f.state = u.from_state RETURNING f.transaction_id, f.idempotency_key`,
      values: [col((c) => c.transactionId), col((c) => c.key), col((c) => c.from), col((c) => c.answer), col((c) => c.resultLogIndex)],
    });
    return movedRows(r.rows);
  }

  /** Gives a pending key back (its access entry could not be appended: nothing was sent). */
  async abandon(transactionId: string, key: string): Promise<void> {
    await this.write({
      name: 'paylog_forward_abandon',
      text: `DELETE FROM forward_requests USING ${ASYNC_COMMIT} WHERE transaction_id = $1 AND idempotency_key = $2 AND state = 'pending'`,
      values: [transactionId, key],
    });
  }

  /**
   * Takes over a `pending` row older than `staleMs` (its attempt stopped before its access entry
   * was known to commit: nothing was sent, since sending needs `sent`); true for the one taker.
   */
  async takeOver(transactionId: string, key: string, mac: Buffer, staleMs: number): Promise<boolean> {
    const r = await this.write({
      name: 'paylog_forward_take_over',
      text: `UPDATE forward_requests SET started_at = now() FROM ${ASYNC_COMMIT} WHERE transaction_id = $1 AND idempotency_key = $2 AND request_mac = $3 AND state = 'pending'
               AND started_at < now() - make_interval(secs => $4::double precision / 1000) RETURNING 1`,
      values: [transactionId, key, mac, staleMs],
    });
    return r.rows.length > 0;
  }
}
