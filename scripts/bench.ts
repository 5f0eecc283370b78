/**
 * `npm run bench [-- --quick] [-- --json <file>] [-- --env KEY=VALUE ...]`
 *
 * One run measures, side by side on the same machine:
 *   1. service throughput (paylog child process, autocannon over mTLS, several concurrencies),
 *   2. the raw single-row durable INSERT rate on the same PostgreSQL server,
 *   3. envelope encryption: paylog vs the AWS Encryption SDK (+ sealEnvelope with local KMS),
 *   4. auditor benchmarks (reserved hooks),
 * then prints the figures, ratios and targets (✓/✗) and the environment. Medians of repeated
 * rounds throughout (the dev box is a noisy 2-core VM). Exit status is non-zero only when
 * something failed to run, never for a missed target.
 *
 * Adding a benchmark = writing one `BenchSection` (scripts/bench/core.ts) and listing it in
 * `SECTIONS`; a cross-section target = one entry in `TARGETS`.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import {
  fmt,
  fmtRatio,
  ratio,
  renderTable,
  type BenchContext,
  type BenchSection,
  type Profile,
  type RatioTarget,
  type SectionResult,
} from './bench/core.js';
import { REPO_ROOT, startService, type ServiceHandle } from './bench/service.js';
import { serviceThroughputSection } from './bench/throughput.js';
import { rawInsertSection } from './bench/raw-insert.js';
import { appenderSection } from './bench/appender.js';
import { envelopeSection } from './bench/envelope.js';
import { auditorInclusionSection, auditorRebuildSection } from './bench/auditor.js';
import { keysSection } from './bench/keys.js';
import { auditorTilesSection, witnessQuorumSection } from './bench/tiles-witness.js';
import { cseSection } from './bench/cse.js';
import { forwardSection } from './bench/forward.js';
import { baseCompareSection } from './bench/base-compare.js';
import { storageSection } from './bench/storage.js';
import { auditorScaleSection, parseScaleSizes } from './bench/auditor-scale.js';
import { profileTable, summariseCpuProfiles, type ProfileSummary } from './bench/cpu-profile.js';

/**
 * Every section, in print order. Sections with `needs: 'service'` run first, while the paylog
 * child is up; the others run after it has stopped (so CPU-bound micro-benchmarks get a quiet box).
 */
export const SECTIONS: BenchSection[] = [
  serviceThroughputSection,
  cseSection,
  forwardSection,
  rawInsertSection,
  appenderSection,
  envelopeSection,
  auditorRebuildSection,
  auditorInclusionSection,
  keysSection,
  auditorTilesSection,
  witnessQuorumSection,
  auditorScaleSection,
  storageSection,
  baseCompareSection,
];

