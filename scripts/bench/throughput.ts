/**
 * Section "service": end-to-end `POST /v1/transactions` throughput of the paylog child process
 * (validation → KMS GenerateDataKey → envelope → group-committed Merkle append), driven by
 * autocannon over mTLS with the dev `checkout` certificate.
 *
 * Every request carries a UNIQUE transactionId (built per request in `setupRequest`), so each
 * one is a real first-time append (201), never an idempotent replay. Repetitions are
 * interleaved across concurrencies (rep-major order) so machine noise spreads over all of them.
 * Per run, `/metrics` is scraped before and after to get the group-commit batch sizes.
 */
import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';
import { luhnValid } from '../../src/validation/identifiers.js';
import { median, type BenchContext, type BenchSection, type Cell, type SectionResult } from './core.js';
import { rawInsertRate } from './raw-insert.js';
import { describeBuckets, diffHistogram, parseHistogram, type HistogramSnapshot, type ServiceHandle } from './service.js';
import { PUBLIC_TEST_PAN } from '../../src/validation/test-card.js';

export const THROUGHPUT_PROFILES = {
  quick: { concurrencies: [1, 8, 32, 64], reps: 1, seconds: 3, warmupSeconds: 1, rawMs: 1000 },
  full: { concurrencies: [1, 8, 32, 64], reps: 3, seconds: 7, warmupSeconds: 3, rawMs: 2000 },
} as const;

/** Public test card (Visa test number); never a real card. */
export const BENCH_TEST_PAN = PUBLIC_TEST_PAN;
const BATCH_METRIC = 'paylog_log_batch_size';
const REQUEST_TIMEOUT_S = 30;

/**
 * The n-th synthetic Visa-range number of the bench (`4000` + 11 digits of n + a Luhn check
 * digit): a different card, so a different last four, on every request, as a real checkout's
 * customers have. Made up for load only; never a real card.
 */
export function benchCardNumber(n: number): string {
  const body = '4000' + String(n % 1e11).padStart(11, '0');
  for (let d = 0; d < 10; d++) if (luhnValid(body + d)) return body + d;
  throw new Error('unreachable: one check digit always fits');
}

/**
 * Returns a generator of distinct transaction bodies (`bench-<run>-<n>`), each with its own card
 * number: one card thousands of times from one checkout certificate is exactly what the probe
 * limit refuses (issue 17), and it would funnel every submission through one probe group.
 */
export function transactionBodies(): () => string {
  const run = randomBytes(4).toString('hex');
  const expiryYear = new Date().getUTCFullYear() + 3;
  let n = 0;
  return () => {
    const i = n++;
    return JSON.stringify({
      transactionId: `bench-${run}-${i.toString(36)}`,
      processor: 'acme',
      amount: { value: 1299, currency: 'USD' },
      paymentMethod: { type: 'card', pan: benchCardNumber(i), expiryMonth: 12, expiryYear, holderName: 'Bench Tester' },
      metadata: { invoice: 'BENCH' },
    });
  };
}

export interface LoadRun {
  concurrency: number;
  rep: number;
  seconds: number;
  ok2xx: number;
  rps: number;
  p50ms: number;
  p99ms: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  batches: number;
  batchEntries: number;
  batchHistogram: string;
  serviceCpuPct: number | null;
  /** µs of service CPU (all its processes) per 2xx submission over the run. */
  serviceCpuUsPerTx: number | null;
  postgresCpuPct: number | null;
  loadGenCpuPct: number;
}

/**
 * Reads the batch-size histogram, trying SCRAPE_ATTEMPTS times: right after a 128-connection run
 * an overloaded service (seen with the base commit) may not accept a new connection within the
 * 10 s connect timeout while it drains.
 */
async function scrapeBatches(service: ServiceHandle): Promise<HistogramSnapshot> {
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await service.get('/metrics');
      if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
      return parseHistogram(r.text, BATCH_METRIC);
    } catch (e) {
      if (attempt >= SCRAPE_ATTEMPTS) throw e;
      await new Promise((r) => setTimeout(r, SCRAPE_RETRY_MS));
    }
  }
}
const SCRAPE_ATTEMPTS = 3;
const SCRAPE_RETRY_MS = 2_000;

/** One autocannon run at `concurrency` for `seconds`; returns req/s of 2xx responses etc. */
export async function loadRun(service: ServiceHandle, concurrency: number, seconds: number, rep: number): Promise<LoadRun> {
  const nextBody = transactionBodies();
  const before = await scrapeBatches(service);
  const cpu0 = service.cpuSeconds();
  const self0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await autocannon({
    url: `${service.url}/v1/transactions`,
    connections: concurrency,
    duration: seconds,
    timeout: REQUEST_TIMEOUT_S,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    // autocannon passes tlsOptions to tls.connect (it forces rejectUnauthorized: false itself).
    tlsOptions: { ca: service.checkoutTls.ca, cert: service.checkoutTls.cert, key: service.checkoutTls.key },
    requests: [{ setupRequest: (req) => ({ ...req, body: nextBody() }) }],
  });
  const wallS = (performance.now() - t0) / 1000;
  const cpu1 = service.cpuSeconds();
  const self1 = process.cpuUsage(self0);
  const batches = diffHistogram(await scrapeBatches(service), before);
  const pct = (a: number | null, b: number | null) => (a === null || b === null ? null : ((b - a) / wallS) * 100);
  return {
    concurrency,
    rep,
    seconds: result.duration,
    ok2xx: result['2xx'],
    rps: result['2xx'] / result.duration,
    p50ms: result.latency.p50,
    p99ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    batches: batches.count,
    batchEntries: batches.sum,
    batchHistogram: describeBuckets(batches),
    serviceCpuPct: pct(cpu0.service, cpu1.service),
    serviceCpuUsPerTx: cpu0.service === null || cpu1.service === null || result['2xx'] === 0 ? null : ((cpu1.service - cpu0.service) * 1e6) / result['2xx'],
    postgresCpuPct: pct(cpu0.postgres, cpu1.postgres),
    loadGenCpuPct: ((self1.user + self1.system) / 1e6 / wallS) * 100,
  };
}

