/**
 * Key periods: the one place paylog does calendar arithmetic on keys. Epoch keys
 * (src/kms/epoch-keys.ts, `PAYLOG_KEY_EPOCH`) and client-side encryption keys
 * (src/cse/keys.ts, `PAYLOG_CSE_KEY_PERIOD`) both live for one UTC period.
 *
 * Contracts:
 * - A period is half-open, `start <= t < end`, in UTC; its label is `2026-12` (month),
 *   `2026-12-01` (day) or `2026-12-01T10` (hour). Labels are stable: they name KMS aliases,
 *   epoch ids and CSE key ids.
 * - {@link periodOfLabel} is the exact inverse of `periodOf(..).label`: a label with
 *   out-of-range fields (`2026-13`, `02-30`, `T24`) is no period (null), never rolled over.
 * - Pure: no clock, no I/O.
 */

export type PeriodGranularity = 'month' | 'day' | 'hour';

export interface KeyPeriod {
  granularity: PeriodGranularity;
  start: Date;
  end: Date;
  /** `2026-12`, `2026-12-01`, `2026-12-01T10` (UTC). */
  label: string;
}

const LABEL_RE = /^(\d{4})-(\d{2})(?:-(\d{2})(?:T(\d{2}))?)?$/;

/** The UTC period of `granularity` containing `t`. */
export function periodOf(t: Date, granularity: PeriodGranularity): KeyPeriod {
  const y = t.getUTCFullYear();
  const m = t.getUTCMonth();
  const d = t.getUTCDate();
  const h = t.getUTCHours();
  let start: Date;
  let end: Date;
  if (granularity === 'month') {
    start = new Date(Date.UTC(y, m, 1));
    end = new Date(Date.UTC(y, m + 1, 1));
  } else if (granularity === 'day') {
    start = new Date(Date.UTC(y, m, d));
    end = new Date(Date.UTC(y, m, d + 1));
  } else {
    start = new Date(Date.UTC(y, m, d, h));
    end = new Date(Date.UTC(y, m, d, h + 1));
  }
  const iso = start.toISOString();
  const label = granularity === 'month' ? iso.slice(0, 7) : granularity === 'day' ? iso.slice(0, 10) : iso.slice(0, 13);
  return { granularity, start, end, label };
}

/** The period a label names (its granularity read from its shape), or null when it is not one. */
export function periodOfLabel(label: string): KeyPeriod | null {
  const m = LABEL_RE.exec(label);
  if (m === null) return null;
  const [y, mo, d, h] = [Number(m[1]), Number(m[2]) - 1, Number(m[3] ?? 1), Number(m[4] ?? 0)];
  const granularity: PeriodGranularity = m[3] === undefined ? 'month' : m[4] === undefined ? 'day' : 'hour';
  const p = periodOf(new Date(Date.UTC(y, mo, d, h)), granularity);
  return p.label === label ? p : null;
}
