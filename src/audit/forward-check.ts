/**
 * Forward step of the audit (issue 18): every granted forward access entry (action `forward`)
 * is closed by exactly one later `forward_result` entry of the same transaction naming it.
 *
 * Contract: pure, O(open forwards) memory. A result that names no open granted forward of its
 * transaction (or one already closed) is a failure (FORWARD_RESULT_UNMATCHED). A forward still
 * open at the end is REPORTED (`withoutResult`), not a failure: it is in flight, or its process
 * stopped between egress and the result (its next retry records `unknown`).
 */
import type { Leaf } from '../log/leaf.js';
import type { Failure } from './failures.js';

export interface ForwardReport {
  /** Granted forward access entries seen. */
  granted: number;
  /** Result entries seen. */
  results: number;
  /** Log indexes of granted forwards with no result entry (first 1000). */
  withoutResult: number[];
}

const MAX_LISTED = 1000;

export class ForwardLedger {
  private readonly open = new Map<number, string>();
  private granted = 0;
  private results = 0;

  observe(index: number, leaf: Leaf): Failure | undefined {
    if (leaf.type === 'access' && leaf.v !== 1 && leaf.action === 'forward' && leaf.outcome === 'granted') {
      this.granted++;
      this.open.set(index, leaf.transactionId);
    } else if (leaf.type === 'forward_result') {
      this.results++;
      const tx = this.open.get(leaf.access);
      if (tx === undefined || tx !== leaf.transactionId || leaf.access >= index) {
        return { code: 'FORWARD_RESULT_UNMATCHED', index, message: `entry ${index}: forward result names entry ${leaf.access}, which is no open granted forward of its transaction` };
      }
      this.open.delete(leaf.access);
    }
    return undefined;
  }

  report(): ForwardReport {
    return { granted: this.granted, results: this.results, withoutResult: [...this.open.keys()].slice(0, MAX_LISTED) };
  }
}

export function formatForwardReport(r: ForwardReport): string[] {
  if (r.granted === 0 && r.results === 0) return [];
  const open = r.withoutResult.length;
  return [`  forwards:   ${r.granted} granted, ${r.results} results${open > 0 ? `; WITHOUT a result entry: ${r.withoutResult.join(', ')}` : ''}`];
}
