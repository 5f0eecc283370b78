/**
 * Child process of the `auditor_scale` section: `node --import tsx scripts/bench/verify-synthetic.ts <size>`.
 * Verifies a synthetic tiled log of `size` entries (./synthetic-log.ts) exactly as
 * `verify-log --tiles` does (`verifyTiledLog`, the auditor's code, unchanged), with entry bundles
 * generated on demand instead of fetched, so 10M entries cost neither the service nor the disk.
 * Prints one JSON line: raw SHA-256 rate over the same leaf bytes (only hashing timed), the
 * bundle generation rate alone, the verification's wall time and rate, and this process's peak
 * RSS (`process.resourceUsage().maxRSS`) — the verifier's memory at that size.
 */
import { createHash, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { verifyTiledLog } from '../../src/audit/tile-verify.js';
import type { TileSource } from '../../src/audit/tile-source.js';
import { formatCheckpointBody } from '../../src/log/checkpoint.js';
import { hashLeaf, StreamingTreeBuilder } from '../../src/log/merkle.js';
import { signNote, type NoteSigner, type NoteVerifier } from '../../src/log/note.js';
import { encodeEntryBundle } from '../../src/log/tiles/encoding.js';
import { parseTilePath, TILE_WIDTH } from '../../src/log/tiles/path.js';
import { syntheticLeafSource } from './synthetic-log.js';

const ORIGIN = 'paylog.bench/synthetic';
const CHUNK = 4096;
const LEAF_PREFIX = Buffer.from([0]);

function signer(): { signer: NoteSigner; verifier: NoteVerifier } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url');
  return { signer: { name: ORIGIN, publicKey: raw, sign: async (m) => cryptoSign(null, m, privateKey) }, verifier: { name: ORIGIN, publicKey: raw } };
}

async function main(): Promise<void> {
  const size = Number(process.argv[2]);
  if (!Number.isSafeInteger(size) || size < 1) throw new Error('usage: verify-synthetic.ts <size>');
  const leafAt = syntheticLeafSource();

  // Pass 1 (untimed except the raw hashing): the signed root, and raw SHA-256 over the same bytes.
  const builder = new StreamingTreeBuilder();
  let rawMs = 0;
  let bytes = 0;
  for (let start = 0; start < size; start += CHUNK) {
    const leaves: Buffer[] = [];
    for (let i = start; i < Math.min(size, start + CHUNK); i++) leaves.push(leafAt(i));
    const prefixed = leaves.map((l) => Buffer.concat([LEAF_PREFIX, l]));
    const t = performance.now();
    for (const b of prefixed) createHash('sha256').update(b).digest();
    rawMs += performance.now() - t;
    for (const l of leaves) {
      bytes += l.length;
      builder.push(hashLeaf(l));
    }
  }
  const { signer: s, verifier } = signer();
  const checkpoint = await signNote(formatCheckpointBody({ origin: ORIGIN, size, rootHash: builder.root() }), [s]);

  const bundle = (index: number, width: number) => {
    const leaves: Buffer[] = [];
    for (let k = 0; k < width; k++) leaves.push(leafAt(index * TILE_WIDTH + k));
    return encodeEntryBundle(leaves);
  };
  // Generation alone, for the net figure.
  let t = performance.now();
  for (let index = 0; index * TILE_WIDTH < size; index++) bundle(index, Math.min(TILE_WIDTH, size - index * TILE_WIDTH));
  const genS = (performance.now() - t) / 1000;

  const source: TileSource = {
    checkpoint: async () => checkpoint,
    read: async (path) => {
      const id = parseTilePath(path);
      if (id.level !== 'entries') throw new Error(`synthetic source: only entry bundles are served (asked for ${path})`);
      return bundle(id.index, id.width);
    },
    close: () => {},
  };
  t = performance.now();
  const report = await verifyTiledLog(source, { verifiers: [verifier] });
  const verifyS = (performance.now() - t) / 1000;
  process.stdout.write(
    JSON.stringify({
      size,
      ok: report.ok,
      entriesVerified: report.entriesVerified,
      failures: report.failures.slice(0, 3),
      meanLeafBytes: bytes / size,
      rawPerS: size / (rawMs / 1000),
      genPerS: size / genS,
      verifyS,
      verifyPerS: size / verifyS,
      netPerS: size / Math.max(1e-9, verifyS - genS),
      maxRssMiB: process.resourceUsage().maxRSS / 1024,
      digestCheck: createHash('sha256').update(checkpoint).digest('hex').slice(0, 8),
    }) + '\n',
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(1);
});
