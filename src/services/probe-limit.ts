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
 * State lives in PostgreSQL (`submission_probe_slots` — hour tag and group digest in one bigint,
 * transactionId digest, migration 0022 — and the functions `paylog_probe_admit`, migrations
 * 0008/0013/0014/0022, its queries planned once per connection (migration 0017), never as a sequential scan (0020), and
 * `paylog_probe_purge`), so the limit
 * holds across workers and instances, strictly: the function
 * takes a transaction-scoped advisory lock of the group before it counts and inserts, so two
 * concurrent submissions of one group can never both take its last place (and other groups
 * never wait). The served fields are stored only as a keyed MAC (`probeServedMac`, fingerprint
 * key v2). Rows of past hours are deleted (once per hour per process).
 *
 * Cost: one function call per submission (a primary-key lookup of the transactionId; for a new
 * one, the group lock, a count of at most `limit` index entries and one insert), and once an
 * hour one DELETE. Calls are coalesced (issue 20: a statement per submission cost more service
 * CPU than the check itself): admissions waiting while MAX_ADMIT_STATEMENTS_IN_FLIGHT statements
 * run go out together as ONE statement calling the function once per submission, in the order of
 * (principal, served MAC) so that two such statements take their group locks in the same order
 * (no deadlock); each call is the same function as alone, so the limit stays exact.
 */
import type { AppDatabase } from '../db/connection.js';
import { PaylogError } from '../errors.js';
import { DEFAULT_PROBE_LIMIT_PER_HOUR } from '../config.js';

export { DEFAULT_PROBE_LIMIT_PER_HOUR };
/** The window: a clock hour (UTC). */
const PROBE_WINDOW_MS = 60 * 60 * 1000;

/** Start of the window `now` falls in. */
function probeWindowStart(now: Date): Date {
  return new Date(Math.floor(now.getTime() / PROBE_WINDOW_MS) * PROBE_WINDOW_MS);
}

/** Seconds until the window of `now` ends (≥ 1): the Retry-After of a refusal. */
function probeRetryAfterSeconds(now: Date): number {
  return Math.max(1, Math.ceil((probeWindowStart(now).getTime() + PROBE_WINDOW_MS - now.getTime()) / 1000));
}

function probeLimitError(now: Date, limit: number): PaylogError {
  return new PaylogError(
    'PROBE_LIMIT_EXCEEDED',
    `more than ${limit} new transactions with the same served payment details (brand, last four and expiry, or the bank equivalents) from this principal in one hour; retry after Retry-After seconds`,
    { retryAfterSeconds: probeRetryAfterSeconds(now), limit },
  );
}

/** Statements of admissions in flight at once per limiter (one per process); the rest wait and go together. */
const MAX_ADMIT_STATEMENTS_IN_FLIGHT = 2;
/** Most admissions decided by one statement. */
const MAX_ADMIT_BATCH = 256;

/**
 * One call of `paylog_probe_admit` per element of the arrays, in (principal, served MAC) order
 * (OFFSET 0 keeps the sort below the calls), with each result's position in the arrays.
 */
const ADMIT_BATCH_SQL =
  'SELECT b.ord::int AS ord, paylog_probe_admit(b.principal, b.served, b.transaction_id, $4, $5) AS admitted ' +
  'FROM (SELECT u.principal, u.served, u.transaction_id, u.ord FROM unnest($1::text[], $2::bytea[], $3::text[]) WITH ORDINALITY AS u(principal, served, transaction_id, ord) ' +
  'ORDER BY u.principal, u.served, u.ord OFFSET 0) AS b';

interface WaitingAdmission {
  key: ProbeKey;
  window: Date;
  resolve(admitted: boolean): void;
  reject(e: unknown): void;
}

interface ProbeKey {
  /** Who submits: `role:name` of the principal. */
  principal: string;
  /** Keyed MAC of the served payment fields (`probeServedMac`). */
  served: Buffer;
  transactionId: string;
}

export class ProbeLimiter {
  private purgedWindow = 0;
  private readonly waiting: WaitingAdmission[] = [];
  private inFlight = 0;
  private flushScheduled = false;

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
    const admitted = await new Promise<boolean>((resolve, reject) => {
      this.waiting.push({ key, window, resolve, reject });
      this.scheduleFlush();
    });
    if (admitted) return;
    this.opts.onRefused?.();
    throw probeLimitError(now, this.limit);
  }

  /** Sends what waits at the next turn of the event loop, if a statement may start. */
  private scheduleFlush(): void {
    if (this.flushScheduled || this.inFlight >= MAX_ADMIT_STATEMENTS_IN_FLIGHT || this.waiting.length === 0) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      while (this.inFlight < MAX_ADMIT_STATEMENTS_IN_FLIGHT && this.waiting.length > 0) {
        // One statement per window (they differ only across an hour boundary).
        const window = this.waiting[0]!.window.getTime();
        const batch: WaitingAdmission[] = [];
        for (let i = 0; i < this.waiting.length && batch.length < MAX_ADMIT_BATCH; ) {
          if (this.waiting[i]!.window.getTime() === window) batch.push(...this.waiting.splice(i, 1));
          else i++;
        }
        this.inFlight++;
        void this.decide(batch).finally(() => {
          this.inFlight--;
          this.scheduleFlush();
        });
      }
    });
  }

  /** One statement deciding `batch` (all of one window); settles every waiter. */
  private async decide(batch: WaitingAdmission[]): Promise<void> {
    try {
      const window = batch[0]!.window;
      if (batch.length === 1) {
        const { key } = batch[0]!;
        const r = await this.database.pool.query({
          name: 'paylog_probe_admit',
          text: 'SELECT paylog_probe_admit($1, $2, $3, $4, $5) AS admitted',
          values: [key.principal, key.served, key.transactionId, window, this.limit],
        });
        batch[0]!.resolve((r.rows[0] as { admitted: boolean }).admitted);
        return;
      }
      const r = await this.database.pool.query({
        name: 'paylog_probe_admit_batch',
        text: ADMIT_BATCH_SQL,
        values: [batch.map((w) => w.key.principal), batch.map((w) => w.key.served), batch.map((w) => w.key.transactionId), window, this.limit],
      });
      const verdicts = new Map((r.rows as { ord: number; admitted: boolean }[]).map((row) => [row.ord, row.admitted]));
      batch.forEach((w, i) => {
        const admitted = verdicts.get(i + 1);
        if (admitted === undefined) w.reject(new PaylogError('INTERNAL', 'probe limit: a submission got no verdict'));
        else w.resolve(admitted);
      });
    } catch (e) {
      for (const w of batch) w.reject(e);
    }
  }

  /** Deletes rows of windows before `window`, at most once per window per process (best effort). */
  private purgeOld(window: Date): void {
    if (this.purgedWindow === window.getTime()) return;
    this.purgedWindow = window.getTime();
    void this.database.pool
      .query({ name: 'paylog_probe_purge', text: 'SELECT paylog_probe_purge($1)', values: [window] })
      .catch(() => {
        this.purgedWindow = 0; // try again with the next submission
      });
  }
}
