/**
 * Section "storage": database bytes per card transaction, all-in — every table of the service's
 * database (rows, TOAST, indexes, free-space and visibility maps: `pg_total_relation_size`),
 * log and tree included, except forwarding and CVC tables (issue 20 leaves them out) — measured
 * as the growth over N card submissions on a fresh service (hierarchical keys) ÷ the
 * transactions it recorded (rows counted in the database, not 2xx responses).
 * N = 100,000 (full) / 10,000 (quick), or PAYLOG_BENCH_STORAGE_TX.
 */
import autocannon from 'autocannon';
import pg from 'pg';
import type { BenchContext, BenchSection, Cell, SectionResult } from './core.js';
import { startService, type ServiceHandle } from './service.js';
import { transactionBodies } from './throughput.js';

export const STORAGE_PROFILES = { quick: { transactions: 10_000 }, full: { transactions: 100_000 } } as const;
const CONNECTIONS = 32;
/** Tables not counted (issue 20): forwarding and CVC rows. */
const EXCLUDED_TABLE = /forward|cvc/i;
const SETTLE_MS = 1500;

/** N from PAYLOG_BENCH_STORAGE_TX or the profile. */
function storageTransactions(profileN: number, env: NodeJS.ProcessEnv = process.env): number {
  const v = env.PAYLOG_BENCH_STORAGE_TX;
  if (v === undefined || v === '') return profileN;
  if (!/^[1-9][0-9]{0,7}$/.test(v)) throw new Error(`PAYLOG_BENCH_STORAGE_TX must be a positive integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

async function tableSizes(c: pg.Client): Promise<Map<string, number>> {
  const r = await c.query<{ t: string; bytes: string }>(
    `SELECT c.relname AS t, pg_total_relation_size(c.oid)::text AS bytes
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'`,
  );
  return new Map(r.rows.map((x) => [x.t, Number(x.bytes)]));
}

/**
 * The parts of each table: `<table>` = heap + TOAST + free-space/visibility maps, and
 * `<table> · <index>` per index (their sum is the table's pg_total_relation_size).
 */
async function partSizes(c: pg.Client): Promise<Map<string, number>> {
  const r = await c.query<{ t: string; bytes: string }>(
    `SELECT c.relname AS t, pg_table_size(c.oid)::text AS bytes
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public'
     UNION ALL
     SELECT t.relname || ' · ' || i.relname, pg_relation_size(i.oid)::text
       FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE n.nspname = 'public'`,
  );
  return new Map(r.rows.map((x) => [x.t, Number(x.bytes)]));
}

async function submit(service: ServiceHandle, amount: number): Promise<{ ok: number; other: number }> {
  const next = transactionBodies();
  const r = await autocannon({
    url: `${service.url}/v1/transactions`,
    connections: Math.min(CONNECTIONS, amount),
    amount,
    timeout: 30,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    tlsOptions: { ca: service.checkoutTls.ca, cert: service.checkoutTls.cert, key: service.checkoutTls.key },
    requests: [{ setupRequest: (req) => ({ ...req, body: next() }) }],
  });
  return { ok: r['2xx'], other: r.non2xx + r.errors + r.timeouts };
}

async function runStorage(ctx: BenchContext): Promise<SectionResult> {
  const n = storageTransactions(STORAGE_PROFILES[ctx.profile].transactions);
  const service = await startService({ env: { PAYLOG_KEY_MODE: 'hierarchical', ...ctx.serviceEnv }, progress: ctx.progress });
  try {
    const c = new pg.Client({ connectionString: service.serviceDbUrl() });
    await c.connect();
    try {
      const count = async () => Number((await c.query<{ n: string }>('SELECT count(*)::text AS n FROM transactions')).rows[0]!.n);
      // One submission first, so start-up rows (epoch, key events, the first tree nodes) are in the baseline.
      await submit(service, 10);
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      const before = await tableSizes(c);
      const partsBefore = await partSizes(c);
      const n0 = await count();
      ctx.progress(`storage: ${n.toLocaleString('en-US')} card submissions at ${CONNECTIONS} connections`);
      const t0 = performance.now();
      const sent = await submit(service, n);
      const seconds = (performance.now() - t0) / 1000;
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      const after = await tableSizes(c);
      const partsAfter = await partSizes(c);
      const records = (await count()) - n0;
      if (records <= 0) throw new Error(`no transactions recorded (${sent.ok} 2xx, ${sent.other} other)`);
      const rows: { table: string; bytes: number }[] = [];
      let total = 0;
      let excluded = 0;
      for (const [t, size] of after) {
        const grew = size - (before.get(t) ?? 0);
        if (EXCLUDED_TABLE.test(t)) {
          excluded += grew;
          continue;
        }
        total += grew;
        if (grew !== 0) rows.push({ table: t, bytes: grew });
      }
      rows.sort((a, b) => b.bytes - a.bytes);
      const parts = [...partsAfter]
        .filter(([t]) => !EXCLUDED_TABLE.test(t))
        .map(([t, size]) => ({ part: t, bytes: size - (partsBefore.get(t) ?? 0) }))
        .filter((p) => p.bytes !== 0)
        .sort((a, b) => b.bytes - a.bytes);
      const table: Cell[][] = [['table (pg_total_relation_size growth)', 'bytes', 'bytes / transaction'], ...rows.map((r) => [r.table, r.bytes, r.bytes / records] as Cell[]), ['= all counted tables', total, total / records]];
      return {
        table,
        figures: { transactions: records, bytes_per_tx: total / records, total_bytes: total, excluded_bytes: excluded, submit_rps: sent.ok / seconds },
        notes: [
          `${records.toLocaleString('en-US')} card transactions recorded (${sent.ok.toLocaleString('en-US')} 2xx, ${sent.other} other) in ${seconds.toFixed(0)} s; ${service.database}; forward/CVC tables not counted (${excluded} bytes)`,
          `by part (heap + TOAST, and each index): ${parts.map((p) => `${p.part} ${(p.bytes / records).toFixed(1)}`).join(', ')}`,
          `issue 20 target: ≤ 1,000 bytes per card transaction at 100,000 transactions — now ${Math.round(total / records)} bytes${records < 100_000 ? ` (measured at ${records.toLocaleString('en-US')}; run the full profile for the 100,000 figure)` : ''}`,
        ],
      };
    } finally {
      await c.end();
    }
  } finally {
    await service.stop();
  }
}

export const storageSection: BenchSection = {
  id: 'storage',
  title: 'Storage: database bytes per card transaction, all-in (rows, indexes, tree; forward/CVC excluded)',
  needs: 'none',
  run: runStorage,
};
