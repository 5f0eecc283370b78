/**
 * Section "keys" (issue 9): the two key modes side by side in one run, on one worker and on all
 * workers (PAYLOG_WORKERS), each a fresh paylog child (embedded PostgreSQL, dev PKI) whose KMS
 * is a local KMS endpoint started HERE, in the bench process, so KMS calls are counted exactly
 * at the endpoint (PAYLOG_INTERNAL_LOCAL_KMS_URL; dev-only). Note: that endpoint's CPU is then
 * spent in the bench process, not the service — which, if anything, flatters per-transaction mode.
 *
 * Per configuration: throughput (2xx req/s), p50/p99, KMS calls per 10,000 transactions, and
 * the ratio to the raw durable INSERT rate of the same PostgreSQL server with 8 concurrent
 * clients (as `pgbench -c 8` would), printed next to the single-client rate.
 *
 * Each configuration is loaded at every concurrency of the profile (same set for all), and
 * its throughput is the best of them: one concurrency does not saturate every configuration
 * (at 32 connections, 2 workers are bound by the append lock's latency, not by CPU). Every
 * concurrency's row is printed, with its latencies. The full profile runs two rounds, the
 * configuration order reversed in the second, each with a fresh paylog.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startLocalKms } from '../../src/kms/local/server.js';
import { median, type BenchContext, type BenchSection, type Cell, type SectionResult } from './core.js';
import { startService } from './service.js';
import { loadRun, type LoadRun } from './throughput.js';
import { rawInsertRate } from './raw-insert.js';

export const KEYS_PROFILES = {
  quick: { seconds: 4, warmupSeconds: 2, concurrencies: [32, 128], rounds: 1, reps: 1, rawMs: 1000 },
  full: { seconds: 8, warmupSeconds: 3, concurrencies: [32, 128], rounds: 2, reps: 1, rawMs: 2000 },
} as const;

/** Wait after a load run before counting, so requests in flight at its end have finished. */
const SETTLE_MS = 1500;

const medianOrNull = (xs: (number | null)[]): number | null => {
  const v = xs.filter((x): x is number => x !== null);
  return v.length ? median(v) : null;
};

interface Config {
  id: string;
  mode: 'hierarchical' | 'per-transaction';
  workers: number;
}

