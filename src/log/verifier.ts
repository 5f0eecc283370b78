/**
 * Auditor-side verification of a paylog log, shared by `scripts/verify-log.ts`,
 * `scripts/verify-proof.ts` and the tests. No HTTP here: every input (the signed checkpoint,
 * the entries, proofs) is handed in by the caller, so the same code verifies a live service
 * (through `src/log/export.ts`'s client) and an offline NDJSON export.
 *
 * What {@link verifyLog} checks, trusting nothing the service says:
 *   1. the checkpoint is a C2SP signed note signed by a trusted Ed25519 key (c2sp.org/signed-note)
 *      and has a well-formed tlog-checkpoint body (c2sp.org/tlog-checkpoint);
 *   2. against a saved state (last verified checkpoint): same origin, no rollback, and an
 *      RFC 9162 §2.1.4 consistency proof from the old size to the new one (when a proof fetcher
 *      is given) plus, while streaming, the rebuilt prefix root at the old size equals the old root;
 *   3. every entry, streamed with O(log n) memory: indexes dense and in order, leaf in canonical
 *      leaf format v1, no string that looks like a primary account number;
 *   4. the RFC 9162 §2.1.1 root rebuilt from all leaves equals the signed root; when it does not,
 *      {@link locateFirstBadIndex} names the first entry that differs from the signed tree.
 *   5. every leaf format v3 transaction sealed to a key epoch names (`env.epk`) the public key of
 *      an `epoch_created` entry earlier in the log for that epoch (./epoch-key-check.ts);
 *      epochs and transactions from before leaf format v3 are reported (`epochKeys`), not failed.
 * It also reports (never fails on) which log indices hold transactions whose key material was
 * shredded, from the leaves alone (`shredded`, see ./shred-report.ts).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { canonicalJson } from '../crypto/canonical-json.js';
import { PaylogError } from '../errors.js';
import { verifyCheckpoint, parseCheckpointBody, type VerifiedCheckpoint } from './checkpoint.js';
import { decodeLeaf, type Leaf } from './leaf.js';
import { hashChildren, hashLeaf, StreamingTreeBuilder, verifyConsistency } from './merkle.js';
import { parseVerifierKey, type NoteVerifier } from './note.js';
import { checkWitnessPolicy, type WitnessPolicy } from './witness/policy.js';
import { containsPanLikeIdentifier, containsPanLikeNumber, mayHoldPan } from '../validation/identifiers.js';
import { formatShredReport, ShredLedger, type ShredReport } from './shred-report.js';
import { EpochKeyLedger, formatEpochKeyReport, type EpochKeyReport } from './epoch-key-check.js';

// The PAN detector is the one validation uses (src/validation/identifiers.ts): same NFKC folding,
// same separators, same lengths. Re-exported for the scripts and tests that import it from here.
export { containsPanLikeIdentifier, containsPanLikeNumber, luhnValid, PAN_MAX_DIGITS, PAN_MIN_DIGITS } from '../validation/identifiers.js';

/** Version of the auditor state file written by {@link formatState}. */
export const STATE_VERSION = 1;

/** One log entry as handed to the verifier. */
export interface LogEntryInput {
  index: number;
  leaf: Uint8Array;
  /**
   * For transaction entries, the digest (base64) the server computed from the ciphertext it
   * stores now. When present it must equal the leaf's `envelope.ciphertextSha256`: a stored
   * ciphertext changed behind the log's back is then named by index.
   */
  storedCiphertextSha256?: string;
  /**
   * What the service's lookup rows map to this index (live service only): the transaction id
   * of the `transactions` row and of the `access_entries` row whose log index this is. Checked
   * against the leaf: a moved or rewritten lookup row is named by index.
   */
  lookup?: { transaction?: string; access?: string };
  /** Format-1 transaction records only: the values the service serves from their columns. */
  view?: { processor: string; amount: { value: number; currency: string }; paymentMethod: { type?: unknown }; metadata: Record<string, string> | null };
  /** Stored `merkle_nodes` hashes this entry completes, levels 0.. (null = missing). Checked against the rebuilt tree. */
  storedNodes?: (Buffer | null)[];
}

