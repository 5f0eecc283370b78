/**
 * Section "forward" (issue 18): the same authorization request sent directly to an HTTPS echo
 * destination and through paylog's forward (template filled, access entry committed, egress,
 * masking, result entry), side by side in one run, at 1 and 32 connections: p50, p99 and
 * throughput. For the issue's targets it also measures, in the same run, the p50 of two
 * sequential single-entry appends (a LogAppender on a scratch database of the same PostgreSQL
 * server, as the "appender" section does), and reads submission throughput from the "service"
 * section when it ran.
 *
 * Each forward is on a transaction of its own (submitted before the timed window), with its own
 * Idempotency-Key, as a checkout authorizes each payment once.
 */
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import pg from 'pg';
import { request } from 'undici';
import { Agent } from 'undici';
import autocannon from 'autocannon';
import { applyMigrations, createDatabase, dropDatabase, openAppDatabase } from '../../src/db/connection.js';
import { LogAppender } from '../../src/log/appender.js';
import { createCa, issueServerCertificate } from '../../src/pki/ca.js';
import { median, type BenchContext, type BenchSection, type Cell, type SectionResult } from './core.js';
import { BENCH_TEST_PAN } from './throughput.js';

export const FORWARD_PROFILES = {
  quick: { perRun: { 1: 200, 32: 1500 } as Record<number, number>, reps: 1 },
  full: { perRun: { 1: 600, 32: 5000 } as Record<number, number>, reps: 3 },
} as const;
const CONNECTIONS = [1, 32] as const;
const TIMEOUT_S = 30;
const TEMPLATE = '{"amount":{{amount.value}},"currency":"{{amount.currency}}","card":{"number":"{{card.number}}","exp_month":"{{card.expiryMonth}}","exp_year":{{card.expiryYear}}},"reference":"{{transactionId}}"}';

const fmtUs = (v: number | null | undefined) => (v == null ? '—' : `${Math.round(v).toLocaleString('en-US')} µs`);

/** An HTTPS echo "processor" on loopback with its own CA. */
async function startEcho(): Promise<{ server: Server; url: string; caPem: string }> {
  const ca = createCa({ commonName: 'bench processor CA' });
  const leaf = issueServerCertificate(ca, ['localhost']);
  const server = createServer({ key: leaf.keyPem, cert: leaf.certPem, keepAlive: true }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => res.writeHead(201, { 'content-type': 'application/json' }).end(`{"status":"authorized","authorizationCode":"A1B2C3","echo":${Buffer.concat(chunks).toString('utf8') || 'null'}}`));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `https://localhost:${(server.address() as AddressInfo).port}`, caPem: ca.certPem };
}

type Run = { rps: number; p50: number; p99: number; ok: number; bad: number; svcCpuUs?: number | null; pgCpuUs?: number | null };

async function cannon(o: { url: string; connections: number; bodies: string[]; paths?: string[]; headers: Record<string, string>; tls: Record<string, Buffer | string>; keyPrefix?: string }): Promise<Run> {
  let i = 0;
  // Throughput from our own clock, start to last response: autocannon settles an `amount` run
  // only on its once-a-second tick, so its `duration` is a whole number of seconds (600
  // requests answered in 0.6 s read as 600 req/s).
  const started = performance.now();
  let lastResponse = started;
  const options: autocannon.Options = {
    url: o.url,
    connections: o.connections,
    amount: o.paths?.length ?? o.bodies.length,
    timeout: TIMEOUT_S,
    method: 'POST',
    headers: o.headers,
    tlsOptions: o.tls,
    requests: [
      {
        setupRequest: (req) => {
          const n = i++;
          return { ...req, body: o.bodies[n % o.bodies.length]!, ...(o.paths ? { path: o.paths[n % o.paths.length]! } : {}), ...(o.keyPrefix ? { headers: { ...req.headers, 'idempotency-key': `${o.keyPrefix}-${n}` } } : {}) };
        },
      },
    ],
  };
  const r = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(options, (err, result) => (err ? reject(err) : resolve(result)));
    instance.on('response', () => {
      lastResponse = performance.now();
    });
  });
  const seconds = (lastResponse - started) / 1000;
  return { rps: r['2xx'] / seconds, p50: r.latency.p50, p99: r.latency.p99, ok: r['2xx'], bad: r.non2xx + r.errors + r.timeouts };
}

