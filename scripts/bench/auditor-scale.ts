/**
 * Section "auditor_scale": full verification from tiles at scale, in its own process
 * (./verify-synthetic.ts: the auditor's `verifyTiledLog`, entry bundles of a synthetic leaf
 * format v3 log generated on demand), against raw SHA-256 over the same leaf bytes measured in
 * that process, and the verifier's peak RSS at each size — flat memory means the larger size
 * costs about what the smaller one does. Sizes: 1M and 10M entries (full), 100k and 1M (quick),
 * or PAYLOG_BENCH_SCALE_SIZES (comma-separated).
 */
import { spawn } from 'node:child_process';
import type { BenchContext, BenchSection, Cell, SectionResult } from './core.js';
import { REPO_ROOT } from './service.js';

export const SCALE_PROFILES = { quick: { sizes: [100_000, 1_000_000] }, full: { sizes: [1_000_000, 10_000_000] } } as const;

interface ChildResult {
  size: number;
  ok: boolean;
  entriesVerified: number;
  failures: unknown[];
  meanLeafBytes: number;
  rawPerS: number;
  genPerS: number;
  verifyS: number;
  verifyPerS: number;
  netPerS: number;
  maxRssMiB: number;
}

/** Sizes from PAYLOG_BENCH_SCALE_SIZES or the profile. */
function scaleSizes(profile: readonly number[], env: NodeJS.ProcessEnv = process.env): number[] {
  const v = env.PAYLOG_BENCH_SCALE_SIZES;
  if (v === undefined || v === '') return [...profile];
  const sizes = v.split(',').map((x) => x.trim());
  if (sizes.some((x) => !/^[1-9][0-9]{0,8}$/.test(x))) throw new Error(`PAYLOG_BENCH_SCALE_SIZES must be positive integers, comma-separated; got ${JSON.stringify(v)}`);
  return sizes.map(Number);
}

function verifyChild(size: number): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', 'scripts/bench/verify-synthetic.ts', String(size)], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', reject);
    p.on('close', (code) => {
      try {
        if (code !== 0) throw new Error(`exit ${code}`);
        resolve(JSON.parse(out) as ChildResult);
      } catch (e) {
        reject(new Error(`verify-synthetic ${size}: ${(e as Error).message}: ${err.slice(-800)}`));
      }
    });
  });
}

async function runScale(ctx: BenchContext): Promise<SectionResult> {
  const sizes = scaleSizes(SCALE_PROFILES[ctx.profile].sizes);
  const results: ChildResult[] = [];
  for (const size of sizes) {
    ctx.progress(`auditor_scale: verifying a synthetic tiled log of ${size.toLocaleString('en-US')} entries (own process)`);
    const r = await verifyChild(size);
    if (!r.ok || r.entriesVerified !== size) throw new Error(`synthetic log did not verify at ${size}: ${JSON.stringify(r.failures)}`);
    results.push(r);
  }
  const table: Cell[][] = [['entries', 'raw SHA-256 /s', 'verify-log --tiles /s', '÷ raw', 'net of generation /s', '÷ raw', 'peak RSS MiB']];
  const figures: Record<string, number | null> = {};
  for (const r of results) {
    table.push([r.size, r.rawPerS, r.verifyPerS, `${(r.verifyPerS / r.rawPerS).toFixed(2)}×`, r.netPerS, `${(r.netPerS / r.rawPerS).toFixed(2)}×`, r.maxRssMiB]);
    const k = r.size >= 1e6 ? `${r.size / 1e6}m` : `${r.size / 1e3}k`;
    Object.assign(figures, {
      [`raw_sha256_per_s_${k}`]: r.rawPerS,
      [`tiles_per_s_${k}`]: r.verifyPerS,
      [`tiles_over_raw_${k}`]: r.verifyPerS / r.rawPerS,
      [`tiles_net_over_raw_${k}`]: r.netPerS / r.rawPerS,
      [`rss_mib_${k}`]: r.maxRssMiB,
    });
  }
  const first = results[0]!;
  const last = results[results.length - 1]!;
  figures.tiles_over_raw = last.verifyPerS / last.rawPerS;
  figures.tiles_per_s_largest = last.verifyPerS;
  figures.raw_sha256_per_s_largest = last.rawPerS;
  figures.rss_mib_largest = last.maxRssMiB;
  figures.rss_growth = last.maxRssMiB / first.maxRssMiB;
  return {
    table,
    figures,
    notes: [
      `synthetic leaf format v3 log (an epoch_created key event, card transactions sealed to it, ~30 % access leaves; mean ${Math.round(last.meanLeafBytes)} bytes), verified by verifyTiledLog in its own process with entry bundles generated on demand; "net" subtracts the generation time measured alone in the same process`,
      `issue 20 targets: full verification from tiles ≥ 0.5× raw SHA-256 (now ${(last.verifyPerS / last.rawPerS).toFixed(2)}× gross, ${(last.netPerS / last.rawPerS).toFixed(2)}× net at ${last.size.toLocaleString('en-US')}); flat memory: peak RSS ${Math.round(first.maxRssMiB)} MiB at ${first.size.toLocaleString('en-US')} → ${Math.round(last.maxRssMiB)} MiB at ${last.size.toLocaleString('en-US')} entries`,
    ],
    details: results,
  };
}

export const auditorScaleSection: BenchSection = {
  id: 'auditor_scale',
  title: 'Auditor at scale: verify-log --tiles on a synthetic v3 log vs raw SHA-256, peak RSS',
  needs: 'none',
  run: runScale,
};