/** The auditor's memory of the last checkpoint it verified (`--state`). */
export interface VerifierState {
  version: number;
  origin: string;
  size: number;
  /** base64 root hash. */
  rootHash: string;
  /** The signed note exactly as verified. */
  note: string;
  /** Verifier keys (vkey strings) trusted when this state was written; pinned for later runs. */
  keys: string[];
  verifiedAt: string;
}

/** Stable failure codes of a verification report. */
export type FailureCode =
  | 'CHECKPOINT_INVALID'
  | 'ORIGIN_MISMATCH'
  | 'ROLLBACK'
  | 'FORK'
  | 'CONSISTENCY_PROOF_INVALID'
  | 'INDEX_OUT_OF_ORDER'
  | 'MISSING_ENTRY'
  | 'EXTRA_ENTRY'
  | 'LEAF_INVALID'
  | 'CARD_DATA_IN_LEAF'
  | 'CIPHERTEXT_MISMATCH'
  /** A value the service serves from its other tables differs from what the leaf says. */
  | 'SERVED_VIEW_MISMATCH'
  /** A stored Merkle node (which proofs are built from) differs from the tree rebuilt from the leaves. */
  | 'NODE_MISMATCH'
  | 'ROOT_MISMATCH'
  /** A v3 transaction names a key epoch that no earlier `epoch_created` entry creates. */
  | 'EPOCH_NOT_CREATED'
  /** A v3 transaction was sealed to a public key its epoch's `epoch_created` entry does not name. */
  | 'EPOCH_KEY_MISMATCH'
  | 'PROOF_INCONSISTENT'
  /** Fewer valid, fresh witness cosignatures than the required quorum (C2SP tlog-cosignature). */
  | 'WITNESS_QUORUM'
  /** The source answered, but with something unusable (not JSON, malformed entry or hash, no key). */
  | 'BAD_RESPONSE'
  /** The source answered a read (checkpoint, key, entries) with an HTTP error. */
  | 'REQUEST_REFUSED'
  /** The source answered a proof request with an HTTP error. */
  | 'PROOF_REFUSED'
  /** An export file line is malformed (the file itself was readable). */
  | 'EXPORT_MALFORMED'
  /** No answer at all: connection refused/reset, TLS, DNS, timeout, unreadable file. */
  | 'FETCH_FAILED';

/**
 * Failure codes that mean "nothing arrived to verify" (transport), as opposed to "something
 * arrived and is wrong". The CLI exits 2 only when every failure is one of these.
 */
export const TRANSPORT_FAILURE_CODES: ReadonlySet<FailureCode> = new Set<FailureCode>(['FETCH_FAILED']);

/** Every failure code (to validate a code carried by a thrown error). */
const FAILURE_CODES: ReadonlySet<string> = new Set<FailureCode>([
  'CHECKPOINT_INVALID', 'ORIGIN_MISMATCH', 'ROLLBACK', 'FORK', 'CONSISTENCY_PROOF_INVALID', 'INDEX_OUT_OF_ORDER',
  'MISSING_ENTRY', 'EXTRA_ENTRY', 'LEAF_INVALID', 'CARD_DATA_IN_LEAF', 'CIPHERTEXT_MISMATCH', 'SERVED_VIEW_MISMATCH', 'NODE_MISMATCH', 'ROOT_MISMATCH',
  'EPOCH_NOT_CREATED', 'EPOCH_KEY_MISMATCH', 'PROOF_INCONSISTENT', 'WITNESS_QUORUM', 'BAD_RESPONSE', 'REQUEST_REFUSED', 'PROOF_REFUSED', 'EXPORT_MALFORMED', 'FETCH_FAILED',
]);

/**
 * Contract for inputs (the entries iterable, proof fetchers, the CLI's key fetch): an error they
 * throw may carry a `failureCode` property saying what went wrong — `BAD_RESPONSE`,
 * `REQUEST_REFUSED`, `EXPORT_MALFORMED`, `FETCH_FAILED`, ... An error without one (or with an
 * unknown one) is taken as a transport failure, `FETCH_FAILED`. In a proof context a refused
 * request is reported as `PROOF_REFUSED`.
 */