/**
 * The one-connection runs: the same requests as `cannon`, sent one after another on one
 * keep-alive connection (what autocannon does with one connection), each timed on our own clock.
 * autocannon reports latencies in whole milliseconds, and the issue-18 budget compares the p50
 * overhead (a few ms) with a fractional figure, so the one-connection p50 and p99 are taken here
 * to the microsecond instead.
 */
async function sequential(o: Parameters<typeof cannon>[0]): Promise<Run> {
  const n = o.paths?.length ?? o.bodies.length;
  const agent = new Agent({ connect: o.tls, connections: 1, pipelining: 1 });
  const latencies: number[] = [];
  let bad = 0;
  const started = performance.now();
  try {
    for (let i = 0; i < n; i++) {
      const url = new URL(o.url);
      if (o.paths) url.pathname = o.paths[i % o.paths.length]!;
      const headers = { ...o.headers, ...(o.keyPrefix ? { 'idempotency-key': `${o.keyPrefix}-${i}` } : {}) };
      const t0 = performance.now();
      const res = await request(url, { method: 'POST', dispatcher: agent, headers, body: o.bodies[i % o.bodies.length]!, headersTimeout: TIMEOUT_S * 1000, bodyTimeout: TIMEOUT_S * 1000 });
      await res.body.dump();
      latencies.push(performance.now() - t0);
      if (res.statusCode < 200 || res.statusCode > 299) bad++;
    }
  } finally {
    await agent.close();
  }
  const sorted = [...latencies].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { rps: (n - bad) / ((performance.now() - started) / 1000), p50: at(0.5), p99: at(0.99), ok: n - bad, bad };
}

/**
 * `BENCH_PG_STATS_FILE=<path>` (a server with pg_stat_statements loaded and the extension
 * created in database `postgres`, e.g. DATABASE_URL of an own PostgreSQL): pg_stat_statements is
 * reset right before the timed forward run at 32 connections and read right after; the file gets
 * the statements of the service's database (calls, rows, execution and planning ms) and the
 * number of forwards answered, to count statements and database time per forward, and the
 * run's window on the monotonic clock.
 */
const timedWindow = { startUs: 0 };
async function pgStats(ctx: BenchContext, phase: 'reset' | 'read', forwards = 0): Promise<void> {
  const file = process.env.BENCH_PG_STATS_FILE;
  if (!file) return;
  if (phase === 'reset') timedWindow.startUs = Number(process.hrtime.bigint() / 1000n);
  const client = new pg.Client({ connectionString: ctx.service!.pgAdminUrl() });
  await client.connect();
  try {
    if (phase === 'reset') {
      await client.query('SELECT pg_stat_statements_reset()');
      return;
    }
    const db = new URL(ctx.service!.serviceDbUrl()).pathname.slice(1);
    const r = await client.query(
      `SELECT s.calls::int, s.rows::int, s.total_exec_time AS exec_ms, s.total_plan_time AS plan_ms, s.plans::int, s.query
       FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1 ORDER BY s.calls DESC`,
      [db],
    );
    // The run's window on the monotonic clock V8 CPU profiles use (`startTime`, µs), to read a
    // BENCH_CPU_PROF_DIR profile over the timed forwards only.
    writeFileSync(file, JSON.stringify({ forwards, window: { startUs: timedWindow.startUs, endUs: Number(process.hrtime.bigint() / 1000n) }, statements: r.rows }, null, 1));
  } finally {
    await client.end();
  }
}

/** p50 of two sequential single-entry appends (one forward's access + result entries, alone). */
async function twoAppendsP50(ctx: BenchContext): Promise<number> {
  const adminUrl = ctx.service!.pgAdminUrl();
  const name = `paylog_bench_fwd_${randomBytes(3).toString('hex')}`;
  const url = await createDatabase(adminUrl, name);
  try {
    await applyMigrations(url);
    const database = openAppDatabase(url);
    const appender = new LogAppender(database, {});
    const leaf = randomBytes(300);
    const samples: number[] = [];
    try {
      for (let n = 0; n < 200; n++) {
        const t0 = performance.now();
        await appender.append({ kind: 'key_event', leaf, createdAt: new Date() });
        await appender.append({ kind: 'key_event', leaf, createdAt: new Date() });
        if (n >= 20) samples.push(performance.now() - t0);
      }
    } finally {
      await appender.close();
      await database.close();
    }
    return median(samples);
  } finally {
    await dropDatabase(adminUrl, name).catch(() => undefined);
  }
}

