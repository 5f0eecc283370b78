/**
 * Served-view step of the audit (live service only): what the service serves from its other
 * tables (lookup rows, format-1 columns, stored Merkle nodes) must equal what the leaves say.
 *
 * Contract: pure; reports through the `fail` callback, never throws for a mismatch.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../crypto/canonical-json.js';
import type { Leaf } from '../log/leaf.js';
import type { Failure } from './failures.js';
import type { LogEntryInput } from './inputs.js';

const sha256b64 = (s: string) => createHash('sha256').update(s, 'utf8').digest('base64');

/** The transaction a leaf's lookup rows must name. */
function leafTransactionId(leaf: Leaf): string | undefined {
  if (leaf.type !== 'transaction') return undefined;
  return leaf.v === 1 ? leaf.transactionId : leaf.id;
}

/**
 * Cross-checks what the service serves for this index against the leaf: the `transactions` and
 * `access_entries` lookup rows must name exactly the leaf's transaction (GET and the access list
 * find records through them), and a format-1 record's served columns must equal what its leaf
 * commits to (processor, amount, payment method type, metadata digest).
 */
export function checkServed(e: LogEntryInput, leaf: Leaf, rb: { fail(f: Failure): void }): void {
  if (e.lookup === undefined && e.view === undefined) return; // nothing served beside the leaf (tiles, exports)
  const at = (message: string) => rb.fail({ code: 'SERVED_VIEW_MISMATCH', index: e.index, message: `entry ${e.index}: ${message}` });
  if (e.lookup !== undefined) {
    const tx = leafTransactionId(leaf);
    if (e.lookup.transaction !== tx) {
      at(tx === undefined ? 'a transactions row points at this entry, which is not a transaction' : e.lookup.transaction === undefined ? 'no transactions row points at this transaction entry' : 'the transactions row for this entry names another transaction');
    }
    const acc = leaf.type === 'access' || leaf.type === 'forward_result' ? leaf.transactionId : undefined;
    if (e.lookup.access !== acc) {
      at(acc === undefined ? 'an access_entries row points at this entry, which is not an access entry' : e.lookup.access === undefined ? 'no access_entries row points at this access entry' : 'the access_entries row for this entry names another transaction');
    }
  }
  if (e.view !== undefined && leaf.type === 'transaction' && leaf.v === 1) {
    const v = e.view;
    const md = v.metadata ? sha256b64(canonicalJson(v.metadata)) : undefined;
    if (v.processor !== leaf.processor) at('served processor differs from the leaf');
    if (v.amount?.value !== leaf.amount.value || v.amount?.currency !== leaf.amount.currency) at('served amount differs from the leaf');
    if (v.paymentMethod?.type !== leaf.paymentMethodType) at('served payment method type differs from the leaf');
    if (md !== leaf.metadataSha256) at('served metadata differs from the digest in the leaf');
  }
}

export /** Node failures collected while streaming (bounded). */
class NodeFailures {
  static readonly MAX = 1000;
  readonly list: Failure[] = [];
  fail(f: Failure): void {
    if (this.list.length < NodeFailures.MAX) this.list.push(f);
  }
}

/** Every stored node an entry completes must equal the rebuilt one; names the subtree's first leaf. */
export function checkStoredNodes(index: number, stored: (Buffer | null)[], rebuilt: Buffer[], rb: { fail(f: Failure): void }): void {
  for (let level = 0; level < rebuilt.length; level++) {
    const s = stored[level];
    if (s === undefined || s === null || !s.equals(rebuilt[level]!)) {
      const first = index + 1 - 2 ** level;
      rb.fail({
        code: 'NODE_MISMATCH',
        index: first,
        message: `stored merkle node (level ${level}, idx ${(index + 1) / 2 ** level - 1}) covering entries [${first}, ${index + 1}) ${s ? 'differs from the tree rebuilt from the leaves' : 'is missing'}`,
      });
    }
  }
}