export function failureCodeOf(e: unknown, context: 'read' | 'proof' = 'read'): FailureCode {
  const carried = e !== null && typeof e === 'object' ? (e as { failureCode?: unknown }).failureCode : undefined;
  const code: FailureCode = typeof carried === 'string' && FAILURE_CODES.has(carried) ? (carried as FailureCode) : 'FETCH_FAILED';
  return context === 'proof' && code === 'REQUEST_REFUSED' ? 'PROOF_REFUSED' : code;
}

/** The message of anything thrown (never a stack). */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

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

export interface Failure {
  code: FailureCode;
  message: string;
  /** The entry index concerned, when known. */
  index?: number;
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
}

/** Fetches an RFC 9162 §2.1.3 audit path (leaf to root) for `index` in the tree of `treeSize`. */
export type InclusionProofFetcher = (index: number, treeSize: number) => Promise<Buffer[]>;
/** Fetches an RFC 9162 §2.1.4 consistency proof between two tree sizes. */
export type ConsistencyProofFetcher = (from: number, to: number) => Promise<Buffer[]>;
/** Re-reads the leaves `[start, end)` in index order (used only to locate a bad entry). */
export type LeafRangeReader = (start: number, end: number) => AsyncIterable<LogEntryInput>;

export interface VerifyLogInput {
  /** The signed checkpoint note (C2SP signed-note). */
  checkpoint: string;
  /** Trusted checkpoint keys. */
  verifiers: readonly NoteVerifier[];
  /** Entries `[0, checkpoint size)`; extra entries beyond the size are a failure. */
  entries: AsyncIterable<LogEntryInput>;
  /** Required origin (else the state's origin, else any). */
  origin?: string;
  /** Last verified checkpoint. */
  state?: VerifierState;
  consistencyProof?: ConsistencyProofFetcher;
  /** With `readLeaves`, lets a root mismatch be narrowed to the first bad index. */
  inclusionProof?: InclusionProofFetcher;
  readLeaves?: LeafRangeReader;
  /** Other signed checkpoints known to the caller (e.g. from an export): their roots are checked as prefixes. */
  extraCheckpoints?: readonly string[];
  onProgress?: (verified: number, total: number) => void;
  /** Witnesses whose cosignatures the checkpoint must carry (`--witness`); see witness/policy.ts. */
  witnesses?: WitnessPolicy;
  now?: () => Date;
}

// ---------------------------------------------------------------------------------------------
// Keys.

/** Parses a verifier key given as a vkey string or as a path to a file holding vkey lines. */
export function loadVerifierKeys(arg: string): string[] {
  const trimmed = arg.trim();
  if (/^[^\s+]+\+[0-9a-fA-F]{8}\+[A-Za-z0-9+/=]+$/.test(trimmed)) return [trimmed];
  let text: string;
  try {
    text = readFileSync(arg, 'utf8');
  } catch (cause) {
    throw new PaylogError('BAD_REQUEST', 'log key is neither a verifier key string nor a readable file', undefined, { cause });
  }
  const keys = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith('#'));
  if (keys.length === 0) throw new PaylogError('BAD_REQUEST', 'log key file holds no verifier key');
  return keys;
}

/** signed-note §Verifier keys: vkey strings → trusted verifiers (throws BAD_REQUEST if malformed). */
export function toNoteVerifiers(vkeys: readonly string[]): NoteVerifier[] {
  return vkeys.map((v) => {
    const { name, publicKey } = parseVerifierKey(v);
    return { name, publicKey };
  });
}

// ---------------------------------------------------------------------------------------------
// Leaf checks.

/**
 * Fields whose format is pinned by the leaf schema to a digest (hex or base64 of 32 bytes): not
 * text, so not scanned — a random SHA-256 in hex holds a Luhn-valid 13-digit run ≈0.4% of the time.
 */
const DIGEST_FIELDS = new Set(['certificateFingerprint', 'ciphertextSha256', 'keyCommitment', 'wrappedKeySha256', 'metadataSha256', 'fp']);

