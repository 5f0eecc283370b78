/**
 * C2SP tlog-tiles: paths and encodings against the spec's examples, and the service's tiles
 * (built from merkle_nodes) equal to tiles computed from scratch from the leaves for every tree
 * size 1..1,100 (crossing 256) and around 65,536; the HTTPS routes (auditor only, immutable
 * caching for full tiles, 404 for non-canonical paths and tiles beyond the signed tree).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { hashLeaf, rootFromLeafHashes } from '../src/log/merkle.js';
import { encodeTileIndex, parseTilePath, tilePath, TILE_WIDTH, type TileId } from '../src/log/tiles/path.js';
import { bundlesForSize, partialTileWidth, tilesForSize, tileSpan } from '../src/log/tiles/geometry.js';
import { decodeEntryBundle, decodeHashTile, encodeEntryBundle } from '../src/log/tiles/encoding.js';
import { inclusionProofFromTiles, consistencyProofFromTiles } from '../src/log/tiles/nodes.js';
import { consistencyProof, inclusionProof, nodeKey, rangeNodes, appendLeaves, verifyInclusion } from '../src/log/merkle.js';
import { TilesService } from '../src/services/tiles.js';
import type { Principal } from '../src/auth/principal.js';
import { parseVerifierKey } from '../src/log/note.js';

describe('tile paths (tlog-tiles §Merkle Tree)', () => {
  it('encodes indexes in zero-padded 3-digit elements, x-prefixed but the last', () => {
    expect(encodeTileIndex(1234067)).toBe('x001/x234/067');
    expect(encodeTileIndex(0)).toBe('000');
    expect(encodeTileIndex(5)).toBe('005');
    expect(encodeTileIndex(999)).toBe('999');
    expect(encodeTileIndex(1000)).toBe('x001/000');
    expect(tilePath({ level: 0, index: 1234067, width: 256 })).toBe('tile/0/x001/x234/067');
    expect(tilePath({ level: 2, index: 3, width: 17 })).toBe('tile/2/003.p/17');
    expect(tilePath({ level: 'entries', index: 1000, width: 112 })).toBe('tile/entries/x001/000.p/112');
  });

  it('parses only canonical paths', () => {
    expect(parseTilePath('tile/0/x001/x234/067')).toEqual({ level: 0, index: 1234067, width: 256 });
    expect(parseTilePath('tile/1/000.p/1')).toEqual({ level: 1, index: 0, width: 1 });
    expect(parseTilePath('tile/entries/x001/000.p/255')).toEqual({ level: 'entries', index: 1000, width: 255 });
    expect(parseTilePath('tile/63/000')).toEqual({ level: 63, index: 0, width: 256 });
    for (const bad of [
      'tile/0/x000/005', // not the canonical encoding of 5
      'tile/00/000', // leading zero in L
      'tile/64/000', // L > 63
      'tile/0/5',
      'tile/0/0005',
      'tile/0/001/002', // inner element without x
      'tile/0/x001',
      'tile/0/000.p/0',
      'tile/0/000.p/256',
      'tile/0/000.p/07',
      'tile/0/000.p',
      'tile/entries/000.p/',
      'tile/0/',
      'tiles/0/000',
    ]) {
      expect(() => parseTilePath(bad), bad).toThrow();
    }
  });

  it('a tree of 70,000 is 273 full + 1 partial (112) at level 0, 1 full + 1 partial (17) at level 1, 1 partial (1) at level 2', () => {
    const t = tilesForSize(70_000);
    const at = (l: number) => t.filter((x) => x.level === l);
    expect(at(0).filter((x) => x.width === 256)).toHaveLength(273);
    expect(at(0).filter((x) => x.width !== 256)).toEqual([{ level: 0, index: 273, width: 112 }]);
    expect(at(1)).toEqual([{ level: 1, index: 0, width: 256 }, { level: 1, index: 1, width: 17 }]);
    expect(at(2)).toEqual([{ level: 2, index: 0, width: 1 }]);
    expect(t.filter((x) => (x.level as number) > 2)).toEqual([]);
    // "a tree of size 256 will be represented by a full level 0 tile and a partial level 1 tile of width 1"
    expect(tilesForSize(256)).toEqual([{ level: 0, index: 0, width: 256 }, { level: 1, index: 0, width: 1 }]);
    expect(partialTileWidth(1, 70_000)).toBe(17);
    expect(bundlesForSize(70_000).at(-1)).toEqual({ level: 'entries', index: 273, width: 112 });
    expect(tilesForSize(0)).toEqual([]);
  });

  it('entry bundles are big-endian uint16 length-prefixed entries (tlog-tiles §Log entries)', () => {
    const b = encodeEntryBundle([Buffer.from('ab'), Buffer.alloc(0), Buffer.alloc(300, 7)]);
    expect(b.subarray(0, 4)).toEqual(Buffer.from([0x00, 0x02, 0x61, 0x62]));
    expect(b.subarray(4, 8)).toEqual(Buffer.from([0x00, 0x00, 0x01, 0x2c]));
    expect(b.length).toBe(2 + 2 + 2 + 2 + 300);
    expect(decodeEntryBundle(b).map((e) => e.length)).toEqual([2, 0, 300]);
    expect(() => decodeEntryBundle(b.subarray(0, b.length - 1))).toThrow();
    expect(() => encodeEntryBundle([Buffer.alloc(65_536)])).toThrow();
    expect(() => decodeHashTile(Buffer.alloc(33), 1)).toThrow();
  });
});

/** From scratch: hash i of tile (l, n) is MTH(D[(n·256 + i)·256^l : (n·256 + i + 1)·256^l]). */
function scratchTile(leafHashes: Buffer[], t: TileId & { level: number }): Buffer {
  const span = tileSpan(t.level);
  const out: Buffer[] = [];
  for (let i = 0; i < t.width; i++) {
    const start = (t.index * 256 + i) * span;
    out.push(rootFromLeafHashes(leafHashes.slice(start, start + span)));
  }
  return Buffer.concat(out);
}

