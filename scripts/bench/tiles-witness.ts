/**
 * Sections for C2SP tlog-tiles and witnesses (issue 10):
 *
 * - `auditor_tiles`: full `verify-log` from tiles vs from the entries API on the same log, over
 *   real HTTPS with the auditor certificate, plus raw SHA-256 over the same leaf bytes (the floor
 *   of any verifier). The log is seeded server-side like `auditor_inclusion_1m` (same populate)
 *   in a scratch database; an in-process paylog on it signs the checkpoint with its KMS key.
 *   The verifier runs as the auditor runs it: `scripts/verify-log.ts` in its own process (so it
 *   does not share an event loop with the server); the time is the child's wall time, start-up
 *   (~1 s, measured with `--help`) subtracted. The tiles client asks for gzip, so the tiles
 *   figure includes the service compressing entry bundles and the verifier decompressing them;
 *   the bytes of one full bundle, identity and gzip, are reported beside it.
 *   The raw SHA-256 floor builds the leaf bytes chunk by chunk (untimed) and times only the
 *   hashing, so 1M leaves never sit in memory at once.
 *   Size: PAYLOG_BENCH_TILES_SIZE (a positive integer, e.g. 2000 for a smoke run), else 1M
 *   (full) / 200k (quick).
 * - `witness_quorum`: two in-process witnesses on loopback; the service signs a checkpoint after
 *   each small batch and the time from signing to the quorum (both cosignatures stored and the
 *   checkpoint servable) is recorded per checkpoint: p50/p99.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPaylog, type Paylog } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { applyMigrations, createDatabase, dropDatabase } from '../../src/db/connection.js';
import { spawn } from 'node:child_process';
import { REPO_ROOT } from './service.js';
import { encodeLeaf } from '../../src/log/leaf.js';
import { startWitness } from '../../src/log/witness/witness.js';
import { request as httpsRequest } from 'node:https';
import { Writable } from 'node:stream';
import { leafTemplate, populate } from './auditor-inclusion.js';
import { median, type BenchContext, type BenchSection, type Cell, type SectionResult } from './core.js';

export const TILES_PROFILES = { quick: { size: 200_000, rounds: 1 }, full: { size: 1_000_000, rounds: 2 } } as const;
export const QUORUM_PROFILES = { quick: { checkpoints: 100 }, full: { checkpoints: 400 } } as const;

/** The in-process services' log lines are dropped (the bench prints only its figures). */
const sink = () => new Writable({ write: (_c, _e, cb) => cb() });

function percentile(values: readonly number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

async function inProcessPaylog(databaseUrl: string, env: Record<string, string> = {}): Promise<{ paylog: Paylog; dataDir: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'paylog-bench-tw-'));
  const config = loadConfig({ PAYLOG_DATA_DIR: dataDir, PAYLOG_PORT: '0', DATABASE_URL: databaseUrl, PAYLOG_LOG_LEVEL: 'warn', ...env });
  const paylog = await startPaylog(config, { logDestination: sink(), retentionSchedule: false });
  return { paylog, dataDir };
}

/** Runs `scripts/verify-log.ts` in a child process; resolves with its wall time and JSON report. */
function verifyLogChild(args: string[]): Promise<{ seconds: number; report: any; code: number }> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const p = spawn(process.execPath, ['--import', 'tsx', 'scripts/verify-log.ts', ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', reject);
    p.on('close', (code) => {
      const seconds = (performance.now() - t) / 1000;
      let report: any;
      try {
        report = out.trim() ? JSON.parse(out) : undefined;
      } catch {
        report = undefined;
      }
      if (report === undefined && !args.includes('--help')) reject(new Error(`verify-log exited ${code}: ${err.slice(-500)}`));
      else resolve({ seconds, report, code: code ?? -1 });
    });
  });
}

/** Leaves built (untimed) per chunk of the raw SHA-256 floor. */
const RAW_CHUNK = 16_384;

/** RFC 9162 leaf hashes per second over exactly the bytes hashed for each leaf (0x00 ‖ leaf); only hashing is timed. */
function rawSha256Rate(size: number): number {
  const { prefix, suffix } = leafTemplate();
  let ms = 0;
  for (let start = 0; start < size; start += RAW_CHUNK) {
    const chunk: Buffer[] = [];
    for (let i = start; i < Math.min(size, start + RAW_CHUNK); i++) chunk.push(Buffer.concat([Buffer.from([0]), Buffer.from(prefix + i + suffix, 'utf8')]));
    const t = performance.now();
    for (const b of chunk) createHash('sha256').update(b).digest();
    ms += performance.now() - t;
  }
  return size / (ms / 1000);
}