/**
 * Free-text fields: scanned with grouping separators bridged, as a PAN is often written
 * (`md` = v2 transaction metadata: its keys and values are both free text).
 */
const FREE_TEXT_FIELDS = new Set(['reference', 'reason', 'note', 'md']);

/**
 * True when any string of the decoded leaf looks like a PAN. Keys are fixed by the schema,
 * except inside v2 metadata (`md`), whose keys are scanned too. Byte strings (v2 binary fields:
 * ciphertext, digests) are not text and are skipped.
 */
function leafHoldsPanLikeNumber(value: unknown, key = '', freeText = false): boolean {
  const free = freeText || FREE_TEXT_FIELDS.has(key);
  if (typeof value === 'string') {
    if (DIGEST_FIELDS.has(key) || !mayHoldPan(value)) return false;
    return free ? containsPanLikeNumber(value) : containsPanLikeIdentifier(value);
  }
  if (value instanceof Uint8Array) return false;
  if (Array.isArray(value)) return value.some((v) => leafHoldsPanLikeNumber(v, key, free));
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).some(([k, v]) => (key === 'md' && mayHoldPan(k) && containsPanLikeNumber(k)) || leafHoldsPanLikeNumber(v, k, free));
  }
  return false;
}

/**
 * Leaf format check, v1 or v2 (see `src/log/leaf.ts`) plus the no-plaintext rule: canonical, known
 * type, exactly the documented fields, and no string (key or value) holding a PAN-like number.
 * Returns the decoded leaf or a failure (never includes the offending string).
 */
