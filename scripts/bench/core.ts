/**
 * Benchmark framework shared by every section of `npm run bench`.
 *
 * A section is ONE function `(ctx) => Promise<SectionResult>` registered in `SECTIONS`
 * (scripts/bench.ts). It returns a small table for humans and named figures for JSON and for
 * the cross-section ratios/targets. Nothing here knows about paylog itself.
 */
import type { ServiceHandle } from './service.js';

/** Run profile: `quick` ≈ 30 s, `full` ≈ 2–3 min on the 2-core dev box. */
export type Profile = 'quick' | 'full';

export interface BenchContext {
  readonly profile: Profile;
  /** The running paylog child process; present for sections with `needs: 'service'`. */
  readonly service?: ServiceHandle;
  /** Figures published by sections that already ran (keyed `<sectionId>.<figure>`). */
  readonly figures: Readonly<Record<string, number | null>>;
  /** `--base <git-ref>`: the commit whose service the `base` section compares with this tree's. */
  readonly baseRef?: string;
  /** `--env K=V` settings, for sections that start their own services. */
  readonly serviceEnv?: Readonly<Record<string, string>>;
  /** `--auditor-entries n,…`: sizes of the synthetic logs the `auditor_scale` section verifies. */
  readonly auditorEntries?: readonly number[];
  /** Progress line on stderr (stdout is kept for the final report). */
  progress(message: string): void;
}

export type Cell = string | number | null;

export interface SectionResult {
  /** Table printed under the section title (first row = header). */
  table: Cell[][];
  /** Named figures (numbers) for JSON and for ratios; `null` = not measured. */
  figures: Record<string, number | null>;
  /** Free-text findings printed under the table. */
  notes?: string[];
  /** Anything else worth keeping in the JSON (raw per-repetition results, histograms, ...). */
  details?: unknown;
  /** `hook` = section reserved but not implemented yet (printed, not an error). */
  status?: 'ok' | 'hook';
}

export interface BenchSection {
  /** Stable id: prefix of the figure keys in JSON (`<id>.<figure>`). */
  id: string;
  title: string;
  /** `service`: runs while the paylog child is up (ctx.service set); `none`: runs after it stopped. */
  needs: 'service' | 'none';
  run(ctx: BenchContext): Promise<SectionResult>;
}

/** A ratio printed at the end; with `min`, a target checked as `numerator / denominator >= min`. */
export interface RatioTarget {
  label: string;
  /** Figure keys (`<section id>.<figure>`). */
  numerator: string;
  denominator: string;
  /** Omitted = informational ratio (no ✓/✗). */
  min?: number;
}

// ---------------------------------------------------------------- statistics

/** Median of a non-empty list (mean of the two middle values for even lengths). */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of an empty list');
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** `a / b`, or null when either is missing or b is 0. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a == null || b == null || b === 0) return null;
  return a / b;
}

/**
 * Runs `op` back to back for about `roundMs`, `rounds` times, and returns ops/s per round.
 * `batch` ops run between clock reads so timing overhead stays out of fast operations.
 */
export async function timedRounds(
  op: () => unknown,
  opts: { rounds: number; roundMs: number; batch?: number; warmupMs?: number },
): Promise<number[]> {
  const batch = opts.batch ?? 1;
  const runFor = async (ms: number): Promise<number> => {
    let n = 0;
    const t0 = performance.now();
    let t = t0;
    while (t - t0 < ms) {
      for (let i = 0; i < batch; i++) {
        const r = op();
        if (r instanceof Promise) await r;
      }
      n += batch;
      t = performance.now();
    }
    return n / ((t - t0) / 1000);
  };
  if (opts.warmupMs) await runFor(opts.warmupMs);
  const out: number[] = [];
  for (let r = 0; r < opts.rounds; r++) out.push(await runFor(opts.roundMs));
  return out;
}

// ---------------------------------------------------------------- formatting

/** Human number: 3 significant digits, thousands separators for large values. */
export function fmt(v: number | null | undefined, digits = 3): string {
  if (v == null || !Number.isFinite(v)) return '—';
  const abs = Math.abs(v);
  if (abs >= 1000) return Math.round(v).toLocaleString('en-US');
  if (abs === 0) return '0';
  return Number(v.toPrecision(digits)).toString();
}

export function fmtRatio(v: number | null | undefined): string {
  return v == null || !Number.isFinite(v) ? '—' : `${v >= 100 ? v.toFixed(0) : v.toFixed(2)}×`;
}

/** Renders rows as an aligned plain-text table (numbers right-aligned). */
export function renderTable(rows: Cell[][], indent = '  '): string {
  if (rows.length === 0) return '';
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? fmt(c) : (c ?? '—'))));
  const widths: number[] = [];
  for (const r of cells) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  const numeric = (i: number) => rows.slice(1).some((r) => typeof r[i] === 'number');
  const line = (r: string[]) =>
    indent + r.map((c, i) => (numeric(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const [head, ...body] = cells;
  const sep = indent + widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(head!), sep, ...body.map(line)].join('\n');
}