const medianOrNull = (xs: (number | null)[]) => {
  const v = xs.filter((x): x is number => x !== null);
  return v.length ? median(v) : null;
};

async function runThroughput(ctx: BenchContext): Promise<SectionResult> {
  const service = ctx.service;
  if (!service) throw new Error('service section needs the paylog child process');
  const p = THROUGHPUT_PROFILES[ctx.profile];
  ctx.progress(`warm-up: ${p.warmupSeconds} s at concurrency 8`);
  await loadRun(service, 8, p.warmupSeconds, -1);

  const runs: LoadRun[] = [];
  for (let rep = 0; rep < p.reps; rep++) {
    for (const c of p.concurrencies) {
      ctx.progress(`load: concurrency ${c}, rep ${rep + 1}/${p.reps}, ${p.seconds} s`);
      runs.push(await loadRun(service, c, p.seconds, rep));
    }
  }

  const figures: Record<string, number | null> = {};
  const table: Cell[][] = [
    ['conc', 'req/s (2xx)', 'p50 ms', 'p99 ms', 'non-2xx', 'errors', 'mean batch', 'svc CPU µs/tx', 'svc CPU %', 'pg CPU %', 'loadgen CPU %'],
  ];
  let best = { c: 0, rps: -1 };
  for (const c of p.concurrencies) {
    const rs = runs.filter((r) => r.concurrency === c);
    const rps = median(rs.map((r) => r.rps));
    const p50 = median(rs.map((r) => r.p50ms));
    const p99 = median(rs.map((r) => r.p99ms));
    const non2xx = rs.reduce((a, r) => a + r.non2xx, 0);
    const errors = rs.reduce((a, r) => a + r.errors + r.timeouts, 0);
    const nBatches = rs.reduce((a, r) => a + r.batches, 0);
    const meanBatch = nBatches > 0 ? rs.reduce((a, r) => a + r.batchEntries, 0) / nBatches : null;
    const svcCpu = medianOrNull(rs.map((r) => r.serviceCpuPct));
    const cpuPerTx = medianOrNull(rs.map((r) => r.serviceCpuUsPerTx));
    const pgCpu = medianOrNull(rs.map((r) => r.postgresCpuPct));
    const lgCpu = median(rs.map((r) => r.loadGenCpuPct));
    Object.assign(figures, {
      [`rps_c${c}`]: rps,
      [`p50_ms_c${c}`]: p50,
      [`p99_ms_c${c}`]: p99,
      [`non2xx_c${c}`]: non2xx,
      [`errors_c${c}`]: errors,
      [`mean_batch_c${c}`]: meanBatch,
      [`service_cpu_pct_c${c}`]: svcCpu,
      [`cpu_us_per_tx_c${c}`]: cpuPerTx,
      [`postgres_cpu_pct_c${c}`]: pgCpu,
    });
    table.push([c, rps, p50, p99, non2xx, errors, meanBatch, cpuPerTx, svcCpu, pgCpu, lgCpu]);
    if (rps > best.rps) best = { c, rps };
  }
  figures.best_rps = best.rps;
  figures.best_concurrency = best.c;
  // The yardstick of the issue: pgbench-like 8-client single-row durable INSERTs on the same server.
  ctx.progress(`service: raw INSERT rate, 8 clients, ${p.rawMs} ms`);
  const raw8 = await rawInsertRate(service.pgAdminUrl(), 8, p.rawMs);
  figures.raw8_rows_per_s = raw8;
  figures.best_over_raw8 = best.rps / raw8;

  const bestRuns = runs.filter((r) => r.concurrency === best.c);
  const notes = [
    `best: ${Math.round(best.rps)} req/s at concurrency ${best.c} (median of ${p.reps} × ${p.seconds} s; reps interleaved across concurrencies); ${service.database}, workers ${service.env.PAYLOG_WORKERS ?? 'default'}`,
    `service (all workers) ÷ 8-client single-row INSERT rate of the same server: ${Math.round(best.rps)} ÷ ${Math.round(raw8)} = ${(best.rps / raw8).toFixed(2)}× (long-run goal 1.0×)`,
    `batch sizes at concurrency ${best.c} (paylog_log_batch_size, per-bucket counts): ${bestRuns.map((r) => r.batchHistogram || 'none').join(' | ')}`,
    'CPU % = CPU-seconds / wall-second (100 % = one full core; the box has 2). The load generator shares those cores. svc CPU µs/tx = CPU of every process of the service (primary, workers, their children; not PostgreSQL) over the run ÷ 2xx responses',
  ];
  return { table, figures, notes, details: { profile: p, runs } };
}

export const serviceThroughputSection: BenchSection = {
  id: 'service',
  title: '1. Service throughput — POST /v1/transactions over mTLS (autocannon, unique ids)',
  needs: 'service',
  run: runThroughput,
};
