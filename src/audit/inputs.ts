/**
 * What the auditor is handed: log entries (from the entries API, an NDJSON export or tiles) and
 * the proof fetchers of a live source. Types only.
 *
 * Contract: nothing here is trusted; the verifier checks every field (./run.ts).
 */


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

/**
 * Consecutive entries `start, start + 1, …` given by their leaf bytes only (an entry bundle of a
 * tiled log): verified exactly as the same entries one by one, without an object per entry.
 */
export interface LeafRun {
  start: number;
  leaves: readonly Uint8Array[];
}

/** Fetches an RFC 9162 §2.1.3 audit path (leaf to root) for `index` in the tree of `treeSize`. */
export type InclusionProofFetcher = (index: number, treeSize: number) => Promise<Buffer[]>;
/** Fetches an RFC 9162 §2.1.4 consistency proof between two tree sizes. */
export type ConsistencyProofFetcher = (from: number, to: number) => Promise<Buffer[]>;
/** Re-reads the leaves `[start, end)` in index order (used only to locate a bad entry). */
export type LeafRangeReader = (start: number, end: number) => AsyncIterable<LogEntryInput>;