/** Size of the section's log: PAYLOG_BENCH_TILES_SIZE or the profile's. */
export function tilesBenchSize(profileSize: number, env: NodeJS.ProcessEnv = process.env): number {
  const v = env.PAYLOG_BENCH_TILES_SIZE;
  if (v === undefined || v === '') return profileSize;
  if (!/^[1-9][0-9]{0,8}$/.test(v)) throw new Error(`PAYLOG_BENCH_TILES_SIZE must be a positive integer (entries), got ${JSON.stringify(v)}`);
  return Number(v);
}

/** Bytes on the wire for one entry bundle, without and with `Accept-Encoding: gzip`. */
async function bundleWireBytes(paylog: Paylog, path: string): Promise<{ identity: number; gzip: number }> {
  const pki = paylog.devPki!;
  const a = pki.principals['auditor']!;
  const tls = { ca: readFileSync(pki.caPath), cert: readFileSync(a.certPath), key: readFileSync(a.keyPath) };
  const get = (acceptEncoding?: string) =>
    new Promise<number>((resolve, reject) => {
      const req = httpsRequest(`${paylog.url}/v1/log/tiles/${path}`, { ...tls, headers: acceptEncoding ? { 'accept-encoding': acceptEncoding } : {} }, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => (n += c.length));
        res.on('end', () => (res.statusCode === 200 ? resolve(n) : reject(new Error(`GET ${path}: ${res.statusCode}`))));
      });
      req.on('error', reject);
      req.end();
    });
  return { identity: await get(), gzip: await get('gzip') };
}

async function runAuditorTiles(ctx: BenchContext): Promise<SectionResult> {
  if (!ctx.service) throw new Error('auditor_tiles needs the service (its PostgreSQL server)');
  const p = TILES_PROFILES[ctx.profile];
  const size = tilesBenchSize(p.size);
  const dbName = `paylog_bench_tiles_${randomBytes(3).toString('hex')}`;
  const url = await createDatabase(ctx.service.pgAdminUrl(), dbName);
  let started: { paylog: Paylog; dataDir: string } | undefined;
  try {
    await applyMigrations(url);
    const t0 = performance.now();
    await populate(ctx, url, size);
    const populateS = (performance.now() - t0) / 1000;
    started = await inProcessPaylog(url);
    const { paylog } = started;
    const pki = paylog.devPki!;
    const a = pki.principals['auditor']!;
    const args = ['--url', paylog.url, '--cacert', pki.caPath, '--cert', a.certPath, '--key', a.keyPath, '--log-key', paylog.logKeys[0]!.vkey, '--json'];
    const startup = (await verifyLogChild(['--help'])).seconds;

    const rawRates: number[] = [];
    const apiRates: number[] = [];
    const tileRates: number[] = [];
    for (let round = 0; round < p.rounds; round++) {
      rawRates.push(rawSha256Rate(size));

      // The service on this log may append its own entries meanwhile (the retention job's
      // `retention_run` a minute after start): at least `size` entries must verify.
      ctx.progress(`auditor_tiles: round ${round + 1}: verify-log from the entries API (${size.toLocaleString('en-US')} entries)`);
      const viaApi = await verifyLogChild(args);
      if (!viaApi.report?.ok || !(viaApi.report.entriesVerified >= size)) throw new Error(`entries API verification failed (ok ${viaApi.report?.ok}, ${viaApi.report?.entriesVerified} of ${size} entries): ${JSON.stringify(viaApi.report?.failures?.slice(0, 2))}`);
      apiRates.push(viaApi.report.entriesVerified / Math.max(0.001, viaApi.seconds - startup));

      ctx.progress(`auditor_tiles: round ${round + 1}: verify-log --tiles`);
      const viaTiles = await verifyLogChild([...args, '--tiles']);
      if (!viaTiles.report?.ok || !(viaTiles.report.entriesVerified >= size)) throw new Error(`tiles verification failed (ok ${viaTiles.report?.ok}, ${viaTiles.report?.entriesVerified} of ${size} entries): ${JSON.stringify(viaTiles.report?.failures?.slice(0, 2))}`);
      tileRates.push(viaTiles.report.entriesVerified / Math.max(0.001, viaTiles.seconds - startup));
    }
    const wire = await bundleWireBytes(paylog, size >= 256 ? 'tile/entries/000' : `tile/entries/000.p/${size}`);
    const rawRate = median(rawRates);
    const api = median(apiRates);
    const tiles = median(tileRates);
    const table: Cell[][] = [
      [`full verification, ${size.toLocaleString('en-US')} entries`, 'entries/s (median)', '÷ raw SHA-256'],
      ['raw SHA-256 over the same leaf bytes', rawRate, 1],
      ['verify-log via /v1/log/entries (own process, HTTPS, pages of 1000)', api, api / rawRate],
      ['verify-log --tiles (own process, HTTPS, gzip entry bundles)', tiles, tiles / rawRate],
    ];
    return {
      table,
      figures: {
        size,
        raw_sha256_per_s: rawRate,
        entries_api_per_s: api,
        tiles_per_s: tiles,
        tiles_over_api: tiles / api,
        entries_api_over_raw: api / rawRate,
        tiles_over_raw: tiles / rawRate,
        bundle_identity_bytes: wire.identity,
        bundle_gzip_bytes: wire.gzip,
        populate_s: populateS,
      },
      notes: [
        `tiles ÷ entries API: ${(tiles / api).toFixed(2)}×; ${p.rounds} round(s); verifier start-up ${startup.toFixed(1)} s subtracted; populate ${populateS.toFixed(1)} s (not timed above)`,
        `first entry bundle on the wire: ${wire.identity.toLocaleString('en-US')} bytes identity, ${wire.gzip.toLocaleString('en-US')} bytes gzip (${(wire.gzip / wire.identity).toFixed(2)}×)`,
      ],
    };
  } finally {
    await started?.paylog.close();
    if (started) rmSync(started.dataDir, { recursive: true, force: true });
    await dropDatabase(ctx.service.pgAdminUrl(), dbName).catch(() => {});
  }
}

