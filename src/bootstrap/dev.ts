/**
 * Dev bootstrap, in one place for the single process (src/app.ts) and the cluster primary
 * (src/main.ts): the dev-only local KMS endpoint under dataDir/kms, the dev PKI under
 * dataDir/pki, and the dev processors matching its certificates.
 *
 * Contract: used only when settings name no production equivalent (no PAYLOG_TLS_* files, KMS
 * mode `local`). It MUST NOT re-activate a disabled dev processor.
 */
import { join } from 'node:path';
import type { Config } from '../config.js';
import type { AppDatabase } from '../db/connection.js';
import { processors } from '../db/schema.js';
import { startLocalKms, type LocalKmsEndpoint } from '../kms/local/server.js';
import { ensureDevPki, type DevPki } from '../pki/dev-pki.js';
import { principalUri } from '../pki/identity.js';

const DEV_PROCESSORS = ['acme', 'globex'] as const;

/** The dev-only local KMS endpoint, its key store under dataDir/kms. */
export function startDevLocalKms(config: Config): Promise<LocalKmsEndpoint> {
  return startLocalKms({ keyStoreDir: join(config.dataDir, 'kms') });
}

/** The dev PKI under dataDir/pki (written on first start), valid for the configured host. */
export function ensureDevPkiOf(config: Config): Promise<DevPki> {
  return ensureDevPki(join(config.dataDir, 'pki'), { hostnames: ['localhost', '127.0.0.1', '::1', config.host] });
}

/** Dev processors matching the dev certificates; never re-activates a disabled one. */
export async function seedDevProcessors(adminDatabase: AppDatabase): Promise<void> {
  await adminDatabase.db
    .insert(processors)
    .values(DEV_PROCESSORS.map((name) => ({ name, principalUri: principalUri({ role: 'processor', name }) })))
    .onConflictDoNothing();
}
