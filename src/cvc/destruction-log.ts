/**
 * Card security code destructions in the log (issue 18 item 4): ONE `key_event` leaf
 * `cvc_destroyed` per clock hour in which any CVC was destroyed (used by a forward or an
 * authorizing release, or expired), with the two counts — never one leaf per CVC, and nothing
 * that names a transaction. Runs in the singleton process on the CVC timer.
 *
 * Contract: a period is logged once it ended at least LOG_GRACE_MS ago (late counts of a
 * statement that started in it have landed); the leaf commits BEFORE the period is marked
 * logged, so a crash in between logs the period again on the next run (at least once, never
 * lost). Counts are read from `cvc_destructions` (runtime-writable: the log entry is the record).
 */
import type { AppDatabase } from '../db/connection.js';
import type { KeyEvent } from '../services/key-events.js';
import { SYSTEM_ACTOR } from '../services/key-events.js';
import { CVC_DESTROYED_PERIOD_MS } from '../log/leaf.js';

/** A period is logged this long after it ended. */
const LOG_GRACE_MS = 60_000;

interface LoggedCvcPeriod {
  periodStart: Date;
  used: number;
  expired: number;
  logIndex: number;
}

/** Appends one `cvc_destroyed` leaf per finished, unlogged period; returns what it logged. */
export async function logCvcDestructions(d: { database: AppDatabase; recordKeyEvent: (e: KeyEvent) => Promise<number>; clock: () => Date }): Promise<LoggedCvcPeriod[]> {
  const now = d.clock();
  const r = await d.database.pool.query({
    name: 'paylog_cvc_unlogged_periods',
    text: `SELECT period_start, sum(count) FILTER (WHERE cause = 'used') AS used, sum(count) FILTER (WHERE cause = 'expired') AS expired
           FROM cvc_destructions WHERE logged_at IS NULL AND period_start <= $1 GROUP BY period_start ORDER BY period_start`,
    values: [new Date(now.getTime() - CVC_DESTROYED_PERIOD_MS - LOG_GRACE_MS)],
  });
  const out: LoggedCvcPeriod[] = [];
  for (const row of r.rows as { period_start: Date; used: string | null; expired: string | null }[]) {
    const periodStart = new Date(row.period_start);
    const counts = { used: Number(row.used ?? 0), expired: Number(row.expired ?? 0) };
    const logIndex = await d.recordKeyEvent({
      event: 'cvc_destroyed',
      time: d.clock(),
      actor: SYSTEM_ACTOR,
      periodStart,
      periodEnd: new Date(periodStart.getTime() + CVC_DESTROYED_PERIOD_MS),
      counts,
    });
    await d.database.pool.query({ name: 'paylog_cvc_period_logged', text: 'UPDATE cvc_destructions SET logged_at = $2 WHERE period_start = $1', values: [periodStart, d.clock()] });
    out.push({ periodStart, ...counts, logIndex });
  }
  return out;
}
