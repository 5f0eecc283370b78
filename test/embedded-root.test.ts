/**
 * Running as root from a directory only root may enter (a clone under /root, mode 0700):
 * PostgreSQL runs as the `postgres` OS user, which can enter neither. Binaries it cannot reach
 * are run from a copy paylog makes; a data directory it cannot reach keeps everything but the
 * cluster, which moves under /var/lib/paylog-postgres (recorded in the data directory, found
 * again on the next start). A cluster already in place that it cannot reach is refused with a
 * message naming the directory and the fix. Nothing outside paylog's own directories changes
 * mode. Only meaningful as root (CI runs as root); skipped otherwise.
 */
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { binaryCopyDir, shippedBinaries, startEmbeddedPostgres } from '../src/db/embedded.js';
import { CLUSTER_LOCATION_FILE, embeddedClusterDir, RELOCATED_CLUSTER_BASE } from '../src/db/cluster-location.js';

const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const dir = mkdtempSync(join(tmpdir(), 'paylog-rootdir-'));
chmodSync(dir, 0o755); // so that the directories made below are the only ones closed to others
const binaries = join(dir, 'private', 'native');
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(binaryCopyDir({ root: binaries, version: shippedBinaries().version }), { recursive: true, force: true });
});

describe.skipIf(!asRoot)('embedded PostgreSQL as root from a private directory', () => {
  it('runs binaries that sit in a mode-0700 directory, without changing that directory', async () => {
    const privateDir = join(dir, 'private');
    mkdirSync(privateDir, { mode: 0o700 });
    cpSync(shippedBinaries().root, binaries, { recursive: true, verbatimSymlinks: true });
    const owned = mkdtempSync(join(tmpdir(), 'paylog-rootdir-data-'));
    try {
      const server = await startEmbeddedPostgres({ dataDir: join(owned, 'pg'), ownedRoot: owned, binaries });
      try {
        const c = new pg.Client({ connectionString: server.adminUrl });
        await c.connect();
        expect((await c.query('SELECT 1 AS one')).rows[0].one).toBe(1);
        await c.end();
      } finally {
        await server.stop();
      }
      expect(statSync(privateDir).mode & 0o777).toBe(0o700);
    } finally {
      rmSync(owned, { recursive: true, force: true });
    }
  });

  it('moves only the cluster of a data directory below a directory the server user cannot enter, and finds it again', async () => {
    const privateDir = join(dir, 'closed');
    mkdirSync(privateDir, { mode: 0o700 });
    const dataDir = join(privateDir, 'project', 'data'); // like a clone under /root (mode 0700)
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const pgDir = join(dataDir, 'pg');
    let clusterDir: string | undefined;
    try {
      const first = await startEmbeddedPostgres({ dataDir: pgDir, ownedRoot: dataDir });
      clusterDir = first.clusterDir;
      try {
        expect(first.relocated).toEqual({ record: join(pgDir, CLUSTER_LOCATION_FILE), blocked: privateDir });
        expect(dirname(clusterDir)).toBe(RELOCATED_CLUSTER_BASE);
        expect(statSync(RELOCATED_CLUSTER_BASE).mode & 0o777).toBe(0o711);
        expect(statSync(clusterDir).mode & 0o777).toBe(0o700);
        const c = new pg.Client({ connectionString: first.adminUrl });
        await c.connect();
        await c.query('CREATE TABLE kept (v text)');
        await c.query("INSERT INTO kept VALUES ('across restarts')");
        await c.end();
      } finally {
        await first.stop();
      }
      // Everything else stays in the data directory; nothing changed mode.
      expect(existsSync(join(pgDir, 'superuser-password'))).toBe(true);
      expect(existsSync(join(pgDir, 'cluster'))).toBe(false);
      expect(embeddedClusterDir(pgDir)).toBe(clusterDir);
      expect(statSync(privateDir).mode & 0o777).toBe(0o700);
      expect(statSync(dataDir).mode & 0o777).toBe(0o700);
      expect(statSync(pgDir).mode & 0o777).toBe(0o700);

      const again = await startEmbeddedPostgres({ dataDir: pgDir, ownedRoot: dataDir });
      try {
        expect(again.clusterDir).toBe(clusterDir);
        const c = new pg.Client({ connectionString: again.adminUrl });
        await c.connect();
        expect((await c.query('SELECT v FROM kept')).rows).toEqual([{ v: 'across restarts' }]);
        await c.end();
      } finally {
        await again.stop();
      }
      expect(readFileSync(join(pgDir, CLUSTER_LOCATION_FILE), 'utf8').trim()).toBe(clusterDir);
    } finally {
      if (clusterDir) rmSync(clusterDir, { recursive: true, force: true });
    }
  });

  it('refuses a cluster already in place below a directory the server user cannot enter, naming it and the fix', async () => {
    const privateDir = join(dir, 'closed-existing');
    mkdirSync(privateDir, { mode: 0o700 });
    const dataDir = join(privateDir, 'project', 'data');
    mkdirSync(join(dataDir, 'pg', 'cluster'), { recursive: true });
    writeFileSync(join(dataDir, 'pg', 'cluster', 'PG_VERSION'), '17\n'); // made before, e.g. by another user
    await expect(startEmbeddedPostgres({ dataDir: join(dataDir, 'pg'), ownedRoot: dataDir })).rejects.toThrow(
      new RegExp(`cannot enter ${privateDir.replace(/[/.]/g, '\\$&')}.*PAYLOG_DATA_DIR`),
    );
    expect(statSync(privateDir).mode & 0o777).toBe(0o700);
  });
});
