/**
 * verify-log from tiles (`--tiles`, `--tiles-dir`): the same `verifyLog` checks as from the
 * entries API, fed by C2SP tlog-tiles resources. Entries come from entry bundles (§Log entries),
 * the proofs the verifier needs (consistency with the saved state, inclusion proofs to name the
 * first bad entry) are computed from hash tiles (§Merkle Tree) and checked against the signed
 * root like the API's.
 */
import { PaylogError } from '../errors.js';
import { LogClientError, isAnsweredFailure } from './log-client.js';
import { checkpointSize, type RemoteVerifyOptions } from './verify-sources.js';
import { hashLeaf } from '../log/merkle.js';
import { errorMessage, type FailureCode } from './failures.js';
import type { LeafRun, LogEntryInput } from './inputs.js';
import { failureReport, type VerifyReport } from './report.js';
import { verifyLog } from './run.js';
import { decodeHashTile, entryBundleViews } from '../log/tiles/encoding.js';
import { tileWidthAt } from '../log/tiles/geometry.js';
import { consistencyProofFromTiles, inclusionProofFromTiles, type HashTileReader } from '../log/tiles/nodes.js';
import { TILE_WIDTH, tilePath, type TileId } from '../log/tiles/path.js';
import type { TileSource } from './tile-source.js';

/** Entry bundles fetched ahead of the one being verified. */
const BUNDLE_READ_AHEAD = 8;

/** A bundle that does not hold its width's entries (carries the verifier failure code). */
class BundleError extends PaylogError {
  constructor(
    readonly failureCode: FailureCode,
    message: string,
  ) {
    super('INTEGRITY_FAILURE', message);
  }
}

function malformed(e: unknown, what: string): LogClientError {
  return e instanceof LogClientError ? e : new LogClientError(`${what}: ${errorMessage(e)}`, undefined, 'malformed');
}

function hashTileReader(source: TileSource): HashTileReader {
  return async (tile: TileId) => {
    const bytes = await source.read(tilePath(tile));
    try {
      return decodeHashTile(bytes, tile.width);
    } catch (e) {
      throw malformed(e, tilePath(tile));
    }
  };
}

/**
 * Entries `[start, end)` of the tree of `size`, bundle by bundle (tlog-tiles §Log entries), as
 * runs of consecutive leaves. A bundle must hold exactly its width's entries; when it does not,
 * its entries are matched against the level-0 tile and those that match are yielded before the
 * failure, so the verifier names the first entry that is missing or foreign.
 */
function bundleRuns(source: TileSource, size: number, readTile: HashTileReader) {
  return async function* runs(start: number, end: number): AsyncGenerator<LeafRun> {
    const last = Math.min(end, size);
    if (start >= last) return;
    const first = Math.floor(start / TILE_WIDTH);
    const stop = Math.ceil(last / TILE_WIDTH);
    const fetchBundle = (n: number) => {
      const id: TileId = { level: 'entries', index: n, width: tileWidthAt(0, n, size) };
      const p = source.read(tilePath(id)).then((b) => ({ id, bytes: b }));
      p.catch(() => {}); // awaited in order below
      return p;
    };
    const queue: Array<ReturnType<typeof fetchBundle>> = [];
    let next = first;
    while (next < stop && queue.length < BUNDLE_READ_AHEAD) queue.push(fetchBundle(next++));
    /** The leaves `[from, to)` of a bundle starting at `base`, clipped to `[start, last)`. */
    const clip = (leaves: Uint8Array[], base: number, to: number): LeafRun => {
      const from = Math.max(0, start - base);
      const upTo = Math.min(to, last - base);
      return { start: base + from, leaves: from === 0 && upTo === leaves.length ? leaves : leaves.slice(from, Math.max(from, upTo)) };
    };
    while (queue.length > 0) {
      const { id, bytes } = await (queue.shift() as ReturnType<typeof fetchBundle>);
      if (next < stop) queue.push(fetchBundle(next++));
      let leaves: Uint8Array[];
      try {
        leaves = entryBundleViews(bytes);
      } catch (e) {
        throw malformed(e, tilePath(id));
      }
      const base = id.index * TILE_WIDTH;
      if (leaves.length !== id.width) {
        const tile = await readTile({ level: 0, index: id.index, width: id.width });
        let j = 0;
        while (j < leaves.length && j < id.width && hashLeaf(leaves[j] as Uint8Array).equals(tile[j] as Buffer)) j++;
        const matched = clip(leaves, base, j);
        if (matched.leaves.length > 0) yield matched;
        throw new BundleError(
          leaves.length < id.width ? 'MISSING_ENTRY' : 'EXTRA_ENTRY',
          `entry bundle ${tilePath(id)} holds ${leaves.length} entries, not ${id.width}; entry ${base + j} does not match the level-0 tile`,
        );
      }
      const run = clip(leaves, base, leaves.length);
      if (run.leaves.length > 0) yield run;
    }
  };
}

/** {@link bundleRuns} one entry at a time (the leaf range reader that locates a bad entry). */
function bundleEntries(source: TileSource, size: number, readTile: HashTileReader) {
  const runs = bundleRuns(source, size, readTile);
  return async function* entries(start: number, end: number): AsyncGenerator<LogEntryInput> {
    for await (const run of runs(start, end)) for (let k = 0; k < run.leaves.length; k++) yield { index: run.start + k, leaf: run.leaves[k] as Uint8Array };
  };
}

/**
 * Verifies a tiled log: its checkpoint, the saved state (consistency proof from tiles), every
 * entry from the bundles, the rebuilt root; a bad entry is located with inclusion proofs from
 * tiles. Same report and failure codes as `verifyRemoteLog`.
 */
export async function verifyTiledLog(source: TileSource, opts: RemoteVerifyOptions): Promise<VerifyReport> {
  let checkpoint: string;
  try {
    checkpoint = await source.checkpoint();
  } catch (e) {
    if (!isAnsweredFailure(e)) throw e;
    return failureReport({ code: e.failureCode, message: `checkpoint unavailable: ${errorMessage(e)}` });
  }
  const size = checkpointSize(checkpoint);
  const readTile = hashTileReader(source);
  const entries = bundleEntries(source, size, readTile);
  return await verifyLog({
    checkpoint,
    verifiers: opts.verifiers,
    entries: bundleRuns(source, size, readTile)(0, size),
    ...(opts.state !== undefined ? { state: opts.state } : {}),
    consistencyProof: (from, to) => consistencyProofFromTiles(from, to, readTile),
    inclusionProof: (index, treeSize) => inclusionProofFromTiles(index, treeSize, readTile),
    readLeaves: (start, end) => entries(start, end),
    ...(opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {}),
    ...(opts.witnesses !== undefined ? { witnesses: opts.witnesses } : {}),
  });
}