/** Targets checked at the end (figure keys are `<section id>.<figure>`). */
export const TARGETS: RatioTarget[] = [
  { label: 'forward: forward ÷ submission req/s, 32 connections (issue 18)', numerator: 'forward.forward_rps_c32', denominator: 'service.rps_c32', min: 0.5 },
  { label: 'forward: p50 overhead budget (two single-entry appends + 2 ms) ÷ p50 overhead, 1 connection (issue 18)', numerator: 'forward.overhead_budget_ms_c1', denominator: 'forward.overhead_p50_ms_c1', min: 1.0 },
  { label: 'keys: hierarchical ÷ per-transaction req/s, 1 worker', numerator: 'keys.hier_w1_rps', denominator: 'keys.pertx_w1_rps', min: 1.5 },
  { label: 'keys: hierarchical all workers ÷ per-transaction 1 worker req/s', numerator: 'keys.hier_w2_rps', denominator: 'keys.pertx_w1_rps', min: 2.5 },
  { label: 'keys: hierarchical 1 worker ÷ raw INSERT, 8 clients', numerator: 'keys.hier_w1_rps', denominator: 'keys.hier_w1_raw8_rows_per_s', min: 1.0 },
  { label: 'keys: hierarchical all workers ÷ raw INSERT, 8 clients', numerator: 'keys.hier_w2_rps', denominator: 'keys.hier_w2_raw8_rows_per_s', min: 1.0 },
  { label: 'service (all workers) best req/s ÷ raw INSERT, 8 clients, same server', numerator: 'service.best_rps', denominator: 'service.raw8_rows_per_s' },
  {
    label: 'group commit: service best req/s ÷ raw single-row INSERT rows/s',
    numerator: 'service.best_rps',
    denominator: 'raw_insert.rows_per_s',
    min: 1.0,
  },
  {
    label: 'group-commit engine alone: LogAppender best entries/s ÷ raw INSERT rows/s',
    numerator: 'appender.best_entries_per_s',
    denominator: 'raw_insert.rows_per_s',
  },
  {
    label: 'envelope: paylog encryptWithDataKey ÷ ESDK encrypt (ops/s)',
    numerator: 'envelope.paylog_ops_per_s',
    denominator: 'envelope.esdk_ops_per_s',
    min: 25,
  },
  {
    label: 'auditor: full verifyLog entries/s ÷ raw SHA-256 over the same leaves',
    numerator: 'auditor_rebuild.rebuild_entries_per_s',
    denominator: 'auditor_rebuild.raw_sha256_per_s',
    min: 0.5,
  },
  {
    label: 'auditor at scale: verify-log --tiles ÷ raw SHA-256, largest size (CPU time)',
    numerator: 'auditor_scale.tiles_cpu_per_s_largest',
    denominator: 'auditor_scale.raw_sha256_cpu_per_s_largest',
    min: 0.5,
  },
  { label: 'auditor at scale: the same in wall time', numerator: 'auditor_scale.tiles_per_s_largest', denominator: 'auditor_scale.raw_sha256_per_s_largest' },
  {
    label: 'auditor: verify-log from tiles ÷ from the entries API (entries/s)',
    numerator: 'auditor_tiles.tiles_per_s',
    denominator: 'auditor_tiles.entries_api_per_s',
  },
  {
    label: 'client-side encryption: JWE submissions ÷ plaintext submissions (req/s, same run)',
    numerator: 'cse.encrypted_rps',
    denominator: 'cse.plaintext_rps',
  },
  {
    label: 'auditor: tree rebuild alone (StreamingTreeBuilder) ÷ raw SHA-256',
    numerator: 'auditor_rebuild.tree_rebuild_entries_per_s',
    denominator: 'auditor_rebuild.raw_sha256_per_s',
  },
];

interface Args {
  profile: Profile;
  /** Section ids to run (default: all). */
  only?: string[];
  json?: string;
  env: Record<string, string>;
  base?: string;
  auditorEntries?: number[];
}

const USAGE = `usage: npm run bench -- [--quick] [--json <file>] [--env KEY=VALUE ...] [--only ids] [--base <git-ref>] [--auditor-entries n,...]
  --quick         ~30 s run (1 repetition, short rounds); default is the full ~2-3 min run
  --json <file>   also write every figure (and per-repetition details) as JSON
  --env K=V       extra environment for the paylog child (e.g. PAYLOG_BATCH_LINGER_MS=2)
  --only a,b      run only these section ids (service, raw_insert, appender, envelope, ...)
  --base <ref>    section "base": the service of <ref> (a temporary git worktree) vs this tree,
                  same driver, interleaved (base, head, base, head, …; medians)
  --auditor-entries n,…  sizes of the synthetic logs of section auditor_scale (default 1000000,10000000;
                  --quick: 100000,1000000), e.g. --only auditor_scale --auditor-entries 10000000
environment: DATABASE_URL=<superuser URL> runs every service on that (external) server, a fresh
  database each, instead of embedded PostgreSQL; BENCH_CPU_PROF_DIR=<dir> profiles every paylog
  process and prints the top self-time entries`;

