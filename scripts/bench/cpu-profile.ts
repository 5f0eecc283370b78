/**
 * `BENCH_CPU_PROF_DIR=<dir> npm run bench …`: the paylog children (and their cluster workers)
 * write V8 `.cpuprofile` files there on exit (scripts/bench/service.ts). This module reads the
 * files written during this run and prints the top self-time entries, summed over every process
 * and every profile (start-up included, as `node --cpu-prof` records it), so the profile that
 * drives the CPU work sits next to the figures it explains.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Cell } from './core.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** `function file:line` of a profile node, the file shortened to its last two path segments. */
function frameName(n: ProfileNode): string {
  const { functionName, url, lineNumber } = n.callFrame;
  const file = url ? url.replace(/^file:\/\//, '').split('/').slice(-2).join('/') : '';
  return `${functionName || '(anonymous)'}${file ? ` ${file}:${lineNumber + 1}` : ''}`;
}

export interface ProfileSummary {
  files: number;
  totalSeconds: number;
  /** Samples outside `(idle)`. */
  busySeconds: number;
  top: { frame: string; seconds: number; share: number; busyShare: number | null }[];
}

/** Self time per frame over every `.cpuprofile` in `dir` modified at or after `sinceMs`. */
export function summariseCpuProfiles(dir: string, sinceMs: number, top = 15): ProfileSummary {
  const self = new Map<string, number>();
  let files = 0;
  let totalUs = 0;
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.cpuprofile')) continue;
    const path = join(dir, f);
    if (statSync(path).mtimeMs < sinceMs) continue;
    let p: CpuProfile;
    try {
      p = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
    } catch {
      continue; // a profile still being written, or truncated by a SIGKILL
    }
    files++;
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    p.samples.forEach((id, i) => {
      const us = p.timeDeltas[i] ?? 0;
      const node = byId.get(id);
      if (!node || us <= 0) return;
      const k = frameName(node);
      self.set(k, (self.get(k) ?? 0) + us);
      totalUs += us;
    });
  }
  const sorted = [...self].sort((a, b) => b[1] - a[1]).slice(0, top);
  const busyUs = totalUs - (self.get('(idle)') ?? 0);
  return {
    files,
    totalSeconds: totalUs / 1e6,
    busySeconds: busyUs / 1e6,
    top: sorted.map(([frame, us]) => ({ frame, seconds: us / 1e6, share: totalUs > 0 ? us / totalUs : 0, busyShare: frame === '(idle)' || busyUs <= 0 ? null : us / busyUs })),
  };
}

/** The summary as a bench table (self time, share of all samples). */
export function profileTable(s: ProfileSummary): Cell[][] {
  const pct = (x: number | null) => (x === null ? '—' : `${(x * 100).toFixed(1)} %`);
  return [['self time (all processes)', 's', 'share', 'share of non-idle'], ...s.top.map((t) => [t.frame, t.seconds, pct(t.share), pct(t.busyShare)] as Cell[])];
}
