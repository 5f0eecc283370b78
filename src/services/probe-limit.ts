/**
 * The probe limit (issue 17): per principal, per clock hour, at most `limit` (setting
 * PAYLOG_PROBE_LIMIT_PER_HOUR, default DEFAULT_PROBE_LIMIT_PER_HOUR) NEW
 * transactions whose payment methods agree on every served payment field (the masked view:
 * brand + last four + expiry; routing number + last four + account type; country + last four +
 * BIC). A checkout enumerating candidates for a victim's hidden digits must submit each one, and
 * every candidate agrees with the victim on the served fields: after the limit, 429.
 *
 * Why new transactions are counted and not distinct cards: the refusal MUST NOT depend on which
 * card a submission holds. A count of distinct cards would: the victim's own card is already in
 * its group (the genuine checkout submitted it, as the same principal), so a candidate equal to
 * it would not grow the count and the 429 would arrive one submission later — a membership
 * oracle. Counting transactions makes every answer of the limiter a function of what the caller
 * already knows (how many transactions with these served fields it submitted this hour, and
 * whether a transactionId exists). Replays (a transactionId already committed) are never
 * refused or counted, so a genuine checkout's retries always get their receipt; a retried new
 * submission (same transactionId, not yet committed) keeps the slot it took.
 *
 * State lives in PostgreSQL (`submission_probes`, migration 0006), so the limit holds across
 * workers and instances; strictly: each admitted transaction takes the next free `slot` of its
 * group under a unique constraint, so two concurrent submissions can never both take the last
 * slot (the loser re-reads its group). The served fields are stored only as a keyed MAC
 * (`probeMacs`, fingerprint key v2). Rows of past hours are deleted (once per hour per process).
 *
 * Cost: one statement per submission (three index lookups and, for a new transaction, one
 * insert), and once an hour one DELETE.
 */
import type { AppDatabase } from '../db/connection.js';
import { PaylogError } from '../errors.js';
import { DEFAULT_PROBE_LIMIT_PER_HOUR } from '../config.js';

export { DEFAULT_PROBE_LIMIT_PER_HOUR };
/** The window: a clock hour (UTC). */
export const PROBE_WINDOW_MS = 60 * 60 * 1000;
/** A lost slot race is re-read at most this often (a race needs concurrent submissions of one group). */
const SLOT_RACE_RETRIES = 3;

/** Start of the window `now` falls in. */
export function probeWindowStart(now: Date): Date {
  return new Date(Math.floor(now.getTime() / PROBE_WINDOW_MS) * PROBE_WINDOW_MS);
}

/** Seconds until the window of `now` ends (≥ 1): the Retry-After of a refusal. */
export function probeRetryAfterSeconds(now: Date): number {
  return Math.max(1, Math.ceil((probeWindowStart(now).getTime() + PROBE_WINDOW_MS - now.getTime()) / 1000));
}

export function probeLimitError(now: Date, limit: number): PaylogError {
  return new PaylogError(
    'PROBE_LIMIT_EXCEEDED',
    `more than ${limit} new transactions with the same served payment details (brand, last four and expiry, or the bank equivalents) from this principal in one hour; retry after Retry-After seconds`,
    { retryAfterSeconds: probeRetryAfterSeconds(now), limit },
  );
}

/**
 * One statement: is the transactionId committed (a replay: admitted, not counted)? Has it a slot
 * in its group this hour (a retry: admitted)? Else take the next slot if the group is below the
 * limit.
 */
const ADMIT = `
WITH g AS (
  SELECT count(*)::int AS n, coalesce(bool_or(transaction_id = $3), false) AS known
  FROM submission_probes WHERE principal = $1 AND served_mac = $2 AND window_start = $4
), c AS (
  SELECT EXISTS (SELECT 1 FROM transactions WHERE transaction_id = $3) AS committed
), ins AS (
  INSERT INTO submission_probes (principal, served_mac, transaction_id, window_start, slot)
  SELECT $1, $2, $3, $4, g.n FROM g, c WHERE NOT c.committed AND NOT g.known AND g.n < $5
  ON CONFLICT DO NOTHING RETURNING 1
)
SELECT g.n, g.known, c.committed, (SELECT count(*)::int FROM ins) AS inserted FROM g, c`;

export interface ProbeKey {
  /** Who submits: `role:name` of the principal. */
  principal: string;
  /** Keyed MAC of the served payment fields (`probeMacs(...).served`). */
  served: Buffer;
  transactionId: string;
}

export class ProbeLimiter {
  private purgedWindow = 0;

  constructor(
    private readonly database: AppDatabase,
    private readonly opts: { limit?: number; onRefused?: () => void } = {},
  ) {}

  get limit(): number {
    return this.opts.limit ?? DEFAULT_PROBE_LIMIT_PER_HOUR;
  }

  /**
   * Resolves when the submission may proceed; throws PROBE_LIMIT_EXCEEDED (429, Retry-After =
   * end of the hour) when it would be the (limit + 1)-th new transaction of its group this hour.
   * MUST be called before anything of the submission is sealed or appended. The decision depends
   * only on `key` (never on the payment method beyond its served fields).
   */
  async admit(key: ProbeKey, now: Date): Promise<void> {
    const window = probeWindowStart(now);
    this.purgeOld(window);
    for (let attempt = 0; ; attempt++) {
      const r = await this.database.pool.query({
        name: 'paylog_probe_admit',
        text: ADMIT,
        values: [key.principal, key.served, key.transactionId, window, this.limit],
      });
      const row = r.rows[0] as { n: number; known: boolean; committed: boolean; inserted: number };
      if (row.committed || row.known || row.inserted === 1) return;
      if (row.n >= this.limit || attempt >= SLOT_RACE_RETRIES) {
        this.opts.onRefused?.();
        throw probeLimitError(now, this.limit);
      }
      // Lost the slot (or the transactionId) to a concurrent submission: read the group again.
    }
  }

  /** Deletes rows of windows before `window`, at most once per window per process (best effort). */
  private purgeOld(window: Date): void {
    if (this.purgedWindow === window.getTime()) return;
    this.purgedWindow = window.getTime();
    void this.database.pool
      .query({ name: 'paylog_probe_purge', text: 'DELETE FROM submission_probes WHERE window_start < $1', values: [window] })
      .catch(() => {
        this.purgedWindow = 0; // try again with the next submission
      });
  }
}
