/**
 * Start-up step "card security codes" (issue 18 item 4; src/cvc/): this process's in-memory
 * CVC holder key (published before the server listens), the store of held codes, and the timers:
 * every process rotates its holder key every `rotateMs` and sweeps expired codes every
 * SWEEP_INTERVAL_MS (or the TTL if shorter); the singleton process also logs finished periods
 * of destructions (one `cvc_destroyed` leaf each).
 *
 * Contract: the timers never keep the process alive and are cleared by the cleanups, which then
 * zero every holder private key. A failed timer step is logged by its error code only.
 */
import type { Logger } from '../logging.js';
import type { AppDatabase } from '../db/connection.js';
import type { KeyEventLog } from '../services/key-events.js';
import { CvcHolderKeys, holderRowKey } from '../cvc/holder-keys.js';
import { CardSecurityCodes } from '../cvc/codes.js';
import { logCvcDestructions } from '../cvc/destruction-log.js';
import type { Cleanups } from './cleanups.js';

/** Expired codes are swept at least this often (the TTL itself if shorter). */
const SWEEP_INTERVAL_MS = 60_000;

interface CvcDeps {
  database: AppDatabase;
  /** The service MAC key (the holder-row MAC key is derived from it). */
  macKey: Buffer;
  keyEvents: KeyEventLog;
  ttlMs: number;
  singletons: boolean;
  clock?: () => Date;
}

/** Holder keys started and published, the code store, the timers scheduled. */
export async function startCardSecurityCodes(d: CvcDeps, logger: Logger, cleanups: Cleanups): Promise<CardSecurityCodes> {
  const clock = d.clock ?? (() => new Date());
  const rowKey = holderRowKey(d.macKey);
  const holders = new CvcHolderKeys({
    database: d.database,
    rowKey,
    ttlMs: d.ttlMs,
    clock,
    onUntrustedRow: (keyId) => logger.error({ table: 'cvc_holder_keys', row: keyId }, 'a CVC holder key row was not created by paylog (planted in the database?): ignored'),
  });
  cleanups.push(async () => {
    await holders.close();
    rowKey.fill(0);
  });
  await holders.start();
  const codes = new CardSecurityCodes({ database: d.database, holders, ttlMs: d.ttlMs, clock });
  const failed = (step: string) => (e: unknown) => logger.error({ code: (e as { code?: string }).code ?? 'INTERNAL', step }, 'card security code maintenance failed');
  const rotation = setInterval(() => void holders.rotate().catch(failed('rotate')), holders.rotateMs);
  const sweeping = setInterval(
    () =>
      void (async () => {
        const n = await codes.sweep();
        await holders.destroySpent();
        if (n > 0) logger.info({ expired: n }, 'expired card security codes destroyed');
        if (d.singletons) {
          const logged = await logCvcDestructions({ database: d.database, recordKeyEvent: (e) => d.keyEvents.record(e), clock });
          for (const p of logged) logger.info({ periodStart: p.periodStart.toISOString(), used: p.used, expired: p.expired, logIndex: p.logIndex }, 'card security code destructions logged');
        }
      })().catch(failed('sweep')),
    Math.min(SWEEP_INTERVAL_MS, Math.max(1_000, d.ttlMs)),
  );
  rotation.unref();
  sweeping.unref();
  cleanups.push(async () => {
    clearInterval(rotation);
    clearInterval(sweeping);
  });
  return codes;
}
