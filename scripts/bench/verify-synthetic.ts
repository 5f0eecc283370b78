/**
 * Child process of the `auditor_scale` section: `node --import tsx scripts/bench/verify-synthetic.ts <size>`.
 * Verifies a synthetic tiled log of `size` entries (./synthetic-log.ts) exactly as
 * `verify-log --tiles` does (`verifyTiledLog`, the auditor's code, unchanged), with entry bundles
 * generated on demand instead of fetched, so 10M entries cost neither the service nor the disk.
 * Prints one JSON line:
 * - raw SHA-256 over the same leaf bytes (`0x00 ‖ leaf`, prefixed beforehand; only hashing
 *   timed), two ways: a Hash object per leaf (`createHash().update().digest()`, the figure the
 *   issue-20 target and earlier runs are stated against) and the one-shot `crypto.hash`;
 * - the bundle generation alone, and the verification, in wall time and in this process's CPU
 *   time (`process.cpuUsage`, all threads: the garbage collector's included), the latter being
 *   what a shared machine disturbs least;
 * - this process's peak RSS (`process.resourceUsage().maxRSS`) — the verifier's memory at that
 *   size (the bundles in flight included; nothing else here grows with the size).
 */
import { createHash, generateKeyPairSync, hash, sign as cryptoSign } from 'node:crypto';
import { verifyTiledLog } from '../../src/audit/tile-verify.js';
import type { TileSource } from '../../src/audit/tile-source.js';
import { formatCheckpointBody } from '../../src/log/checkpoint.js';
import { hashLeaf, StreamingTreeBuilder } from '../../src/log/merkle.js';
import { signNote, type NoteSigner, type NoteVerifier } from '../../src/log/note.js';
import { decodeEntryBundle } from '../../src/log/tiles/encoding.js';
import { parseTilePath, TILE_WIDTH } from '../../src/log/tiles/path.js';
import { syntheticBundleSource } from './synthetic-log.js';

const ORIGIN = 'paylog.bench/synthetic';

function signer(): { signer: NoteSigner; verifier: NoteVerifier } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url');
  return { signer: { name: ORIGIN, publicKey: raw, sign: async (m) => cryptoSign(null, m, privateKey) }, verifier: { name: ORIGIN, publicKey: raw } };
}

/** CPU seconds (user + system, every thread) since `from`. */
const cpuSince = (from: NodeJS.CpuUsage): number => {
  const u = process.cpuUsage(from);
  return (u.user + u.system) / 1e6;
};

async function main(): Promise<void> {
  const size = Number(process.argv[2]);
  if (!Number.isSafeInteger(size) || size < 1) throw new Error('usage: verify-synthetic.ts <size>');
  const bundleAt = syntheticBundleSource();
  const widthOf = (index: number) => Math.min(TILE_WIDTH, size - index * TILE_WIDTH);
  const bundles = Math.ceil(size / TILE_WIDTH);

  // Pass 1 (untimed except the raw hashing): the signed root, and raw SHA-256 over the same bytes.
  const builder = new StreamingTreeBuilder();
  const raw = { objWall: 0, objCpu: 0, oneWall: 0, oneCpu: 0 };
  let bytes = 0;
  for (let index = 0; index < bundles; index++) {
    const leaves = decodeEntryBundle(bundleAt(index * TILE_WIDTH, widthOf(index)));
    const prefixed = leaves.map((l) => Buffer.concat([Buffer.from([0]), l]));
    let c = process.cpuUsage();
    let t = performance.now();
    for (const b of prefixed) createHash('sha256').update(b).digest();
    raw.objWall += performance.now() - t;
    raw.objCpu += cpuSince(c);
    c = process.cpuUsage();
    t = performance.now();
    for (const b of prefixed) hash('sha256', b, 'binary');
    raw.oneWall += performance.now() - t;
    raw.oneCpu += cpuSince(c);
    for (const l of leaves) {
      bytes += l.length;
      builder.add(hashLeaf(l));
    }
  }
  const { signer: s, verifier } = signer();
  const checkpoint = await signNote(formatCheckpointBody({ origin: ORIGIN, size, rootHash: builder.root() }), [s]);

  // Generation alone, for the net figures.
  let c = process.cpuUsage();
  let t = performance.now();
  for (let index = 0; index < bundles; index++) bundleAt(index * TILE_WIDTH, widthOf(index));
  const genS = (performance.now() - t) / 1000;
  const genCpuS = cpuSince(c);

  const source: TileSource = {
    checkpoint: async () => checkpoint,
    read: async (path) => {
      const id = parseTilePath(path);
      if (id.level !== 'entries') throw new Error(`synthetic source: only entry bundles are served (asked for ${path})`);
      return bundleAt(id.index * TILE_WIDTH, id.width);
    },
    close: () => {},
  };
  c = process.cpuUsage();
  t = performance.now();
  const report = await verifyTiledLog(source, { verifiers: [verifier] });
  const verifyS = (performance.now() - t) / 1000;
  const verifyCpuS = cpuSince(c);
  const perS = (seconds: number) => size / Math.max(1e-9, seconds);
  process.stdout.write(
    JSON.stringify({
      size,
      ok: report.ok,
      entriesVerified: report.entriesVerified,
      failures: report.failures.slice(0, 3),
      meanLeafBytes: bytes / size,
      rawPerS: perS(raw.objWall / 1000),
      rawCpuPerS: perS(raw.objCpu),
      rawOneShotPerS: perS(raw.oneWall / 1000),
      rawOneShotCpuPerS: perS(raw.oneCpu),
      genPerS: perS(genS),
      genCpuPerS: perS(genCpuS),
      verifyS,
      verifyCpuS,
      verifyPerS: perS(verifyS),
      verifyCpuPerS: perS(verifyCpuS),
      netPerS: perS(verifyS - genS),
      netCpuPerS: perS(verifyCpuS - genCpuS),
      maxRssMiB: process.resourceUsage().maxRSS / 1024,
    }) + '\n',
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(1);
});
