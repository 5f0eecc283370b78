/** A database as an older paylog left it: migrations applied only up to a given one. */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import { MIGRATIONS_DIR } from '../../src/db/connection.js';

/** Migrates `url` up to and including migration `last` (a copy of drizzle/ with a shorter journal). */
export async function migrateUpTo(url: string, last: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'paylog-mig-'));
  try {
    cpSync(MIGRATIONS_DIR, dir, { recursive: true });
    const journal = JSON.parse(readFileSync(join(dir, 'meta/_journal.json'), 'utf8')) as { entries: { idx: number }[] };
    journal.entries = journal.entries.filter((e) => e.idx <= last);
    writeFileSync(join(dir, 'meta/_journal.json'), JSON.stringify(journal));
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await migrate(drizzle(c), { migrationsFolder: dir });
    } finally {
      await c.end();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

