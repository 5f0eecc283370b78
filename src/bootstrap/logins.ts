/**
 * Start-up step "roles/logins": the runtime pool switches to a login that is only a member of
 * paylog_app; key destruction and processor registration get pools of their own (paylog_keys,
 * paylog_admin), with passwords derived from the MAC key.
 *
 * Contract: after this step the runtime pool MUST NOT be able to become the owner, and a
 * PAYLOG_APP_DATABASE_URL that logs in as a superuser fails the start.
 */
import type { Config } from '../config.js';
import type { Logger } from '../logging.js';
import { ADMIN_ROLE, ensureAdminLogin, ensureKeysLogin, ensureServiceLogin, KEYS_ROLE, openAppDatabase, type AppDatabase } from '../db/connection.js';
import { adminDatabasePassword, keysDatabasePassword, serviceDatabasePassword } from '../keyring.js';
import type { Cleanups } from './cleanups.js';
import type { DatabaseStep } from './database.js';

/** Connections of the key-destruction pool (paylog_keys). */
const KEYS_POOL_SIZE = 2;
/** Connections of the processor-registration pool (paylog_admin). */
const ADMIN_POOL_SIZE = 1;

interface Logins {
  keysDatabase: AppDatabase;
  adminDatabase: AppDatabase;
}

/** Run as a login role that is only a member of paylog_app (no way back to the owner). */
export async function switchToServiceLogin(config: Config, step: DatabaseStep, macKey: Buffer, logger: Logger): Promise<void> {
  if (config.appDatabaseUrl) return;
  const serviceUrl = await ensureServiceLogin(step.ownerUrl, serviceDatabasePassword(macKey));
  if (!serviceUrl) {
    logger.warn('the database owner may not create roles: running as the owner with role paylog_app; set PAYLOG_APP_DATABASE_URL in production');
    return;
  }
  const bootstrap = step.current.database;
  step.current.database = openAppDatabase(serviceUrl, { ...step.poolOptions, role: null });
  step.current.login = { url: serviceUrl, role: null };
  await bootstrap.close();
}

/** The service, key-destruction and admin logins; the runtime pool of `step` is switched in place. */
export async function openLogins(config: Config, step: DatabaseStep, macKey: Buffer, logger: Logger, cleanups: Cleanups): Promise<Logins> {
  await switchToServiceLogin(config, step, macKey, logger);
  const { ownerUrl } = step;
  // Key destruction (rewrap, shred, retention) runs on its own connection as a member of
  // paylog_keys only; the runtime role cannot replace or destroy wrapped keys.
  const keysUrl = await ensureKeysLogin(ownerUrl, keysDatabasePassword(macKey)).catch(() => null);
  const keysDatabase = keysUrl ? openAppDatabase(keysUrl, { role: null, max: KEYS_POOL_SIZE }) : openAppDatabase(ownerUrl, { role: KEYS_ROLE, max: KEYS_POOL_SIZE });
  cleanups.push(() => keysDatabase.close());
  // Processor registrations (admin decisions) are written on a connection of their own as a
  // member of paylog_admin only: the runtime role can read processors, not change them.
  const adminUrl = await ensureAdminLogin(ownerUrl, adminDatabasePassword(macKey)).catch(() => null);
  const adminDatabase = adminUrl ? openAppDatabase(adminUrl, { role: null, max: ADMIN_POOL_SIZE }) : openAppDatabase(ownerUrl, { role: ADMIN_ROLE, max: ADMIN_POOL_SIZE });
  cleanups.push(() => adminDatabase.close());
  const who = (await step.current.database.pool.query('SELECT r.rolsuper AS s FROM pg_roles r WHERE r.rolname = session_user')).rows[0] as { s: boolean } | undefined;
  if (who?.s && config.appDatabaseUrl) throw new Error('PAYLOG_APP_DATABASE_URL must not log in as a superuser');
  return { keysDatabase, adminDatabase };
}
