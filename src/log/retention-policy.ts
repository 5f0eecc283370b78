/**
 * The retention rule shared by the retention job (src/services/key-retention.ts) and the
 * auditor's shred report (./shred-report.ts): which records a policy such as `P13M`, applied
 * as of a time, has expired. Pure; no database, no KMS, so the standalone verifier bundles it.
 */
import { PaylogError } from '../errors.js';

/** ISO 8601 duration (PnYnMnWnDTnHnMnS) subtracted from `t` in UTC calendar arithmetic. */
function subtractIsoDuration(t: Date, duration: string): Date {
  const m = /^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/.exec(duration);
  if (!m || duration === 'P' || duration.endsWith('T')) throw new PaylogError('VALIDATION_FAILED', 'retention must be an ISO 8601 duration such as P13M');
  const n = (i: number) => Number(m[i] ?? 0);
  return new Date(
    Date.UTC(t.getUTCFullYear() - n(1), t.getUTCMonth() - n(2), t.getUTCDate() - 7 * n(3) - n(4), t.getUTCHours() - n(5), t.getUTCMinutes() - n(6), t.getUTCSeconds() - n(7), t.getUTCMilliseconds()),
  );
}

/**
 * The retention cutoff: records created before `asOf − retention` have expired (a key period
 * expires when it ENDED at or before the cutoff; an envelope-v1 record when it was CREATED
 * before it).
 */
export function retentionCutoff(asOf: Date, retention: string): Date {
  return subtractIsoDuration(asOf, retention);
}
