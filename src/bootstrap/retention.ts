/**
 * Start-up step "retention timer": the scheduled retention run (key destruction by policy) in
 * the singleton process — first RETENTION_FIRST_RUN_MS after start, then once a day.
 *
 * Contract: a failed run is logged by its error code only and the schedule goes on; the timers
 * never keep the process alive and are cleared by the cleanups.
 */
import type { Logger } from '../logging.js';
import type { KeyLifecycleService } from '../services/key-lifecycle.js';
import type { Cleanups } from './cleanups.js';

/** The retention job runs this long after start, then once a day (singletons only). */
const RETENTION_FIRST_RUN_MS = 60_000;
const RETENTION_INTERVAL_MS = 24 * 60 * 60 * 1000;

/** Schedules retention runs of `keyLifecycle`; `firstRunMs` defaults to RETENTION_FIRST_RUN_MS. */
export function scheduleRetention(keyLifecycle: KeyLifecycleService, firstRunMs: number | undefined, logger: Logger, cleanups: Cleanups): void {
  const runRetention = () =>
    keyLifecycle.applyRetention(null, {}).then(
      (r) => logger.info({ periods: r.periods.length, epochs: r.epochs.length, v1Records: r.v1Records, logIndex: r.logIndex }, 'retention run'),
      (e: unknown) => logger.error({ code: (e as { code?: string }).code }, 'retention run failed'),
    );
  const first = setTimeout(() => void runRetention(), firstRunMs ?? RETENTION_FIRST_RUN_MS);
  const daily = setInterval(() => void runRetention(), RETENTION_INTERVAL_MS);
  first.unref();
  daily.unref();
  cleanups.push(async () => {
    clearTimeout(first);
    clearInterval(daily);
  });
}