describe('tiles from the service', () => {
  let t: TestPaylog;
  let tiles: TilesService;
  const leaves: Buffer[] = [];
  const hashes: Buffer[] = [];
  const auditor: Principal = { role: 'auditor', name: 'auditor' } as Principal;

  async function appendUpTo(n: number): Promise<void> {
    while (leaves.length < n) {
      const batch: Promise<unknown>[] = [];
      while (leaves.length < n && batch.length < 4_096) {
        const leaf = Buffer.concat([Buffer.from(`leaf ${leaves.length} `), randomBytes(leaves.length % 40)]);
        leaves.push(leaf);
        hashes.push(hashLeaf(leaf));
        batch.push(t.paylog.appender.append({ kind: 'key_event', leaf, createdAt: new Date() }));
      }
      await Promise.all(batch);
    }
    await t.paylog.checkpoints.publish();
  }

  async function checkSize(s: number, only?: (x: TileId) => boolean): Promise<void> {
    for (const tile of tilesForSize(s).filter((x) => only?.(x) ?? true)) {
      const got = await tiles.tile(auditor, tilePath(tile));
      expect(got.bytes.equals(scratchTile(hashes, tile as TileId & { level: number })), `size ${s} ${tilePath(tile)}`).toBe(true);
    }
    for (const b of bundlesForSize(s).filter((x) => only?.(x) ?? true)) {
      const got = decodeEntryBundle((await tiles.tile(auditor, tilePath(b))).bytes);
      const start = b.index * TILE_WIDTH;
      expect(got.length).toBe(b.width);
      expect(got.every((e, i) => e.equals(leaves[start + i] as Buffer)), `size ${s} ${tilePath(b)}`).toBe(true);
    }
  }

  beforeAll(async () => {
    t = await startTestPaylog();
    tiles = new TilesService(t.paylog.database.db, {
      verifiers: t.paylog.logKeys.map((k) => parseVerifierKey(k.vkey)),
      checkpoint: async () => '',
    });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('equal tiles computed from scratch for every size 1..1,100', async () => {
    await appendUpTo(1_100);
    for (let s = 1; s <= 1_100; s++) {
      // Full tiles are shared by all later sizes: check each once, at the size that completes it.
      await checkSize(s, (x) => x.width !== TILE_WIDTH || (x.index + 1) * tileSpan((x.level === 'entries' ? 0 : x.level) + 1) === s);
    }
    await checkSize(1_100);
  });

  it('proofs computed from the tiles equal the service\'s RFC 9162 proofs', async () => {
    const { newNodes } = appendLeaves(0, [], hashes.slice(0, 1_100));
    const nodes = new Map(newNodes.map((n) => [nodeKey(n), n.hash]));
    const read = async (tile: TileId) => decodeHashTile((await tiles.tile(auditor, tilePath(tile))).bytes, tile.width);
    for (const [i, s] of [[0, 1], [255, 256], [256, 257], [700, 1_100], [1_099, 1_100], [3, 513]] as const) {
      const p = await inclusionProofFromTiles(i, s, read);
      expect(p).toEqual(inclusionProof(i, s, nodes));
      expect(verifyInclusion(hashes[i] as Buffer, i, s, p, rootFromLeafHashes(hashes.slice(0, s)))).toBe(true);
    }
    for (const [a, b] of [[1, 1_100], [256, 1_100], [255, 257], [1_000, 1_099]] as const) {
      expect(await consistencyProofFromTiles(a, b, read)).toEqual(consistencyProof(a, b, nodes));
    }
    expect(rangeNodes(0, 1_100).length).toBeGreaterThan(0);
  });

  it('around 65,536 (level 2 appears)', async () => {
    await appendUpTo(65_536 + 300);
    for (const s of [65_535, 65_536, 65_537, 65_536 + 256, 65_536 + 300]) {
      await checkSize(s, (x) => x.width !== TILE_WIDTH || x.level !== 0 && x.level !== 'entries' || x.index >= 254);
    }
    expect(tilesForSize(65_536)).toContainEqual({ level: 2, index: 0, width: 1 });
  }, 180_000);

  it('HTTPS: auditor only, octet-stream, immutable full tiles, 404 for non-canonical paths and tiles beyond the signed tree', async () => {
    const full = await t.call('auditor', 'GET', '/v1/log/tiles/tile/0/000');
    expect(full.status).toBe(200);
    expect(full.headers['content-type']).toBe('application/octet-stream');
    expect(full.headers['cache-control']).toBe('max-age=31536000, immutable');
    const partial = await t.call('auditor', 'GET', '/v1/log/tiles/tile/0/001.p/7');
    expect(partial.status).toBe(200);
    expect(partial.headers['cache-control']).not.toContain('immutable');
    const cp = await t.call('auditor', 'GET', '/v1/log/tiles/checkpoint');
    expect(cp.status).toBe(200);
    expect(cp.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(cp.headers['cache-control']).toBe('no-store');
    expect(cp.text.split('\n')[1]).toBe(String(leaves.length));
    expect((await t.call('auditor', 'GET', '/v1/log/tiles/tile/0/x000/001')).status).toBe(404);
    expect((await t.call('auditor', 'GET', '/v1/log/tiles/tile/0/999')).status).toBe(404); // beyond the tree
    expect((await t.call('auditor', 'GET', '/v1/log/tiles/tile/3/000.p/1')).status).toBe(404);
    expect((await t.call('checkout', 'GET', '/v1/log/tiles/tile/0/000')).status).toBe(403);
    expect((await t.call('processor-acme', 'GET', '/v1/log/tiles/checkpoint')).status).toBe(403);
    expect((await t.call(null, 'GET', '/v1/log/tiles/tile/0/000')).status).toBe(401);
  });
});