async function runKeys(ctx: BenchContext): Promise<SectionResult> {
  const p = KEYS_PROFILES[ctx.profile];
  const all = Math.max(2, cpus().length);
  const configs: Config[] = [
    { id: 'hier_w1', mode: 'hierarchical', workers: 1 },
    { id: 'pertx_w1', mode: 'per-transaction', workers: 1 },
    { id: `hier_w${all}`, mode: 'hierarchical', workers: all },
    { id: `pertx_w${all}`, mode: 'per-transaction', workers: all },
  ];
  const kmsDir = mkdtempSync(join(tmpdir(), 'paylog-bench-kms-'));
  const kms = await startLocalKms({ keyStoreDir: kmsDir });
  const totalKms = () => [...kms.requestCounts.values()].reduce((a, b) => a + b, 0);
  /** KMS calls that wrap or unwrap key material (the per-record cost); the rest are probes and checkpoint signatures. */
  const KEY_OPS = ['GenerateDataKey', 'Encrypt', 'Decrypt', 'ReEncrypt'];
  const keyKms = () => KEY_OPS.reduce((a, op) => a + (kms.requestCounts.get(op) ?? 0), 0);
  type AtConcurrency = { concurrency: number; rps: number; p50: number; p99: number; cpuUsPerTx: number | null; svcCpu: number | null; pgCpu: number | null; benchCpu: number };
  const results: Record<string, { rps: number; best: AtConcurrency; at: AtConcurrency[]; kmsPer10k: number; keyKmsPer10k: number; ok: number; non2xx: number; raw1: number; raw8: number }> = {};
  /** Everything measured for one configuration, over all its rounds. */
  type Acc = { runs: LoadRun[]; kmsCalls: number; keyCalls: number; records: number; ok: number; raw1: number[]; raw8: number[] };
  const acc = new Map<string, Acc>(configs.map((c) => [c.id, { runs: [], kmsCalls: 0, keyCalls: 0, records: 0, ok: 0, raw1: [], raw8: [] }]));
  try {
    // Rounds: each configuration gets a fresh paylog in every round, and the order reverses from
    // one round to the next, so a drift of the machine (this VM's speed varies by tens of per
    // cent over minutes) does not favour the configurations measured first or last.
    for (let round = 0; round < p.rounds; round++) {
      for (const c of round % 2 === 0 ? configs : [...configs].reverse()) {
        const a = acc.get(c.id)!;
        ctx.progress(`keys: round ${round + 1}/${p.rounds}, ${c.mode}, ${c.workers} worker(s): starting paylog`);
        const service = await startService({
          env: { PAYLOG_KEY_MODE: c.mode, PAYLOG_WORKERS: String(c.workers), PAYLOG_INTERNAL_LOCAL_KMS_URL: kms.url },
          progress: ctx.progress,
        });
        try {
          await loadRun(service, 8, p.warmupSeconds, -1);
          const countRecords = async () => {
            const c = new pg.Client({ connectionString: service.serviceDbUrl() });
            await c.connect();
            try {
              return Number((await c.query('SELECT count(*) AS n FROM data_keys')).rows[0].n);
            } finally {
              await c.end();
            }
          };
          // Repetitions interleave the concurrencies (rep-major), so machine noise spreads over all.
          for (let rep = 0; rep < p.reps; rep++) for (const concurrency of p.concurrencies) {
            ctx.progress(`keys: ${c.id} load, concurrency ${concurrency}, ${p.seconds} s`);
            const k0 = totalKms();
            const kk0 = keyKms();
            const n0 = await countRecords();
            const r = await loadRun(service, concurrency, p.seconds, rep);
            // Requests still in flight when the load generator stopped also make records and KMS
            // calls: let them finish, then count records in the database, not 2xx responses.
            await new Promise((res) => setTimeout(res, SETTLE_MS));
            a.kmsCalls += totalKms() - k0;
            a.keyCalls += keyKms() - kk0;
            a.records += (await countRecords()) - n0;
            a.ok += r.ok2xx;
            a.runs.push(r);
          }
          ctx.progress(`keys: ${c.id} raw INSERT rate (1 and 8 clients) on the same server`);
          a.raw1.push(await rawInsertRate(service.pgAdminUrl(), 1, p.rawMs));
          a.raw8.push(await rawInsertRate(service.pgAdminUrl(), 8, p.rawMs));
        } finally {
          await service.stop();
        }
      }
    }
  } finally {
    await kms.close();
    rmSync(kmsDir, { recursive: true, force: true });
  }
  for (const c of configs) {
    const a = acc.get(c.id)!;
    const at: AtConcurrency[] = p.concurrencies.map((concurrency) => {
      const rs = a.runs.filter((r) => r.concurrency === concurrency);
      return {
        concurrency,
        rps: median(rs.map((r) => r.rps)),
        p50: median(rs.map((r) => r.p50ms)),
        p99: median(rs.map((r) => r.p99ms)),
        cpuUsPerTx: medianOrNull(rs.map((r) => r.serviceCpuUsPerTx)),
        svcCpu: medianOrNull(rs.map((r) => r.serviceCpuPct)),
        pgCpu: medianOrNull(rs.map((r) => r.postgresCpuPct)),
        benchCpu: median(rs.map((r) => r.loadGenCpuPct)),
      };
    });
    const best = at.reduce((x, y) => (y.rps > x.rps ? y : x));
    results[c.id] = {
      rps: best.rps,
      best,
      at,
      kmsPer10k: a.records > 0 ? (a.kmsCalls / a.records) * 10_000 : NaN,
      keyKmsPer10k: a.records > 0 ? (a.keyCalls / a.records) * 10_000 : NaN,
      ok: a.ok,
      non2xx: a.runs.reduce((n, r) => n + r.non2xx + r.errors + r.timeouts, 0),
      raw1: median(a.raw1),
      raw8: median(a.raw8),
    };
  }
  const table: Cell[][] = [['key mode', 'workers', 'connections', 'req/s', 'p50 ms', 'p99 ms', 'KMS key ops /10k tx', 'all KMS calls /10k tx', 'raw INSERT 1 client', 'raw INSERT 8 clients', '÷ raw 8', 'non-2xx', 'svc CPU µs/tx', 'svc CPU %', 'pg CPU %', 'bench CPU %']];
  const figures: Record<string, number | null> = {};
  for (const c of configs) {
    const r = results[c.id]!;
    for (const a of r.at) {
      // KMS counts, raw rates and errors are per configuration (all its runs): on its best row.
      const isBest = a === r.best;
      table.push([c.mode, c.workers, `${a.concurrency}${isBest ? ' (best)' : ''}`, a.rps, a.p50, a.p99, isBest ? r.keyKmsPer10k : '', isBest ? r.kmsPer10k : '', isBest ? r.raw1 : '', isBest ? r.raw8 : '', `${(a.rps / r.raw8).toFixed(2)}×`, isBest ? r.non2xx : '', a.cpuUsPerTx ?? '—', a.svcCpu ?? '—', a.pgCpu ?? '—', a.benchCpu]);
      figures[`${c.id}_c${a.concurrency}_rps`] = a.rps;
      figures[`${c.id}_c${a.concurrency}_p99_ms`] = a.p99;
      figures[`${c.id}_c${a.concurrency}_p50_ms`] = a.p50;
      figures[`${c.id}_c${a.concurrency}_cpu_us_per_tx`] = a.cpuUsPerTx;
    }
    Object.assign(figures, {
      [`${c.id}_rps`]: r.rps,
      [`${c.id}_best_connections`]: r.best.concurrency,
      [`${c.id}_p50_ms`]: r.best.p50,
      [`${c.id}_p99_ms`]: r.best.p99,
      [`${c.id}_kms_per_10k`]: r.kmsPer10k,
      [`${c.id}_kms_key_ops_per_10k`]: r.keyKmsPer10k,
      [`${c.id}_raw1_rows_per_s`]: r.raw1,
      [`${c.id}_raw8_rows_per_s`]: r.raw8,
      [`${c.id}_ratio_raw8`]: r.rps / r.raw8,
      [`${c.id}_svc_cpu_pct`]: r.best.svcCpu,
      [`${c.id}_pg_cpu_pct`]: r.best.pgCpu,
    });
  }
  const h1 = results.hier_w1!, p1 = results.pertx_w1!, hn = results[`hier_w${all}`]!, pn = results[`pertx_w${all}`]!;
  figures.ratio_hier_vs_pertx_w1 = h1.rps / p1.rps;
  figures.ratio_hier_vs_pertx_wall = hn.rps / pn.rps;
  figures.ratio_hier_wall_vs_pertx_w1 = hn.rps / p1.rps;
  figures.ratio_workers_hier = hn.rps / h1.rps;
  return {
    table,
    figures,
    notes: [
      `hierarchical ÷ per-transaction: ${figures.ratio_hier_vs_pertx_w1!.toFixed(2)}× on 1 worker, ${figures.ratio_hier_vs_pertx_wall!.toFixed(2)}× on ${all} workers; hierarchical ${all} workers ÷ per-transaction 1 worker ${figures.ratio_hier_wall_vs_pertx_w1!.toFixed(2)}×`,
      `hierarchical ${all} workers ÷ 1 worker: ${figures.ratio_workers_hier!.toFixed(2)}×; at ${p.concurrencies[0]} connections only: ${(hn.at[0]!.rps / h1.at[0]!.rps).toFixed(2)}× (hierarchical ${all} workers ÷ per-transaction 1 worker ${(hn.at[0]!.rps / p1.at[0]!.rps).toFixed(2)}×)`,
      `${p.rounds} round(s), configuration order reversed each round, a fresh paylog per configuration per round; each configuration at ${p.concurrencies.join(' and ')} connections, ${p.rounds * p.reps} × ${p.seconds} s each (median); req/s of a configuration = its best connection count (marked); KMS calls counted at the local endpoint during the measured runs, per record written (rows counted in the database): "key ops" = GenerateDataKey + Encrypt + Decrypt + ReEncrypt (per-record cost); "all" adds DescribeKey readiness probes and Sign for checkpoints`,
      'svc CPU µs/tx = CPU of every process of the service (primary, workers; not PostgreSQL) over the run ÷ 2xx responses. CPU % = CPU-seconds / wall-second (100 % = one core; the box has ' + cpus().length + '): "svc" = paylog and its workers, "pg" = PostgreSQL, "bench" = this process (load generator + the counting local KMS endpoint, so per-transaction KMS work lands here)',
    ],
    details: results,
  };
}

export const keysSection: BenchSection = {
  id: 'keys',
  title: 'Key modes: hierarchical (envelope v2) vs per-transaction (v1), 1 worker and all workers',
  needs: 'none',
  run: runKeys,
};