export function checkLeaf(index: number, bytes: Uint8Array): { leaf: Leaf } | { failure: Failure } {
  let leaf: Leaf;
  try {
    leaf = decodeLeaf(bytes);
  } catch (e) {
    const why = e instanceof PaylogError ? e.message : 'undecodable leaf';
    return { failure: { code: 'LEAF_INVALID', index, message: `entry ${index}: ${why}` } };
  }
  // Pre-filter: canonical JSON and CBOR text strings never escape digits, so a leaf whose bytes
  // hold neither 13 digits in a row (single separators allowed) nor any byte ≥ 0x80 (NFKC may
  // fold a non-ASCII character into a digit) cannot hold a PAN-like string. A v2 (CBOR) leaf
  // always has such bytes; the walk then tests each text string with the same cheap check first.
  if (mayHoldPan(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')) && leafHoldsPanLikeNumber(leaf)) {
    return { failure: { code: 'CARD_DATA_IN_LEAF', index, message: `entry ${index}: leaf holds a Luhn-valid 13-19 digit number (possible card data)` } };
  }
  return { leaf };
}

// ---------------------------------------------------------------------------------------------
// Served values and stored nodes (live service).

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
  const at = (message: string) => rb.fail({ code: 'SERVED_VIEW_MISMATCH', index: e.index, message: `entry ${e.index}: ${message}` });
  if (e.lookup !== undefined) {
    const tx = leafTransactionId(leaf);
    if (e.lookup.transaction !== tx) {
      at(tx === undefined ? 'a transactions row points at this entry, which is not a transaction' : e.lookup.transaction === undefined ? 'no transactions row points at this transaction entry' : 'the transactions row for this entry names another transaction');
    }
    const acc = leaf.type === 'access' ? leaf.transactionId : undefined;
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

/** Node failures collected while streaming (bounded). */
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

// ---------------------------------------------------------------------------------------------
// State file.

/** Serialises a state file (JSON, newline-terminated). */
export function formatState(state: VerifierState): string {
  return `${JSON.stringify(state, null, 2)}\n`;
}

/** Parses a state file and checks that its fields match the note it carries. Throws BAD_REQUEST. */
export function parseState(text: string): VerifierState {
  let raw: any;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new PaylogError('BAD_REQUEST', 'state file is not JSON');
  }
  if (
    raw === null ||
    typeof raw !== 'object' ||
    raw.version !== STATE_VERSION ||
    typeof raw.origin !== 'string' ||
    !Number.isSafeInteger(raw.size) ||
    typeof raw.rootHash !== 'string' ||
    typeof raw.note !== 'string' ||
    !Array.isArray(raw.keys) ||
    !raw.keys.every((k: unknown) => typeof k === 'string')
  ) {
    throw new PaylogError('BAD_REQUEST', 'state file is malformed');
  }
  const split = raw.note.lastIndexOf('\n\n');
  let body;
  try {
    body = parseCheckpointBody(raw.note.slice(0, split + 1));
  } catch {
    throw new PaylogError('BAD_REQUEST', 'state file note is malformed');
  }
  if (body.origin !== raw.origin || body.size !== raw.size || body.rootHash.toString('base64') !== raw.rootHash) {
    throw new PaylogError('BAD_REQUEST', 'state file fields do not match its checkpoint note');
  }
  return raw as VerifierState;
}

// ---------------------------------------------------------------------------------------------
// Locating the first bad entry.

// RFC 9162 §2.1.1: k is the largest power of two smaller than n (n > 1).
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

// RFC 9162 §2.1.3.1: length of PATH(m, D[n]).
function pathLength(m: number, n: number): number {
  let len = 0;
  while (n > 1) {
    const k = splitPoint(n);
    if (m < k) n = k;
    else {
      m -= k;
      n -= k;
    }
    len += 1;
  }
  return len;
}

/**
 * The signed tree's MTH(D[lo+k:hi]) (side 'right', from the audit path of leaf `lo`) or
 * MTH(D[lo:lo+k]) (side 'left', from the path of leaf `lo+k`) for the RFC 9162 subtree
 * `[lo, hi)` with split `k`. In an audit path (leaf to root) the sibling at the top split of
 * that subtree comes right after the path inside it.
 */
async function signedChild(
  fetch: InclusionProofFetcher,
  treeSize: number,
  lo: number,
  hi: number,
  side: 'left' | 'right',
): Promise<Buffer> {
  const k = splitPoint(hi - lo);
  const leaf = side === 'right' ? lo : lo + k;
  const inner = side === 'right' ? pathLength(0, k) : pathLength(0, hi - lo - k);
  const proof = await fetch(leaf, treeSize);
  const h = proof[inner];
  if (h === undefined || h.length !== 32) {
    throw new PaylogError('INTEGRITY_FAILURE', 'inclusion proof is too short for the tree size', { index: leaf, treeSize });
  }
  return h;
}

async function rangeRoot(read: LeafRangeReader, start: number, end: number): Promise<Buffer> {
  const b = new StreamingTreeBuilder();
  let next = start;
  for await (const e of read(start, end)) {
    if (e.index !== next) throw new PaylogError('INTEGRITY_FAILURE', 'leaf range is not dense', { expected: next, got: e.index });
    b.push(hashLeaf(e.leaf));
    next += 1;
  }
  if (next !== end) throw new PaylogError('INTEGRITY_FAILURE', 'leaf range is short', { expected: end, got: next });
  return b.root();
}

/**
 * Finds the first index whose leaf differs from the signed tree, by descending the RFC 9162
 * tree from the signed root: at each subtree `[lo, hi)` with known signed hash, the signed hashes
 * of both children come from two audit paths (and must hash to the parent, so the server cannot
 * lie about them without being caught), the auditor's own hash of the left child is rebuilt from
 * the leaves, and the search continues in the left child if it differs, else in the right.
 * Cost: 2·log2(n) inclusion proofs and at most n leaf re-reads; memory O(log n).
 *
 * Returns `undefined` when the leaves match the signed root. Throws
 * `PaylogError('INTEGRITY_FAILURE')` when the server's proofs do not hash to the signed root
 * (the server's own tree state was rewritten; the entry cannot be named from proofs).
 */
export async function locateFirstBadIndex(args: {
  treeSize: number;
  rootHash: Buffer;
  inclusionProof: InclusionProofFetcher;
  readLeaves: LeafRangeReader;
}): Promise<number | undefined> {
  const { treeSize, inclusionProof, readLeaves } = args;
  if (treeSize === 0) return undefined;
  let lo = 0;
  let hi = treeSize;
  let expected = args.rootHash;
  if ((await rangeRoot(readLeaves, lo, hi)).equals(expected)) return undefined;
  while (hi - lo > 1) {
    const k = splitPoint(hi - lo);
    const right = await signedChild(inclusionProof, treeSize, lo, hi, 'right');
    const left = await signedChild(inclusionProof, treeSize, lo, hi, 'left');
    // RFC 9162 §2.1.1: the parent is HASH(0x01 || left || right).
    if (!hashChildren(left, right).equals(expected)) {
      throw new PaylogError('INTEGRITY_FAILURE', 'server proofs do not match the signed root', { lo, hi });
    }
    const ours = await rangeRoot(readLeaves, lo, lo + k);
    if (!ours.equals(left)) {
      hi = lo + k;
      expected = left;
    } else {
      lo += k;
      expected = right;
    }
  }
  return lo;
}

// ---------------------------------------------------------------------------------------------
// The verification run.

class ReportBuilder {
  readonly failures: Failure[] = [];
  firstBad: number | undefined;
  fail(f: Failure): void {
    this.failures.push(f);
    if (f.index !== undefined && (this.firstBad === undefined || f.index < this.firstBad)) this.firstBad = f.index;
  }
}

function prefixTargets(input: VerifyLogInput, cp: VerifiedCheckpoint, rb: ReportBuilder): Map<number, { root: Buffer; what: string }> {
  const targets = new Map<number, { root: Buffer; what: string }>();
  if (input.state !== undefined && input.state.size <= cp.size) {
    targets.set(input.state.size, { root: Buffer.from(input.state.rootHash, 'base64'), what: 'saved state checkpoint' });
  }
  for (const note of input.extraCheckpoints ?? []) {
    try {
      const other = verifyCheckpoint(note, input.verifiers, { origin: cp.origin });
      if (other.size > cp.size) continue;
      const seen = targets.get(other.size);
      if (seen !== undefined && !seen.root.equals(other.rootHash)) {
        rb.fail({ code: 'FORK', message: `two signed checkpoints for size ${other.size} with different roots` });
      }
      targets.set(other.size, { root: other.rootHash, what: 'signed checkpoint' });
    } catch (e) {
      rb.fail({ code: 'CHECKPOINT_INVALID', message: `extra checkpoint does not verify: ${(e as Error).message}` });
    }
  }
  return targets;
}

// Saved-state step: origin, rollback, equal-size fork, RFC 9162 §2.1.4.2 consistency proof.
async function checkAgainstState(
  input: VerifyLogInput,
  cp: VerifiedCheckpoint,
  rb: ReportBuilder,
): Promise<VerifyReport['previous']> {
  const state = input.state;
  if (state === undefined) return undefined;
  const oldRoot = Buffer.from(state.rootHash, 'base64');
  const previous: NonNullable<VerifyReport['previous']> = { size: state.size, rootHash: state.rootHash, consistency: 'prefix-only' };
  if (state.origin !== cp.origin) {
    rb.fail({ code: 'ORIGIN_MISMATCH', message: 'checkpoint origin differs from the saved state' });
    previous.consistency = 'failed';
    return previous;
  }
  if (cp.size < state.size) {
    rb.fail({ code: 'ROLLBACK', index: cp.size, message: `log rolled back: signed size ${cp.size} < previously verified size ${state.size}` });
    previous.consistency = 'failed';
    return previous;
  }
  if (input.consistencyProof !== undefined) {
    let proof: Buffer[];
    try {
      proof = await input.consistencyProof(state.size, cp.size);
    } catch (e) {
      rb.fail({ code: failureCodeOf(e, 'proof'), message: `consistency proof ${state.size}→${cp.size} unavailable: ${errorMessage(e)}` });
      previous.consistency = 'failed';
      return previous;
    }
    if (verifyConsistency(state.size, cp.size, proof, oldRoot, cp.rootHash)) {
      previous.consistency = 'verified';
    } else {
      rb.fail({
        code: cp.size === state.size ? 'FORK' : 'CONSISTENCY_PROOF_INVALID',
        message: `checkpoint ${cp.size} is not consistent with the previously verified checkpoint ${state.size} (fork)`,
      });
      previous.consistency = 'failed';
    }
  } else if (cp.size === state.size && !cp.rootHash.equals(oldRoot)) {
    rb.fail({ code: 'FORK', message: `two signed roots for size ${cp.size} (fork)` });
    previous.consistency = 'failed';
  }
  return previous;
}

/**
 * Verifies a log: checkpoint signature, saved state, every entry, the rebuilt root (see the
 * module comment). Never throws for a verification failure — failures are in the report; throws
 * only for caller errors (BAD_REQUEST). Errors thrown by the inputs are reported with the code
 * they carry ({@link failureCodeOf}): a transport failure as `FETCH_FAILED` (the CLI's exit 2),
 * a bad or refused answer as a failure naming the first entry index not verified (exit 1).
 */
export async function verifyLog(input: VerifyLogInput): Promise<VerifyReport> {
  const rb = new ReportBuilder();
  const leafTypes: Record<string, number> = {};
  const report = (extra: Partial<VerifyReport>): VerifyReport => ({
    ok: rb.failures.length === 0,
    verifiedKeys: [],
    entriesVerified: 0,
    leafTypes,
    failures: rb.failures,
    ...(rb.firstBad !== undefined ? { firstBadIndex: rb.firstBad } : {}),
    ...extra,
  });

  // Step 1: signed checkpoint.
  let cp: VerifiedCheckpoint;
  const origin = input.origin ?? input.state?.origin;
  try {
    cp = verifyCheckpoint(input.checkpoint, input.verifiers);
  } catch (e) {
    rb.fail({ code: 'CHECKPOINT_INVALID', message: `checkpoint does not verify: ${(e as Error).message}` });
    return report({});
  }
  const head: Partial<VerifyReport> = { origin: cp.origin, treeSize: cp.size, rootHash: cp.rootHash.toString('base64'), verifiedKeys: cp.verifiedKeys };
  if (origin !== undefined && cp.origin !== origin && input.state === undefined) {
    rb.fail({ code: 'ORIGIN_MISMATCH', message: 'checkpoint origin differs from the expected origin' });
    return report(head);
  }

  // Step 1b: witness cosignatures (tlog-cosignature), when a policy is given.
  if (input.witnesses !== undefined) {
    const w = checkWitnessPolicy(input.checkpoint, input.witnesses, Math.floor((input.now?.() ?? new Date()).getTime() / 1000));
    for (const f of w.failures) rb.fail(f);
    Object.assign(head, { cosignedBy: w.cosignedBy });
  }

  // Step 2: saved state.
  const previous = await checkAgainstState(input, cp, rb);
  const prefixes = prefixTargets(input, cp, rb);

  // Step 3: stream entries with O(log n) memory.
  const builder = new StreamingTreeBuilder();
  let structuralFailure = false;
  // Stored-node mismatches are reported only when the leaves rebuild the signed root: then the
  // leaves are right and the stored nodes (which proofs are built from) are wrong. When the root
  // differs, the leaves are wrong and the bad entry is located from proofs instead.
  const nodeFailures = new NodeFailures();
  const shreds = new ShredLedger();
  const epochKeys = new EpochKeyLedger();
  const checkPrefix = (): void => {
    const t = prefixes.get(builder.size);
    if (t !== undefined && !builder.root().equals(t.root)) {
      rb.fail({ code: 'ROOT_MISMATCH', message: `rebuilt root at size ${builder.size} differs from the ${t.what}` });
    }
  };
  checkPrefix();
  try {
    for await (const e of input.entries) {
      const expected = builder.size;
      if (expected >= cp.size) {
        rb.fail({ code: 'EXTRA_ENTRY', index: e.index, message: `entry ${e.index} beyond the signed tree size ${cp.size}` });
        structuralFailure = true;
        break;
      }
      if (e.index !== expected) {
        if (e.index > expected) {
          rb.fail({ code: 'MISSING_ENTRY', index: expected, message: `entry ${expected} is missing (next entry has index ${e.index})` });
        } else {
          rb.fail({ code: 'INDEX_OUT_OF_ORDER', index: expected, message: `entry ${expected} expected, got index ${e.index}` });
        }
        structuralFailure = true;
        break;
      }
      const checked = checkLeaf(e.index, e.leaf);
      if ('failure' in checked) rb.fail(checked.failure);
      else {
        leafTypes[checked.leaf.type] = (leafTypes[checked.leaf.type] ?? 0) + 1;
        shreds.observe(e.index, checked.leaf);
        const epochFailure = epochKeys.observe(e.index, checked.leaf);
        if (epochFailure) rb.fail(epochFailure);
        const stored = e.storedCiphertextSha256;
        if (stored !== undefined && checked.leaf.type === 'transaction' && checked.leaf.v === 1 && stored !== checked.leaf.envelope.ciphertextSha256) {
          rb.fail({ code: 'CIPHERTEXT_MISMATCH', index: e.index, message: `entry ${e.index}: stored ciphertext does not match the digest its leaf commits to` });
        }
      }
      const completed = builder.push(hashLeaf(e.leaf));
      if (e.storedNodes !== undefined) checkStoredNodes(e.index, e.storedNodes, completed, nodeFailures);
      if (!('failure' in checked)) checkServed(e, checked.leaf, rb);
      checkPrefix();
      input.onProgress?.(builder.size, cp.size);
    }
  } catch (e) {
    const code = failureCodeOf(e);
    if (TRANSPORT_FAILURE_CODES.has(code)) {
      rb.fail({ code, message: `reading entries failed at index ${builder.size}: ${errorMessage(e)}` });
    } else {
      // The answer arrived and is wrong or refused: entry `builder.size` is the first not verified.
      rb.fail({ code, index: builder.size, message: `entry ${builder.size} could not be verified: ${errorMessage(e)}` });
    }
    return report({ ...head, entriesVerified: builder.size, previous });
  }
  if (!structuralFailure && builder.size < cp.size) {
    rb.fail({ code: 'MISSING_ENTRY', index: builder.size, message: `only ${builder.size} of ${cp.size} signed entries were returned` });
    structuralFailure = true;
  }

  if (!structuralFailure && builder.root().equals(cp.rootHash)) for (const f of nodeFailures.list) rb.fail(f);

  // Step 4: rebuilt root vs signed root; name the first bad entry.
  if (!structuralFailure && !builder.root().equals(cp.rootHash)) {
    let located: number | undefined;
    let note = '';
    if (input.inclusionProof !== undefined && input.readLeaves !== undefined) {
      try {
        located = await locateFirstBadIndex({ treeSize: cp.size, rootHash: cp.rootHash, inclusionProof: input.inclusionProof, readLeaves: input.readLeaves });
      } catch (e) {
        // Proofs that do not hash to the signed root are PROOF_INCONSISTENT; a fetch error keeps its own code.
        const code = e instanceof PaylogError && e.code === 'INTEGRITY_FAILURE' ? 'PROOF_INCONSISTENT' : failureCodeOf(e, 'proof');
        rb.fail({ code, message: `cannot locate the bad entry: ${errorMessage(e)}` });
      }
    } else {
      note = ' (no inclusion proofs available to locate the entry)';
    }
    rb.fail({
      code: 'ROOT_MISMATCH',
      ...(located !== undefined ? { index: located } : {}),
      message:
        located !== undefined
          ? `rebuilt root differs from the signed root; first entry differing from the signed tree: ${located}`
          : `rebuilt root differs from the signed root${note}`,
    });
  }

  const final = report({ ...head, entriesVerified: builder.size, previous, ...(structuralFailure ? {} : { shredded: shreds.report(), epochKeys: epochKeys.report() }) });
  if (final.ok) {
    final.newState = {
      version: STATE_VERSION,
      origin: cp.origin,
      size: cp.size,
      rootHash: cp.rootHash.toString('base64'),
      note: input.checkpoint,
      keys: [],
      verifiedAt: (input.now?.() ?? new Date()).toISOString(),
    };
  }
  return final;
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
  if (r.firstBadIndex !== undefined) lines.push(`  first bad index: ${r.firstBadIndex}`);
  for (const f of r.failures) lines.push(`  - [${f.code}]${f.index !== undefined ? ` index ${f.index}:` : ''} ${f.message}`);
  return `${lines.join('\n')}\n`;
}
