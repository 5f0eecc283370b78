/**
 * Section "raw_insert": the baseline group commit must beat — single-row durable INSERTs on the
 * SAME PostgreSQL server the service uses (embedded cluster, superuser), one row per autocommit
 * transaction, `synchronous_commit = on`, sequential from one connection. Each commit waits for
 * its own WAL flush, so this is ≈ the server's fsync rate.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { median, timedRounds, type BenchContext, type BenchSection, type SectionResult } from './core.js';

export const RAW_INSERT_PROFILES = {
  quick: { rounds: 2, roundMs: 1000, warmupMs: 300 },
  full: { rounds: 3, roundMs: 1500, warmupMs: 500 },
} as const;

/** Roughly the size of one service entry's ciphertext + leaf. */
export const RAW_PAYLOAD_BYTES = 256;
const TABLE = 'paylog_bench_raw_insert';
const TABLE_N = 'paylog_bench_raw_insert_n';
const SERVER_SETTINGS = ['fsync', 'synchronous_commit', 'wal_sync_method', 'full_page_writes', 'commit_delay', 'server_version'];

async function runRawInsert(ctx: BenchContext): Promise<SectionResult> {
  const service = ctx.service;
  if (!service) throw new Error('raw insert section needs the service (its PostgreSQL server)');
  const p = RAW_INSERT_PROFILES[ctx.profile];
  const client = new pg.Client({ connectionString: service.pgAdminUrl() });
  await client.connect();
  try {
    await client.query('SET synchronous_commit = on');
    const settings: Record<string, string> = {};
    for (const s of SERVER_SETTINGS) {
      const r = await client.query<{ v: string }>(`SELECT current_setting($1) AS v`, [s]);
      settings[s] = r.rows[0]?.v ?? '?';
    }
    await client.query(`DROP TABLE IF EXISTS ${TABLE}`);
    await client.query(`CREATE TABLE ${TABLE} (id bigserial PRIMARY KEY, payload bytea NOT NULL)`);
    const payload = randomBytes(RAW_PAYLOAD_BYTES);
    const insert = { name: 'bench_raw_insert', text: `INSERT INTO ${TABLE} (payload) VALUES ($1)`, values: [payload] };
    ctx.progress(`raw insert: ${p.rounds} × ${p.roundMs} ms, one durable commit per row`);
    const rates = await timedRounds(() => client.query(insert), p);
    const rowsPerSec = median(rates);
    const count = await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${TABLE}`);
    await client.query(`DROP TABLE ${TABLE}`);
    return {
      table: [
        ['measure', 'rows/s', 'per-row ms', 'rounds (rows/s)'],
        ['INSERT … autocommit, synchronous_commit=on', rowsPerSec, 1000 / rowsPerSec, rates.map((r) => Math.round(r)).join(', ')],
      ],
      figures: { rows_per_s: rowsPerSec },
      notes: [
        `server: PostgreSQL ${settings.server_version}, fsync=${settings.fsync}, wal_sync_method=${settings.wal_sync_method}, full_page_writes=${settings.full_page_writes}, commit_delay=${settings.commit_delay}`,
        `${count.rows[0]?.n} rows inserted in total (${RAW_PAYLOAD_BYTES}-byte payload), one connection, sequential`,
        ...(settings.fsync !== 'on' ? ['WARNING: fsync is off on this server — the baseline is not durable and the ratio is meaningless'] : []),
      ],
      details: { settings, rates },
    };
  } finally {
    await client.end();
  }
}

export const rawInsertSection: BenchSection = {
  id: 'raw_insert',
  title: '2. Raw single-row durable INSERT rate — same PostgreSQL server',
  needs: 'service',
  run: runRawInsert,
};

/** Durable single-row INSERTs, autocommit, synchronous_commit=on, from `clients` connections at once. */
export async function rawInsertRate(adminUrl: string, clients: number, ms: number): Promise<number> {
  const setup = new pg.Client({ connectionString: adminUrl });
  await setup.connect();
  await setup.query(`CREATE TABLE IF NOT EXISTS ${TABLE_N} (id bigserial PRIMARY KEY, payload bytea NOT NULL)`);
  const conns = await Promise.all(
    Array.from({ length: clients }, async () => {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query('SET synchronous_commit = on');
      return c;
    }),
  );
  const payload = randomBytes(256);
  let n = 0;
  const t0 = performance.now();
  await Promise.all(
    conns.map(async (c) => {
      while (performance.now() - t0 < ms) {
        await c.query({ name: 'bench_raw_n', text: `INSERT INTO ${TABLE_N} (payload) VALUES ($1)`, values: [payload] });
        n++;
      }
    }),
  );
  const rate = n / ((performance.now() - t0) / 1000);
  await Promise.all(conns.map((c) => c.end()));
  await setup.query(`DROP TABLE ${TABLE_N}`);
  await setup.end();
  return rate;
}