async function runForward(ctx: BenchContext): Promise<SectionResult> {
  const service = ctx.service;
  if (!service) throw new Error('forward section needs the paylog child process');
  const p = FORWARD_PROFILES[ctx.profile];
  const pki = join(service.dataDir, 'pki');
  const ca = readFileSync(join(pki, 'ca.pem'));
  const admin = new Agent({ connect: { ca, cert: readFileSync(join(pki, 'admin.pem')), key: readFileSync(join(pki, 'admin-key.pem')) } });
  const checkout = new Agent({ connect: { ca: service.checkoutTls.ca, cert: service.checkoutTls.cert, key: service.checkoutTls.key }, connections: 64 });
  const echo = await startEcho();
  try {
    const put = await request(`${service.url}/v1/admin/processors/acme/destinations/bench`, {
      method: 'PUT',
      dispatcher: admin,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: echo.url, paths: ['/v1/payments'], caPem: echo.caPem, allowPrivateNetwork: true, timeoutMs: 10000 }),
    });
    if (put.statusCode !== 200) throw new Error(`registering the bench destination answered ${put.statusCode}: ${await put.body.text()}`);
    await put.body.dump();
    const runId = randomBytes(4).toString('hex');
    const expiryYear = new Date().getUTCFullYear() + 3;
    /** Transactions for one timed forward run (submitted outside the timed window). */
    const submitMany = async (n: number, tag: string): Promise<string[]> => {
      const ids = Array.from({ length: n }, (_, k) => `bench-fwd-${runId}-${tag}-${k.toString(36)}`);
      for (let k = 0; k < ids.length; k += 32) {
        await Promise.all(
          ids.slice(k, k + 32).map(async (id) => {
            const r = await request(`${service.url}/v1/transactions`, {
              method: 'POST',
              dispatcher: checkout,
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ transactionId: id, processor: 'acme', amount: { value: 1299, currency: 'USD' }, paymentMethod: { type: 'card', pan: BENCH_TEST_PAN, expiryMonth: 12, expiryYear, holderName: 'Bench Tester' } }),
            });
            await r.body.dump();
            if (r.statusCode !== 201) throw new Error(`bench submission answered ${r.statusCode}`);
          }),
        );
      }
      return ids;
    };
    const direct: Record<number, Run[]> = { 1: [], 32: [] };
    const forward: Record<number, Run[]> = { 1: [], 32: [] };
    for (let rep = 0; rep < p.reps; rep++) {
      for (const c of CONNECTIONS) {
        const n = p.perRun[c]!;
        ctx.progress(`forward: rep ${rep + 1}/${p.reps}: direct, ${n} requests at ${c} connection(s)`);
        const filled = Array.from({ length: n }, (_, k) => TEMPLATE.replace('{{amount.value}}', '1299').replace('{{amount.currency}}', 'USD').replace('{{card.number}}', BENCH_TEST_PAN).replace('{{card.expiryMonth}}', '12').replace('{{card.expiryYear}}', String(expiryYear)).replace('{{transactionId}}', `direct-${k}`));
        direct[c]!.push(await (c === 1 ? sequential : cannon)({ url: `${echo.url}/v1/payments`, connections: c, bodies: filled, headers: { 'content-type': 'application/json' }, tls: { ca: echo.caPem } }));
        ctx.progress(`forward: rep ${rep + 1}/${p.reps}: submitting ${n} transactions (not timed)`);
        const ids = await submitMany(n, `${rep}-${c}`);
        ctx.progress(`forward: rep ${rep + 1}/${p.reps}: through paylog, ${n} forwards at ${c} connection(s)`);
        if (c === 32) await pgStats(ctx, 'reset');
        const cpu0 = service.cpuSeconds();
        const body = JSON.stringify({ destination: 'bench', method: 'POST', path: '/v1/payments', headers: { 'content-type': 'application/json', authorization: 'Bearer bench' }, body: TEMPLATE, purpose: 'authorize' });
        forward[c]!.push(
          await (c === 1 ? sequential : cannon)({
            url: `${service.url}/v1/transactions/x/forward`,
            connections: c,
            bodies: [body],
            paths: ids.map((id) => `/v1/transactions/${id}/forward`),
            headers: { 'content-type': 'application/json' },
            tls: { ca: service.checkoutTls.ca, cert: service.checkoutTls.cert, key: service.checkoutTls.key },
            keyPrefix: `${runId}-${rep}-${c}`,
          }),
        );
        const cpu1 = service.cpuSeconds();
        const run = forward[c]!.at(-1)!;
        if (c === 32) await pgStats(ctx, 'read', run.ok);
        // CPU per forward (the box is shared: CPU per request is steadier than req/s).
        const per = (a: number | null, b: number | null) => (a === null || b === null || run.ok === 0 ? null : ((b - a) * 1e6) / run.ok);
        run.svcCpuUs = per(cpu0.service, cpu1.service);
        run.pgCpuUs = per(cpu0.postgres, cpu1.postgres);
      }
    }
    ctx.progress('forward: p50 of two sequential single-entry appends (scratch database, same PostgreSQL)');
    const appendsP50 = await twoAppendsP50(ctx);
    const fig = (runs: Run[], k: keyof Run) => {
      const xs = runs.map((r) => r[k]).filter((x): x is number => typeof x === 'number');
      return xs.length ? median(xs) : null;
    };
    const figures: Record<string, number | null> = {
      direct_p50_ms_c1: fig(direct[1]!, 'p50'),
      forward_p50_ms_c1: fig(forward[1]!, 'p50'),
      direct_p99_ms_c1: fig(direct[1]!, 'p99'),
      forward_p99_ms_c1: fig(forward[1]!, 'p99'),
      direct_rps_c32: fig(direct[32]!, 'rps'),
      forward_rps_c32: fig(forward[32]!, 'rps'),
      direct_p50_ms_c32: fig(direct[32]!, 'p50'),
      forward_p50_ms_c32: fig(forward[32]!, 'p50'),
      two_appends_p50_ms: appendsP50,
      forward_svc_cpu_us_c32: fig(forward[32]!, 'svcCpuUs'),
      forward_pg_cpu_us_c32: fig(forward[32]!, 'pgCpuUs'),
      forward_non2xx: [...forward[1]!, ...forward[32]!].reduce((a, r) => a + r.bad, 0),
    };
    figures.overhead_p50_ms_c1 = figures.forward_p50_ms_c1! - figures.direct_p50_ms_c1!;
    figures.overhead_budget_ms_c1 = appendsP50 + 2;
    const submissionRps = ctx.figures['service.rps_c32'] ?? null;
    const table: Cell[][] = [['path', 'connections', 'req/s (2xx)', 'p50 ms', 'p99 ms', 'non-2xx']];
    for (const c of CONNECTIONS) {
      table.push(['direct to the destination', c, fig(direct[c]!, 'rps'), fig(direct[c]!, 'p50'), fig(direct[c]!, 'p99'), direct[c]!.reduce((a, r) => a + r.bad, 0)]);
      table.push(['through paylog (forward)', c, fig(forward[c]!, 'rps'), fig(forward[c]!, 'p50'), fig(forward[c]!, 'p99'), forward[c]!.reduce((a, r) => a + r.bad, 0)]);
    }
    const notes = [
      `p50 overhead at 1 connection: ${figures.overhead_p50_ms_c1!.toFixed(2)} ms; target ≤ p50 of two single-entry appends (${appendsP50.toFixed(2)} ms, same run) + 2 ms = ${figures.overhead_budget_ms_c1!.toFixed(2)} ms: ${figures.overhead_p50_ms_c1! <= figures.overhead_budget_ms_c1! ? 'met' : 'NOT met'}`,
      submissionRps === null
        ? 'forward ÷ submission throughput at 32 connections: the "service" section did not run (see TARGETS when it does)'
        : `forward ÷ submission throughput at 32 connections: ${(figures.forward_rps_c32! / submissionRps).toFixed(2)} (target ≥ 0.5)`,
      `CPU per forward at 32 connections: paylog ${fmtUs(figures.forward_svc_cpu_us_c32)}, PostgreSQL ${fmtUs(figures.forward_pg_cpu_us_c32)}${ctx.figures['service.cpu_us_per_tx_c32'] != null ? `; paylog per submission (service section): ${fmtUs(ctx.figures['service.cpu_us_per_tx_c32'])}` : ''} (CPU per request is steadier than req/s on a shared box)`,
      'each forward: one transaction of its own, its own Idempotency-Key; the echo destination answers the request body (one card number, masked in the answer)',
    ];
    return { table, figures, notes, details: { profile: p, direct, forward } };
  } finally {
    await new Promise((resolve) => {
      echo.server.closeAllConnections();
      echo.server.close(resolve);
    });
    await admin.close();
    await checkout.close();
  }
}

export const forwardSection: BenchSection = {
  id: 'forward',
  title: '1c. Forward — the same request direct vs through paylog (POST /v1/transactions/{id}/forward), same run',
  needs: 'service',
  run: runForward,
};
