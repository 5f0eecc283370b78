/**
 * `export-tiles`: copies a paylog's C2SP tlog-tiles into a directory laid out exactly like the
 * URL space (`checkpoint`, `tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`), so any static web
 * server or object store can serve it (tlog-tiles §Merkle Tree: the `x` path elements avoid
 * file/directory conflicts).
 *
 * Contract: incremental — a tile already on disk is never fetched again (tiles never change);
 * every file is written to a temporary name and renamed into place, and `checkpoint` is written
 * last, so a copy is always consistent with its checkpoint even if a run is interrupted.
 * Nothing is trusted: `verify-log --tiles-dir` verifies the copy.
 */
import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { checkpointSize } from './verify-sources.js';
import { bundlesForSize, tilesForSize } from '../log/tiles/geometry.js';
import { tilePath } from '../log/tiles/path.js';
import type { TileSource } from './tile-source.js';

/** Tiles fetched concurrently. */
const EXPORT_CONCURRENCY = 8;

interface TileExportResult {
  size: number;
  written: number;
  skipped: number;
}

async function writeAtomically(path: string, data: Buffer | string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

export async function exportTiles(source: TileSource, outDir: string, onProgress?: (done: number, total: number) => void): Promise<TileExportResult> {
  const checkpoint = await source.checkpoint();
  const size = checkpointSize(checkpoint);
  const paths = [...tilesForSize(size), ...bundlesForSize(size)].map(tilePath);
  const todo = paths.filter((p) => !existsSync(join(outDir, ...p.split('/'))));
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < todo.length) {
      const p = todo[next++] as string;
      await writeAtomically(join(outDir, ...p.split('/')), await source.read(p));
      onProgress?.(++done, todo.length);
    }
  };
  await Promise.all(Array.from({ length: EXPORT_CONCURRENCY }, worker));
  await writeAtomically(join(outDir, 'checkpoint'), checkpoint);
  return { size, written: todo.length, skipped: paths.length - todo.length };
}