function parseCli(argv: string[]): Args {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      json: { type: 'string' },
      env: { type: 'string', multiple: true, default: [] },
      only: { type: 'string' },
      base: { type: 'string' },
      'auditor-entries': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    process.exit(0);
  }
  const env: Record<string, string> = {};
  for (const kv of values.env ?? []) {
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(kv);
    if (!m) throw new Error(`--env expects KEY=VALUE, got ${kv}`);
    env[m[1]!] = m[2]!;
  }
  const only = values.only?.split(',').map((x) => x.trim()).filter(Boolean);
  const unknown = only?.filter((id) => !SECTIONS.some((s) => s.id === id)) ?? [];
  if (unknown.length) throw new Error(`unknown section id(s) ${unknown.join(', ')}; known: ${SECTIONS.map((s) => s.id).join(', ')}`);
  const auditorEntries = values['auditor-entries'] !== undefined ? parseScaleSizes(values['auditor-entries'], '--auditor-entries') : undefined;
  return {
    profile: values.quick ? 'quick' : 'full',
    ...(values.json ? { json: values.json } : {}),
    ...(only ? { only } : {}),
    ...(values.base ? { base: values.base } : {}),
    ...(auditorEntries ? { auditorEntries } : {}),
    env,
  };
}

function environment(): Record<string, string | number> {
  const cpu = cpus();
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    /* not a git checkout */
  }
  return {
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpu: cpu[0]?.model.trim() ?? 'unknown',
    cores: cpu.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    loadAvg1mAtStart: Math.round(loadavg()[0]! * 100) / 100,
    commit,
    database: process.env.DATABASE_URL ? 'external PostgreSQL (DATABASE_URL)' : 'embedded PostgreSQL',
  };
}

interface SectionRecord {
  section: BenchSection;
  result?: SectionResult;
  error?: string;
  seconds: number;
}

async function runSection(section: BenchSection, ctx: BenchContext, figures: Record<string, number | null>): Promise<SectionRecord> {
  const t0 = performance.now();
  try {
    const result = await section.run(ctx);
    for (const [k, v] of Object.entries(result.figures)) figures[`${section.id}.${k}`] = v;
    return { section, result, seconds: (performance.now() - t0) / 1000 };
  } catch (e) {
    const err = e as Error;
    const died = ctx.service?.exitInfo();
    const message = (err?.message ?? String(e)) + (died ? `\n  ${died.trim().replace(/\n/g, '\n  ')}` : '');
    ctx.progress(`section ${section.id} FAILED: ${err?.stack ?? String(e)}`);
    return { section, error: message, seconds: (performance.now() - t0) / 1000 };
  }
}

function report(env: Record<string, string | number>, args: Args, records: SectionRecord[], figures: Record<string, number | null>, totalS: number, profile?: ProfileSummary): string {
  const out: string[] = [];
  out.push(`paylog benchmark — profile ${args.profile}${Object.keys(args.env).length ? `, service env ${JSON.stringify(args.env)}` : ''}`);
  out.push(`environment: node ${env.node}, ${env.platform}, CPU ${env.cpu} × ${env.cores} cores, ${env.memoryGiB} GiB, load avg ${env.loadAvg1mAtStart} at start, commit ${env.commit}, ${env.database}`);
  for (const r of records) {
    out.push('', `== ${r.section.title}  [${r.seconds.toFixed(1)} s]`);
    if (r.error) {
      out.push(`  ERROR: ${r.error}`);
      continue;
    }
    out.push(renderTable(r.result!.table));
    for (const n of r.result!.notes ?? []) out.push(`  · ${n}`);
  }
  out.push('', '== Ratios and targets');
  const rows: (string | number | null)[][] = [['ratio', 'numerator', 'denominator', 'ratio', 'target', '']];
  for (const t of TARGETS) {
    const v = ratio(figures[t.numerator], figures[t.denominator]);
    const verdict = t.min === undefined ? 'info' : v == null ? '?' : v >= t.min ? '✓' : '✗';
    rows.push([t.label, fmt(figures[t.numerator]), fmt(figures[t.denominator]), fmtRatio(v), t.min === undefined ? '—' : `≥ ${t.min}×`, verdict]);
  }
  out.push(renderTable(rows));
  if (profile) {
    out.push('', `== CPU profile: top self time, ${profile.files} profile(s) in BENCH_CPU_PROF_DIR from this run (every paylog process, start-up included), ${profile.totalSeconds.toFixed(1)} s sampled`);
    out.push(renderTable(profileTable(profile)));
  }
  out.push('', `total ${totalS.toFixed(1)} s`);
  return out.join('\n') + '\n';
}

