/**
 * Start-up step "dev PKI and seeding": the server's TLS material — production files
 * (PAYLOG_TLS_*) or the dev PKI, whose dev processors are then seeded.
 *
 * Contract: with production files it MUST NOT write a certificate or a processor.
 */
import { readFileSync } from 'node:fs';
import type { Config } from '../config.js';
import type { AppDatabase } from '../db/connection.js';
import type { DevPki } from '../pki/dev-pki.js';
import { ensureDevPkiOf, seedDevProcessors } from './dev.js';

interface TlsMaterial {
  key: string;
  cert: string;
  ca: string;
}

/** TLS: production files or the dev PKI (written on first start) plus the dev processors. */
export async function loadTls(config: Config, adminDatabase: AppDatabase): Promise<{ tls: TlsMaterial; devPki?: DevPki }> {
  if (config.tls) {
    return {
      tls: {
        key: readFileSync(config.tls.keyPath, 'utf8'),
        cert: readFileSync(config.tls.certPath, 'utf8'),
        ca: readFileSync(config.tls.caPath, 'utf8'),
      },
    };
  }
  const devPki = await ensureDevPkiOf(config);
  await seedDevProcessors(adminDatabase);
  return { tls: { key: devPki.server.keyPem, cert: devPki.server.certPem, ca: devPki.caCertPem }, devPki };
}
