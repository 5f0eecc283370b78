/**
 * Auditor benchmarks — RESERVED HOOKS, not implemented yet.
 *
 * To implement one: replace the body of its `run` with the measurement and return figures (and
 * a `RatioTarget` in scripts/bench.ts if it has a target). Nothing else needs to change: the
 * section is already registered in `SECTIONS`, printed, and written to the JSON.
 *
 * - `auditor_rebuild`: full tree rebuild (fetch every leaf via `GET /v1/log/entries`, recompute
 *   RFC 9162 leaf hashes and the root) in entries/s, versus raw SHA-256 over the same bytes
 *   (`createHash('sha256')` in a loop) — the ratio shows how far the verifier is from hashing
 *   speed. `needs: 'service'` gives `ctx.service` with a log the throughput section filled.
 * - `auditor_inclusion_1m`: `GET /v1/log/proof/inclusion` latency (p50/p99) on a log of 1M
 *   entries. Seeding 1M entries through HTTP is too slow for a 3-minute run: seed the database
 *   directly (e.g. COPY into the log tables as the owner, or a pre-built dump) in the section's
 *   own setup, and keep it behind an opt-in flag.
 */
import type { BenchSection, SectionResult } from './core.js';

function hook(plan: string, figures: string[]): SectionResult {
  return {
    status: 'hook',
    table: [['figure', 'value'], ...figures.map((f) => [f, 'not implemented'] as [string, string])],
    figures: Object.fromEntries(figures.map((f) => [f, null])),
    notes: [plan],
  };
}

export const auditorRebuildSection: BenchSection = {
  id: 'auditor_rebuild',
  title: '4a. Auditor: full rebuild entries/s vs raw SHA-256 (hook)',
  needs: 'service',
  run: async () =>
    hook('hook: implement auditorRebuildSection.run in scripts/bench/auditor.ts', [
      'rebuild_entries_per_s',
      'raw_sha256_per_s',
      'rebuild_vs_sha256',
    ]),
};

export const auditorInclusionSection: BenchSection = {
  id: 'auditor_inclusion_1m',
  title: '4b. Auditor: inclusion proof latency at 1M entries (hook)',
  needs: 'service',
  run: async () =>
    hook('hook: implement auditorInclusionSection.run in scripts/bench/auditor.ts', [
      'inclusion_p50_ms',
      'inclusion_p99_ms',
    ]),
};
