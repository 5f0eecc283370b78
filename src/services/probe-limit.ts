/**
 * The probe limit (issue 17): per principal, per hour, at most `PROBE_LIMIT_DISTINCT` distinct
 * payment methods that agree on every served payment field (the masked view: brand + last four
 * + expiry; routing number + last four + account type; country + last four + BIC). A checkout
 * that enumerates candidates for a victim's hidden digits submits exactly such payment methods;
 * a genuine checkout meets two distinct cards with the same brand, last four and expiry in an
 * hour rarely, and its retries (the same card) never count twice.
 *
 * State lives in PostgreSQL (`submission_probes`), so the limit holds across workers and
 * instances. One row per (principal, served MAC, hour, identifier MAC); the MACs are keyed
 * (`probeMacs`, fingerprint key v2), so the table holds nothing a database reader can test a
 * candidate against without the key. Rows of past hours are deleted (once per hour per process).
 *
 * Strict across processes: each admitted identifier takes the next free `slot` of its
 * (principal, served, hour) group under a unique constraint, so two concurrent submissions can
 * never both take the last slot; the one that loses the race re-reads the group.
 *
 * Cost: one statement per submission (and, once an hour, one DELETE).
 */
import type { AppDatabase } from '../db/connection.js';
import { PaylogError } from '../errors.js';

/** Distinct payment methods per principal × served payment fields × hour. */
export const PROBE_LIMIT_DISTINCT = 5;
/** The window: a clock hour (UTC). */
export const PROBE_WINDOW_MS = 60 * 60 * 1000;
/** A lost slot race is re-read at most this often (a race needs concurrent distinct cards). */
const SLOT_RACE_RETRIES = 3;

/** Start of the window `now` falls in. */
export function probeWindowStart(now: Date): Date {
  return new Date(Math.floor(now.getTime() / PROBE_WINDOW_MS) * PROBE_WINDOW_MS);
}

/** Seconds until the window of `now` ends (≥ 1): the Retry-After of a refusal. */
export function probeRetryAfterSeconds(now: Date): number {
  return Math.max(1, Math.ceil((probeWindowStart(now).getTime() + PROBE_WINDOW_MS - now.getTime()) / 1000));
}

export function probeLimitError(now: Date): PaylogError {
  return new PaylogError(
    'PROBE_LIMIT_EXCEEDED',
    `more than ${PROBE_LIMIT_DISTINCT} different payment methods with the same served details (brand, last four and expiry, or the bank equivalents) from this principal in one hour; retry after Retry-After seconds`,
    { retryAfterSeconds: probeRetryAfterSeconds(now), limit: PROBE_LIMIT_DISTINCT },
  );
}

/**
 * One statement: reads the group, and takes the next slot for this identifier when it is new
 * and the group is below the limit. `known`: the identifier already has a slot this hour.
 */
const ADMIT = `
WITH g AS (
  SELECT count(*)::int AS n, coalesce(bool_or(identifier_mac = $3), false) AS known
  FROM submission_probes WHERE principal = $1 AND served_mac = $2 AND window_start = $4
), ins AS (
  INSERT INTO submission_probes (principal, served_mac, identifier_mac, window_start, slot)
  SELECT $1, $2, $3, $4, g.n FROM g WHERE NOT g.known AND g.n < $5
  ON CONFLICT DO NOTHING RETURNING 1
)
SELECT g.n, g.known, (SELECT count(*)::int FROM ins) AS inserted FROM g`;

export interface ProbeKey {
  /** Who submits: the principal URI-like `role/name`. */
  principal: string;
  served: Buffer;
  identifier: Buffer;
}

export class ProbeLimiter {
  private purgedWindow = 0;

  constructor(
    private readonly database: AppDatabase,
    private readonly onRefused: () => void = () => {},
  ) {}

  /**
   * Resolves when the submission may proceed; throws PROBE_LIMIT_EXCEEDED (429, Retry-After =
   * end of the hour) when `key.identifier` would be the (limit + 1)-th distinct payment method
   * of its group this hour. An identifier admitted once stays admitted for the hour (retries).
   */
  async admit(key: ProbeKey, now: Date): Promise<void> {
    const window = probeWindowStart(now);
    this.purgeOld(window);
    for (let attempt = 0; ; attempt++) {
      const r = await this.database.pool.query({
        name: 'paylog_probe_admit',
        text: ADMIT,
        values: [key.principal, key.served, key.identifier, window, PROBE_LIMIT_DISTINCT],
      });
      const row = r.rows[0] as { n: number; known: boolean; inserted: number };
      if (row.known || row.inserted === 1) return;
      if (row.n >= PROBE_LIMIT_DISTINCT || attempt >= SLOT_RACE_RETRIES) {
        this.onRefused();
        throw probeLimitError(now);
      }
      // Lost the slot (or the identifier) to a concurrent submission: read the group again.
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
