/**
 * Auditor-side verification of a paylog log, shared by `scripts/verify-log.ts`,
 * `scripts/verify-proof.ts` and the tests. No HTTP here: every input (the signed checkpoint,
 * the entries, proofs) is handed in by the caller, so the same code verifies a live service
 * (through ./log-client.ts) and an offline NDJSON export.
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
 *
 * Contract: {@link verifyLog} MUST NOT throw for a verification failure (failures are in the
 * report) and MUST NOT return `newState` unless every check passed. Each step lives in its own
 * file (./leaf-check.ts, ./served-check.ts, ./locate-bad-entry.ts, ./state.ts, ./report.ts).
 */
import { ForwardLedger } from './forward-check.js';
import { PaylogError } from '../errors.js';
import { verifyCheckpoint, type VerifiedCheckpoint } from '../log/checkpoint.js';
import { hashLeaf, StreamingTreeBuilder, verifyConsistency } from '../log/merkle.js';
import type { NoteVerifier } from '../log/note.js';
import { EpochKeyLedger } from './epoch-key-check.js';
import { errorMessage, failureCodeOf, TRANSPORT_FAILURE_CODES, type Failure } from './failures.js';
import type { ConsistencyProofFetcher, InclusionProofFetcher, LeafRangeReader, LeafRun, LogEntryInput } from './inputs.js';
import { checkHotLeaf, checkLeaf } from './leaf-check.js';
import { locateFirstBadIndex } from './locate-bad-entry.js';
import type { VerifyReport } from './report.js';
import { checkServed, checkStoredNodes, NodeFailures } from './served-check.js';
import { ShredLedger } from './shred-report.js';
import { STATE_VERSION, type VerifierState } from './state.js';
import { checkWitnessPolicy, type WitnessPolicy } from './witness-policy.js';

export interface VerifyLogInput {
  /** The signed checkpoint note (C2SP signed-note). */
  checkpoint: string;
  /** Trusted checkpoint keys. */
  verifiers: readonly NoteVerifier[];
  /** Entries `[0, checkpoint size)`, one by one or in runs; extra entries beyond the size are a failure. */
  entries: AsyncIterable<LogEntryInput | LeafRun>;
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
  /** Witnesses whose cosignatures the checkpoint must carry (`--witness`); see ./witness-policy.ts. */
  witnesses?: WitnessPolicy;
  now?: () => Date;
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
  try {
    const epochKeys = new EpochKeyLedger();
    const forwards = new ForwardLedger();
    const checkPrefix = (): void => {
      const t = prefixes.get(builder.size);
      if (t !== undefined && !builder.root().equals(t.root)) {
        rb.fail({ code: 'ROOT_MISMATCH', message: `rebuilt root at size ${builder.size} differs from the ${t.what}` });
      }
    };
    checkPrefix();
    /** Verifies entry `index` (its leaf, plus what the service serves beside it); false: stop (structural failure). */
    const step = (index: number, leaf: Uint8Array, e: LogEntryInput | undefined): boolean => {
      const expected = builder.size;
      if (expected >= cp.size) {
        rb.fail({ code: 'EXTRA_ENTRY', index, message: `entry ${index} beyond the signed tree size ${cp.size}` });
        return false;
      }
      if (index !== expected) {
        if (index > expected) {
          rb.fail({ code: 'MISSING_ENTRY', index: expected, message: `entry ${expected} is missing (next entry has index ${index})` });
        } else {
          rb.fail({ code: 'INDEX_OUT_OF_ORDER', index: expected, message: `entry ${expected} expected, got index ${index}` });
        }
        return false;
      }
      // Hot path (issue 20): a leaf of the two common shapes feeds the ledgers without being built.
      const hot = e === undefined ? checkHotLeaf(leaf) : undefined;
      if (hot !== undefined) {
        leafTypes[hot.type] = (leafTypes[hot.type] ?? 0) + 1;
        // The rules of `shreds.observe` and `epochKeys.observe` for a v3 transaction; the forward
        // ledger reads no transaction, nor access entries other than forwards (not a hot shape).
        if (hot.type === 'transaction') {
          shreds.observeTransaction(index, hot.bytes, hot.idStart, hot.idEnd, hot.time, hot.ep, hot.kms);
          const epochFailure = hot.ep === undefined ? null : epochKeys.observeSealed(index, hot.ep, hot.epkAt < 0 ? undefined : hot.bytes, hot.epkAt);
          if (epochFailure) rb.fail(epochFailure);
        }
        builder.addLeaf(leaf);
        if (prefixes.size > 0) checkPrefix();
        input.onProgress?.(builder.size, cp.size);
        return true;
      }
      const checked = checkLeaf(index, leaf);
      if ('failure' in checked) rb.fail(checked.failure);
      else {
        const l = checked.leaf;
        leafTypes[l.type] = (leafTypes[l.type] ?? 0) + 1;
        shreds.observe(index, l);
        const epochFailure = epochKeys.observe(index, l);
        if (epochFailure) rb.fail(epochFailure);
        const forwardFailure = forwards.observe(index, l);
        if (forwardFailure) rb.fail(forwardFailure);
        const stored = e?.storedCiphertextSha256;
        if (stored !== undefined && l.type === 'transaction' && l.v === 1 && stored !== l.envelope.ciphertextSha256) {
          rb.fail({ code: 'CIPHERTEXT_MISMATCH', index, message: `entry ${index}: stored ciphertext does not match the digest its leaf commits to` });
        }
      }
      if (e?.storedNodes !== undefined) checkStoredNodes(index, e.storedNodes, builder.push(hashLeaf(leaf)), nodeFailures);
      else builder.addLeaf(leaf);
      if (e !== undefined && !('failure' in checked)) checkServed(e, checked.leaf, rb);
      if (prefixes.size > 0) checkPrefix();
      input.onProgress?.(builder.size, cp.size);
      return true;
    };
    try {
      for await (const x of input.entries) {
        if ('leaves' in x) {
          const leaves = x.leaves;
          let k = 0;
          while (k < leaves.length && step(x.start + k, leaves[k] as Uint8Array, undefined)) k++;
          structuralFailure = k < leaves.length;
        } else structuralFailure = !step(x.index, x.leaf, x);
        if (structuralFailure) break;
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

    const final = report({ ...head, entriesVerified: builder.size, previous, ...(structuralFailure ? {} : { shredded: shreds.report(), epochKeys: epochKeys.report(), forwards: forwards.report() }) });
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
  } finally {
    shreds.close(); // its spill file, if the log was large enough to need one
  }
}
