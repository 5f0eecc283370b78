/**
 * The verification report: its shape, the report of a run that failed before any checkpoint was
 * verified, and the one human-readable summary.
 *
 * Contract: pure. The summary MUST NOT print leaves (no card data can appear).
 */
import { formatEpochKeyReport, type EpochKeyReport } from './epoch-key-check.js';
import type { Failure } from './failures.js';
import { formatForwardReport, type ForwardReport } from './forward-check.js';
import { formatShredReport, type ShredReport } from './shred-report.js';
import type { VerifierState } from './state.js';

/** A report for a run that failed before any checkpoint was verified (e.g. the key or checkpoint was refused). */
export function failureReport(failure: Failure): VerifyReport {
  return {
    ok: false,
    verifiedKeys: [],
    entriesVerified: 0,
    leafTypes: {},
    failures: [failure],
    ...(failure.index !== undefined ? { firstBadIndex: failure.index } : {}),
  };
}

export interface VerifyReport {
  ok: boolean;
  origin?: string;
  treeSize?: number;
  /** base64 root hash of the signed checkpoint. */
  rootHash?: string;
  /** `<name>+<keyid>` of the trusted keys whose signatures verified. */
  verifiedKeys: string[];
  /** `<name>+<keyid>` of the trusted witnesses whose fresh cosignatures verified (with `witnesses`). */
  cosignedBy?: string[];
  entriesVerified: number;
  leafTypes: Record<string, number>;
  previous?: { size: number; rootHash: string; consistency: 'verified' | 'failed' | 'prefix-only' };
  failures: Failure[];
  /** Smallest bad entry index found (deletion, modification, swap, bad leaf), if any. */
  firstBadIndex?: number;
  /** The state to save when `ok` (never saved otherwise). */
  newState?: VerifierState;
  /**
   * Transactions whose key material was shredded (retention, early shred), derived from the
   * leaves verified: log index ranges and each shred event with its policy and time. Present
   * whenever every entry was streamed.
   */
  shredded?: ShredReport;
  /**
   * Which transactions sealed to key epochs were checked against their epoch's creation entry,
   * and which could not be (epochs and transactions from before leaf format v3). Present
   * whenever every entry was streamed.
   */
  epochKeys?: EpochKeyReport;
  /**
   * Forwards (issue 18): granted forward access entries, result entries, and the forwards with
   * no result entry (in flight, or stopped between egress and result). Present whenever every
   * entry was streamed.
   */
  forwards?: ForwardReport;
}

/** One human-readable summary of a report (no card data can appear: leaves are never printed). */
export function formatReport(r: VerifyReport): string {
  const lines: string[] = [];
  lines.push(r.ok ? 'OK: log verified' : 'FAILED: log did not verify');
  if (r.origin !== undefined) lines.push(`  origin:     ${r.origin}`);
  if (r.treeSize !== undefined) lines.push(`  tree size:  ${r.treeSize}`);
  if (r.rootHash !== undefined) lines.push(`  root hash:  ${r.rootHash}`);
  if (r.verifiedKeys.length > 0) lines.push(`  signed by:  ${r.verifiedKeys.join(', ')}`);
  lines.push(`  entries:    ${r.entriesVerified} verified (${Object.entries(r.leafTypes).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'})`);
  if (r.previous !== undefined) lines.push(`  previous:   size ${r.previous.size}, consistency ${r.previous.consistency}`);
  if (r.shredded !== undefined) lines.push(...formatShredReport(r.shredded));
  if (r.epochKeys !== undefined) lines.push(...formatEpochKeyReport(r.epochKeys));
  if (r.forwards !== undefined) lines.push(...formatForwardReport(r.forwards));
  if (r.firstBadIndex !== undefined) lines.push(`  first bad index: ${r.firstBadIndex}`);
  for (const f of r.failures) lines.push(`  - [${f.code}]${f.index !== undefined ? ` index ${f.index}:` : ''} ${f.message}`);
  return `${lines.join('\n')}\n`;
}
