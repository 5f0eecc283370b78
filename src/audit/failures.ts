/**
 * The auditor's failure vocabulary: the stable codes of a verification report and how an error
 * thrown by an input (entry source, proof fetcher, key fetch) maps to one.
 *
 * Contract: pure, no I/O. Owns {@link FailureCode}, {@link Failure} and {@link failureCodeOf};
 * MUST NOT import anything of the service (src/api, src/services, src/db, src/kms).
 */

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
  /** A forward_result entry names no open granted forward access entry of its transaction (issue 18). */
  | 'FORWARD_RESULT_UNMATCHED'
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
  'EPOCH_NOT_CREATED', 'EPOCH_KEY_MISMATCH', 'PROOF_INCONSISTENT', 'FORWARD_RESULT_UNMATCHED', 'WITNESS_QUORUM', 'BAD_RESPONSE', 'REQUEST_REFUSED', 'PROOF_REFUSED', 'EXPORT_MALFORMED', 'FETCH_FAILED',
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

export interface Failure {
  code: FailureCode;
  message: string;
  /** The entry index concerned, when known. */
  index?: number;
}
