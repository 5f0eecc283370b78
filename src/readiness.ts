/**
 * `/readyz`: is this instance able to take writes right now (database and KMS answer)?
 *
 * Contract:
 * - Each check runs with its own deadline (READINESS_CHECK_TIMEOUT_MS) and an AbortSignal that
 *   fires at it; a check that stalls counts as failed at the deadline, so a KMS that accepts
 *   connections and never answers turns /readyz 503 instead of hanging it.
 * - Checks run in parallel; one round is in flight at a time and its answer is reused for
 *   READINESS_CACHE_MS (a flood of /readyz cannot spend the KMS request quota that
 *   GenerateDataKey/Decrypt/Sign share). Worst case from a fault to 503, and from recovery to
 *   200: READINESS_CACHE_MS + READINESS_CHECK_TIMEOUT_MS.
 */

/** How long a readiness answer is reused. */
export const READINESS_CACHE_MS = 500;
/** A check without an answer within this is failed. */
export const READINESS_CHECK_TIMEOUT_MS = 1_000;

export interface ReadinessReport {
  ok: boolean;
  checks: Record<string, boolean>;
}

type ReadinessCheck = (signal: AbortSignal) => Promise<unknown>;

/** Runs one check to a boolean: true only if it resolves before the deadline. */
async function runCheck(check: ReadinessCheck, timeoutMs: number): Promise<boolean> {
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => {
      ac.abort();
      resolve(false);
    }, timeoutMs);
  });
  try {
    return await Promise.race([check(ac.signal).then(() => true, () => false), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** The readiness function served by /readyz (see module contract). */
export function createReadiness(
  checks: Record<string, ReadinessCheck>,
  opts: { cacheMs?: number; timeoutMs?: number } = {},
): () => Promise<ReadinessReport> {
  const cacheMs = opts.cacheMs ?? READINESS_CACHE_MS;
  const timeoutMs = opts.timeoutMs ?? READINESS_CHECK_TIMEOUT_MS;
  let cached: { at: number; report: ReadinessReport } | undefined;
  let inFlight: Promise<ReadinessReport> | undefined;
  return () => {
    if (cached && Date.now() - cached.at < cacheMs) return Promise.resolve(cached.report);
    inFlight ??= (async () => {
      const names = Object.keys(checks);
      const results = await Promise.all(names.map((n) => runCheck(checks[n]!, timeoutMs)));
      const report: ReadinessReport = { ok: results.every(Boolean), checks: Object.fromEntries(names.map((n, i) => [n, results[i]!])) };
      cached = { at: Date.now(), report };
      inFlight = undefined;
      return report;
    })();
    return inFlight;
  };
}