async function main(): Promise<number> {
  const args = parseCli(process.argv.slice(2));
  const env = environment();
  const startedAt = Date.now();
  const t0 = performance.now();
  const figures: Record<string, number | null> = {};
  const progress = (m: string) => process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(0).padStart(3)} s] ${m}\n`);
  const records: SectionRecord[] = [];

  let service: ServiceHandle | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    progress(`${sig}: stopping the paylog child`);
    void (service?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const selected = SECTIONS.filter((s) => !args.only || args.only.includes(s.id));
  const withService = selected.filter((s) => s.needs === 'service');
  const without = selected.filter((s) => s.needs === 'none');
  let startError: string | undefined;
  if (withService.length > 0) {
    try {
      service = await startService({ env: args.env, progress });
      const ctx: BenchContext = { profile: args.profile, service, figures, progress, serviceEnv: args.env, ...(args.base ? { baseRef: args.base } : {}), ...(args.auditorEntries ? { auditorEntries: args.auditorEntries } : {}) };
      for (const s of withService) records.push(await runSection(s, ctx, figures));
    } catch (e) {
      startError = (e as Error)?.message ?? String(e);
      progress(`could not start paylog: ${startError}`);
      for (const s of withService) if (!records.some((r) => r.section === s)) records.push({ section: s, error: `service not started: ${startError}`, seconds: 0 });
    } finally {
      progress('stopping the paylog child (SIGTERM) and removing its data dir');
      await service?.stop();
      service = undefined;
    }
  }
  const ctx: BenchContext = { profile: args.profile, figures, progress, serviceEnv: args.env, ...(args.base ? { baseRef: args.base } : {}), ...(args.auditorEntries ? { auditorEntries: args.auditorEntries } : {}) };
  for (const s of without) records.push(await runSection(s, ctx, figures));

  // Print in SECTIONS order regardless of run order.
  records.sort((a, b) => SECTIONS.indexOf(a.section) - SECTIONS.indexOf(b.section));
  const totalS = (performance.now() - t0) / 1000;
  const profDir = process.env.BENCH_CPU_PROF_DIR;
  let profile: ProfileSummary | undefined;
  if (profDir) {
    try {
      profile = summariseCpuProfiles(profDir, startedAt);
    } catch (e) {
      progress(`cannot read the CPU profiles in ${profDir}: ${(e as Error).message}`);
    }
  }
  process.stdout.write(report(env, args, records, figures, totalS, profile));

  if (args.json) {
    const json = {
      profile: args.profile,
      serviceEnv: args.env,
      environment: env,
      totalSeconds: totalS,
      figures,
      ...(profile ? { cpuProfile: profile } : {}),
      targets: TARGETS.map((t) => {
        const value = ratio(figures[t.numerator], figures[t.denominator]);
        return { ...t, value, met: t.min === undefined || value == null ? null : value >= t.min };
      }),
      sections: Object.fromEntries(
        records.map((r) => [
          r.section.id,
          { title: r.section.title, status: r.error ? 'error' : (r.result?.status ?? 'ok'), seconds: r.seconds, error: r.error, figures: r.result?.figures, notes: r.result?.notes, details: r.result?.details },
        ]),
      ),
    };
    writeFileSync(args.json, JSON.stringify(json, null, 2) + '\n');
    progress(`figures written to ${args.json}`);
  }
  return records.some((r) => r.error) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`bench: ${(e as Error)?.message ?? String(e)}\n${USAGE}\n`);
    process.exit(2);
  },
);
