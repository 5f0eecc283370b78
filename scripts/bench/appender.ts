/**
 * Section "appender": the group-commit engine alone — paylog's `LogAppender` appending small
 * entries (no HTTP, TLS, validation or KMS) from N concurrent callers, in a scratch database on
 * the SAME PostgreSQL server (migrated like the service's; runs as `paylog_app`). Separates
 * "does group commit beat one-fsync-per-row?" from the per-request CPU cost of the service.
 */
import { randomBytes } from 'node:crypto';
import { applyMigrations, createDatabase, dropDatabase, openAppDatabase } from '../../src/db/connection.js';
import { LogAppender } from '../../src/log/appender.js';
import { APPEND_PRECONDITIONS } from '../../src/services/append-preconditions.js';
import { median, type BenchContext, type BenchSection, type Cell, type SectionResult } from './core.js';

export const APPENDER_PROFILES = {
  quick: { concurrencies: [1, 64], rounds: 1, roundMs: 1000 },
  full: { concurrencies: [1, 8, 64], rounds: 3, roundMs: 1500 },
} as const;
const SCRATCH_DB = `paylog_bench_appender_${randomBytes(3).toString('hex')}`;
/** Leaf size close to a real transaction leaf. */
const LEAF_BYTES = 400;

async function appendRate(appender: LogAppender, inFlight: number, ms: number): Promise<{ rate: number; entries: number }> {
  let n = 0;
  const leaf = randomBytes(LEAF_BYTES);
  const t0 = performance.now();
  const deadline = t0 + ms;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < deadline) {
        await appender.append({ kind: 'key_event', leaf, createdAt: new Date() });
        n++;
      }
    }),
  );
  return { rate: n / ((performance.now() - t0) / 1000), entries: n };
}

async function runAppender(ctx: BenchContext): Promise<SectionResult> {
  const service = ctx.service;
  if (!service) throw new Error('appender section needs the service (its PostgreSQL server)');
  const p = APPENDER_PROFILES[ctx.profile];
  const adminUrl = service.pgAdminUrl();
  const url = await createDatabase(adminUrl, SCRATCH_DB);
  try {
    await applyMigrations(url);
    const database = openAppDatabase(url);
    let batches = 0;
    let entries = 0;
    const appender = new LogAppender(database, {
      preconditions: APPEND_PRECONDITIONS,
      onCommit: ({ batchSize }) => {
        batches++;
        entries += batchSize;
      },
    });
    const table: Cell[][] = [['callers', 'entries/s', 'mean batch', 'rounds (entries/s)']];
    const figures: Record<string, number | null> = {};
    try {
      await appendRate(appender, 8, 300); // warm-up
      for (const c of p.concurrencies) {
        ctx.progress(`appender: ${c} concurrent callers, ${p.rounds} × ${p.roundMs} ms`);
        const rates: number[] = [];
        const b0 = batches;
        const e0 = entries;
        for (let r = 0; r < p.rounds; r++) rates.push((await appendRate(appender, c, p.roundMs)).rate);
        const rate = median(rates);
        const meanBatch = batches > b0 ? (entries - e0) / (batches - b0) : null;
        figures[`entries_per_s_c${c}`] = rate;
        figures[`mean_batch_c${c}`] = meanBatch;
        table.push([c, rate, meanBatch, rates.map(Math.round).join(', ')]);
      }
    } finally {
      await appender.close();
      await database.close();
    }
    figures.best_entries_per_s = Math.max(...p.concurrencies.map((c) => figures[`entries_per_s_c${c}`] ?? 0));
    return {
      table,
      figures,
      notes: [
        'in the benchmark process (no HTTP/TLS/KMS); `key_event` entries with a 400-byte leaf; one batch = one transaction (lock, head, frontier, inserts, new head)',
      ],
    };
  } finally {
    await dropDatabase(adminUrl, SCRATCH_DB);
  }
}

export const appenderSection: BenchSection = {
  id: 'appender',
  title: '2b. Group-commit engine alone — LogAppender entries/s (same PostgreSQL server)',
  needs: 'service',
  run: runAppender,
};
