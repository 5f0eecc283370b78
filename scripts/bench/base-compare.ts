/**
 * Section "base" (`npm run bench -- --base <git-ref>`): the service of another commit against
 * this tree's, measured by the SAME driver in the same run. The ref is checked out into a
 * temporary git worktree (node_modules symlinked to this tree's), and each configuration
 * (hierarchical keys, 1 and 2 workers) is started fresh from base, then from head, then base,
 * head, … (one pair per round), each loaded at the profile's connection counts after a warm-up.
 * Printed per configuration and side: req/s, p50/p99 and µs of service CPU per submission (all
 * its processes, scripts/bench/service.ts), medians over rounds, and head ÷ base ratios —
 * the "base vs new" figures of issue 20.
 *
 * Then the auditor: base's `verifyLog` (imported from the worktree) and this tree's, in this
 * process, over the same synthetic leaf format v3 leaves (./synthetic-log.ts) with raw SHA-256
 * over the same bytes, rounds interleaved (raw, base, head); both reports must be ok and agree.
 */
import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { verifyLog as verifyLogHead, type VerifyLogInput, type VerifyReport } from '../../src/audit/index.js';
import { formatCheckpointBody } from '../../src/log/checkpoint.js';
import { hashLeaf, StreamingTreeBuilder } from '../../src/log/merkle.js';
import { signNote } from '../../src/log/note.js';
import { syntheticLeafSource } from './synthetic-log.js';
import { mkdtempSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { median, ratio, type BenchContext, type BenchSection, type Cell, type SectionResult } from './core.js';
import { REPO_ROOT, startService } from './service.js';
import { loadRun, type LoadRun } from './throughput.js';

/**
 * Each fresh service is warmed up at the first measured concurrency before anything is timed:
 * its first seconds cost more per submission (V8 compiles the hot paths, once per worker process,
 * on background threads that count as service CPU; the new database's first tiles and vacuums).
 * Measured (stop 27, one service, 32 connections, 8 s runs after 3 s at 8 connections): 2 workers
 * 671 µs/tx in the first run, 524–557 in the next four; 1 worker 513, then 407–437. With 3 s at 8
 * connections as the only warm-up, the 2-worker figure at 32 connections was mostly this cold
 * cost (969 µs/tx). The warm-up run's own figures are printed too (not in the ratios).
 */
export const BASE_PROFILES = {
  quick: { rounds: 1, seconds: 4, warmupSeconds: 3, concurrencies: [32], workers: [1, 2] },
  full: { rounds: 3, seconds: 8, warmupSeconds: 10, concurrencies: [32, 128], workers: [1, 2] },
} as const;
export const BASE_AUDITOR_PROFILES = { quick: { leaves: 50_000, rounds: 3 }, full: { leaves: 200_000, rounds: 5 } } as const;

type VerifyLogFn = (input: VerifyLogInput) => Promise<VerifyReport>;

/** Entries/s of raw SHA-256, base verifyLog and head verifyLog over the same v3 leaves (medians of interleaved rounds). */
async function auditorAB(baseRoot: string, p: { leaves: number; rounds: number }): Promise<{ raw: number; base: number; head: number }> {
  const mod = (await import(pathToFileURL(`${baseRoot}/src/audit/run.ts`).href)) as { verifyLog: VerifyLogFn };
  const leafAt = syntheticLeafSource();
  const leaves = Array.from({ length: p.leaves }, (_, i) => leafAt(i));
  const prefixed = leaves.map((l) => Buffer.concat([Buffer.from([0]), l]));
  const tree = new StreamingTreeBuilder();
  for (const l of leaves) tree.push(hashLeaf(l));
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url');
  const origin = 'paylog.bench/ab';
  const checkpoint = await signNote(formatCheckpointBody({ origin, size: leaves.length, rootHash: tree.root() }), [{ name: origin, publicKey: raw, sign: async (m) => cryptoSign(null, m, privateKey) }]);
  async function* entries() {
    for (let i = 0; i < leaves.length; i++) yield { index: i, leaf: leaves[i]! };
  }
  const rates = { raw: [] as number[], base: [] as number[], head: [] as number[] };
  const timeVerify = async (f: VerifyLogFn) => {
    const t = performance.now();
    const r = await f({ checkpoint, verifiers: [{ name: origin, publicKey: raw }], entries: entries() });
    if (!r.ok) throw new Error(`verifyLog did not verify the synthetic log: ${r.failures.slice(0, 2).map((x) => x.code).join(', ')}`);
    return { rate: leaves.length / ((performance.now() - t) / 1000), r };
  };
  for (let round = 0; round < p.rounds; round++) {
    const t = performance.now();
    for (const b of prefixed) createHash('sha256').update(b).digest();
    rates.raw.push(leaves.length / ((performance.now() - t) / 1000));
    const b = await timeVerify(mod.verifyLog);
    const h = await timeVerify(verifyLogHead);
    if (JSON.stringify([b.r.leafTypes, b.r.shredded, b.r.epochKeys]) !== JSON.stringify([h.r.leafTypes, h.r.shredded, h.r.epochKeys])) throw new Error('base and head verifyLog reports differ');
    rates.base.push(b.rate);
    rates.head.push(h.rate);
  }
  return { raw: median(rates.raw), base: median(rates.base), head: median(rates.head) };
}

type Side = 'base' | 'head';

/** `git worktree add --detach` of `ref` in a temp dir, node_modules linked; returns its path and a remover. */
function checkoutBase(ref: string): { root: string; commit: string; remove(): void } {
  const git = (...a: string[]) => execFileSync('git', a, { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  const commit = git('rev-parse', '--verify', `${ref}^{commit}`);
  const parent = mkdtempSync(join(tmpdir(), 'paylog-bench-base-'));
  const root = join(parent, 'tree');
  git('worktree', 'add', '--detach', root, commit);
  symlinkSync(realpathSync(join(REPO_ROOT, 'node_modules')), join(root, 'node_modules'));
  return {
    root,
    commit: commit.slice(0, 12),
    remove: () => {
      try {
        git('worktree', 'remove', '--force', root);
      } catch {
        rmSync(root, { recursive: true, force: true });
        git('worktree', 'prune');
      }
      rmSync(parent, { recursive: true, force: true });
    },
  };
}

async function runBase(ctx: BenchContext): Promise<SectionResult> {
  if (!ctx.baseRef) {
    return { status: 'hook', table: [['base comparison'], ['not run: pass --base <git-ref>']], figures: {} };
  }
  const p = BASE_PROFILES[ctx.profile];
  const base = checkoutBase(ctx.baseRef);
  const runs: { side: Side; workers: number; run: LoadRun }[] = [];
  const warmups: { side: Side; workers: number; run: LoadRun }[] = [];
  const auditor: { raw?: number; base?: number; head?: number } = {};
  let auditorError: string | undefined;
  try {
    for (let round = 0; round < p.rounds; round++) {
      for (const workers of p.workers) {
        for (const side of ['base', 'head'] as const) {
          ctx.progress(`base: round ${round + 1}/${p.rounds}, ${workers} worker(s), ${side} (${side === 'base' ? base.commit : 'this tree'})`);
          const service = await startService({
            env: { PAYLOG_KEY_MODE: 'hierarchical', PAYLOG_WORKERS: String(workers), ...ctx.serviceEnv },
            progress: ctx.progress,
            ...(side === 'base' ? { root: base.root } : {}),
          });
          try {
            warmups.push({ side, workers, run: await loadRun(service, p.concurrencies[0], p.warmupSeconds, -1) });
            for (const c of p.concurrencies) runs.push({ side, workers, run: await loadRun(service, c, p.seconds, round) });
          } finally {
            await service.stop();
          }
        }
      }
    }
    ctx.progress('base: auditor verifyLog, base vs head, in this process');
    try {
      const ab = await auditorAB(base.root, BASE_AUDITOR_PROFILES[ctx.profile]);
      Object.assign(auditor, ab);
    } catch (e) {
      auditorError = (e as Error).message;
    }
  } finally {
    base.remove();
  }
  const pick = (side: Side, workers: number, c: number) => runs.filter((r) => r.side === side && r.workers === workers && r.run.concurrency === c).map((r) => r.run);
  const med = (rs: LoadRun[], f: (r: LoadRun) => number | null) => {
    const v = rs.map(f).filter((x): x is number => x !== null);
    return v.length ? median(v) : null;
  };
  const table: Cell[][] = [['workers', 'connections', 'side', 'req/s', 'p50 ms', 'p99 ms', 'svc CPU µs/tx', 'svc CPU %', 'non-2xx']];
  const figures: Record<string, number | null> = {};
  const notes: string[] = [];
  for (const workers of p.workers) {
    for (const c of p.concurrencies) {
      const at: Record<Side, { rps: number | null; p50: number | null; p99: number | null; cpu: number | null }> = { base: { rps: null, p50: null, p99: null, cpu: null }, head: { rps: null, p50: null, p99: null, cpu: null } };
      for (const side of ['base', 'head'] as const) {
        const rs = pick(side, workers, c);
        const x = { rps: med(rs, (r) => r.rps), p50: med(rs, (r) => r.p50ms), p99: med(rs, (r) => r.p99ms), cpu: med(rs, (r) => r.serviceCpuUsPerTx) };
        at[side] = x;
        table.push([workers, c, side === 'base' ? `base ${base.commit}` : 'head', x.rps, x.p50, x.p99, x.cpu, med(rs, (r) => r.serviceCpuPct), rs.reduce((n, r) => n + r.non2xx + r.errors + r.timeouts, 0)]);
        for (const [k, v] of Object.entries(x)) figures[`w${workers}_c${c}_${side}_${k}`] = v;
      }
      const r = { rps: ratio(at.head.rps, at.base.rps), p99: ratio(at.head.p99, at.base.p99), cpu: ratio(at.head.cpu, at.base.cpu) };
      table.push([workers, c, 'head ÷ base', r.rps === null ? '—' : `${r.rps.toFixed(2)}×`, ratio(at.head.p50, at.base.p50) === null ? '—' : `${ratio(at.head.p50, at.base.p50)!.toFixed(2)}×`, r.p99 === null ? '—' : `${r.p99.toFixed(2)}×`, r.cpu === null ? '—' : `${r.cpu.toFixed(2)}×`, '', '']);
      figures[`w${workers}_c${c}_rps_head_over_base`] = r.rps;
      figures[`w${workers}_c${c}_p99_head_over_base`] = r.p99;
      figures[`w${workers}_c${c}_cpu_head_over_base`] = r.cpu;
    }
  }
  const c0 = p.concurrencies[0]!;
  for (const side of ['base', 'head'] as const) {
    const cpu2 = ratio(figures[`w2_c${c0}_${side}_cpu`], figures[`w1_c${c0}_${side}_cpu`]);
    const rps2 = ratio(figures[`w2_c${c0}_${side}_rps`], figures[`w1_c${c0}_${side}_rps`]);
    figures[`${side}_w2_over_w1_cpu_c${c0}`] = cpu2;
    figures[`${side}_w2_over_w1_rps_c${c0}`] = rps2;
    notes.push(`${side}: 2 workers ÷ 1 worker at ${c0} connections: CPU µs/tx ${cpu2?.toFixed(2) ?? '—'}× (issue 20: ≤ 1.1×), req/s ${rps2?.toFixed(2) ?? '—'}× (≥ 1×)`);
  }
  // The warm-up runs (first seconds of each fresh service): shown, not used in any ratio.
  const warm = (side: Side, workers: number) => med(warmups.filter((w) => w.side === side && w.workers === workers).map((w) => w.run), (r) => r.serviceCpuUsPerTx);
  notes.push(
    `warm-up runs (first ${p.warmupSeconds} s of each fresh service at ${c0} connections, not in the ratios), svc CPU µs/tx: ` +
      p.workers.map((w) => `${w} worker(s) base ${warm('base', w)?.toFixed(0) ?? '—'}, head ${warm('head', w)?.toFixed(0) ?? '—'}`).join('; '),
  );
  for (const w of p.workers) for (const side of ['base', 'head'] as const) figures[`w${w}_warmup_${side}_cpu`] = warm(side, w);
  if (auditor.raw !== undefined && auditor.base !== undefined && auditor.head !== undefined) {
    Object.assign(figures, { auditor_raw_per_s: auditor.raw, auditor_base_per_s: auditor.base, auditor_head_per_s: auditor.head, auditor_head_over_base: auditor.head / auditor.base });
    table.push(['auditor', '', `verifyLog, ${BASE_AUDITOR_PROFILES[ctx.profile].leaves.toLocaleString('en-US')} v3 leaves (entries/s)`, '', '', '', '', '', '']);
    table.push(['', '', 'raw SHA-256', auditor.raw, '', '', '', '', '']);
    table.push(['', '', `base ${base.commit}`, auditor.base, `${(auditor.base / auditor.raw).toFixed(2)}× raw`, '', '', '', '']);
    table.push(['', '', 'head', auditor.head, `${(auditor.head / auditor.raw).toFixed(2)}× raw`, `${(auditor.head / auditor.base).toFixed(2)}× base`, '', '', '']);
  } else notes.push(`auditor comparison not run: ${auditorError ?? 'unknown'}`);
  notes.unshift(
    `base = ${ctx.baseRef} (${base.commit}) in a temporary git worktree, head = this tree; same driver; hierarchical keys; ${p.rounds} round(s) of base then head per configuration, a fresh service each, ${p.seconds} s per connection count after ${p.warmupSeconds} s of warm-up at ${c0} connections; medians`,
    `issue 20 targets: 1 worker CPU µs/tx head ÷ base ≤ 0.4× (now ${figures[`w1_c${c0}_cpu_head_over_base`]?.toFixed(2) ?? '—'}×), p99 at ${c0} connections head ÷ base ≤ 1× (now ${figures[`w1_c${c0}_p99_head_over_base`]?.toFixed(2) ?? '—'}×)`,
  );
  return { table, figures, notes, details: { baseRef: ctx.baseRef, baseCommit: base.commit, runs } };
}

export const baseCompareSection: BenchSection = {
  id: 'base',
  title: 'Base vs head: the service of another commit, same driver, interleaved (--base <git-ref>)',
  needs: 'none',
  run: runBase,
};