async function runWitnessQuorum(ctx: BenchContext): Promise<SectionResult> {
  if (!ctx.service) throw new Error('witness_quorum needs the service (its PostgreSQL server)');
  const p = QUORUM_PROFILES[ctx.profile];
  const admin = ctx.service.pgAdminUrl();
  const dbName = `paylog_bench_witness_${randomBytes(3).toString('hex')}`;
  const url = await createDatabase(admin, dbName);
  const dirs: string[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  try {
    const first = await inProcessPaylog(url);
    const vkey = first.paylog.logKeys[0]!.vkey;
    const dataDir = first.dataDir;
    await first.paylog.close();
    const witnesses = [];
    for (const n of [1, 2]) {
      const d = mkdtempSync(join(tmpdir(), 'paylog-bench-witness-'));
      dirs.push(d);
      const w = await startWitness({ host: '127.0.0.1', port: 0, dataDir: d, name: `bench.witness/w${n}`, logVkeys: [vkey] });
      cleanups.push(() => w.close());
      witnesses.push(w);
    }
    const config = loadConfig({
      PAYLOG_DATA_DIR: dataDir,
      PAYLOG_PORT: '0',
      DATABASE_URL: url,
      PAYLOG_LOG_LEVEL: 'warn',
      PAYLOG_WITNESSES: witnesses.map((w) => `${w.url} ${w.witness.vkey}`).join(','),
      PAYLOG_WITNESS_QUORUM: '2',
    });
    const paylog = await startPaylog(config, { logDestination: sink(), retentionSchedule: false });
    cleanups.unshift(() => paylog.close());
    dirs.push(dataDir);
    const latencies = new Map<number, number>();
    let waiting: { size: number; resolve: () => void } | undefined;
    paylog.witnesses!.onQuorum((size, ms) => {
      latencies.set(size, ms);
      if (waiting && size >= waiting.size) waiting.resolve();
    });
    ctx.progress(`witness_quorum: ${p.checkpoints} checkpoints, two local witnesses`);
    let n = 0;
    for (let k = 0; k < p.checkpoints; k++) {
      await Promise.all(
        Array.from({ length: 8 }, () =>
          paylog.appender.append({ kind: 'key_event', leaf: encodeLeaf({ v: 1, type: 'key_event', time: new Date().toISOString(), event: 'shred', keyName: `b${n++}` }), createdAt: new Date() }),
        ),
      );
      const c = await paylog.checkpoints.publish();
      if (!c) throw new Error('checkpoint not signed');
      if (!latencies.has(c.size)) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`checkpoint ${c.size} did not reach the quorum in 10 s`)), 10_000);
          waiting = { size: c.size, resolve: () => (clearTimeout(timer), resolve()) };
        });
      }
    }
    const ms = [...latencies.values()];
    return {
      table: [
        ['checkpoint → quorum (2 of 2 local witnesses)', 'checkpoints', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'],
        ['sign → both cosignatures stored and servable', ms.length, median(ms), percentile(ms, 90), percentile(ms, 99), Math.max(...ms)],
      ],
      figures: { checkpoints: ms.length, p50_ms: median(ms), p99_ms: percentile(ms, 99) },
      notes: ['goal: p99 ≤ 2,000 ms; witnesses fsync their state before answering'],
    };
  } finally {
    for (const c of cleanups) await c().catch(() => {});
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    await dropDatabase(admin, dbName).catch(() => {});
  }
}

export const auditorTilesSection: BenchSection = {
  id: 'auditor_tiles',
  title: 'auditor: full verification from tiles vs entries API vs raw SHA-256',
  needs: 'service',
  run: runAuditorTiles,
};

export const witnessQuorumSection: BenchSection = {
  id: 'witness_quorum',
  title: 'witnesses: checkpoint-to-quorum latency, two local witnesses',
  needs: 'service',
  run: runWitnessQuorum,
};
