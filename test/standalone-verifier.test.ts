/**
 * `npm run build:verifier` → dist/paylog-verify.mjs: one file that verifies a live paylog from
 * an empty directory (no node_modules, no repository), with only the CA, the auditor's
 * certificate and key, and the log's verifier key.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runScript, type CliResult } from './helpers/cli.js';
import { cardTransaction, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { V2_LOG_FIXTURE, V2_LOG_FIXTURE_VKEY } from './helpers/log-fixtures.js';

let t: TestPaylog;
let dir: string;
const txIds: string[] = [];

function runBundled(args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['paylog-verify.mjs', ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/**
 * The shared log format code the auditor may bundle besides src/audit/ and src/net/ (Merkle math,
 * notes, checkpoint format, leaf codec, tiles path/encoding, export format, the PAN detector).
 */
const SHARED_FORMAT_MODULES = [
  'src/errors.ts',
  'src/crypto/canonical-json.ts',
  'src/validation/identifiers.ts',
  'src/log/checkpoint.ts',
  'src/log/export-format.ts',
  'src/log/leaf.ts',
  'src/log/merkle.ts',
  'src/log/note.ts',
  'src/log/retention-policy.ts',
  'src/log/witness/cosignature.ts',
];
const SHARED_FORMAT_FOLDERS = ['src/log/leaf/', 'src/log/merkle/', 'src/log/tiles/'];
const AUDITOR_FOLDERS = ['src/audit/', 'src/net/'];
/** Auditor modules that declare types only (esbuild drops them: nothing to bundle). */
const TYPE_ONLY_AUDITOR_MODULES = ['src/audit/inputs.ts'];

beforeAll(async () => {
  // Built straight into this file's own directory: test/readme.test.ts (files run in parallel)
  // builds the default dist/paylog-verify.mjs too, as the README says, and esbuild rewrites that
  // file in place (truncate, write): copied from there, this bundle could be caught half-written.
  dir = mkdtempSync(join(tmpdir(), 'paylog-standalone-'));
  const built = await runScript('build-verifier', ['--outfile', join(dir, 'paylog-verify.mjs')]);
  expect(built.code, built.stderr).toBe(0);
  t = await startTestPaylog();
  for (let i = 0; i < 3; i++) {
    const body = cardTransaction();
    expect((await t.call('checkout', 'POST', '/v1/transactions', body)).status).toBe(201);
    txIds.push(body.transactionId);
  }
  await t.paylog.checkpoints.publish();
  const pki = t.paylog.devPki!;
  copyFileSync(pki.caPath, join(dir, 'ca.pem'));
  copyFileSync(pki.principals['auditor']!.certPath, join(dir, 'auditor.pem'));
  copyFileSync(pki.principals['auditor']!.keyPath, join(dir, 'auditor-key.pem'));
});
afterAll(async () => {
  await t?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('standalone verifier', () => {
  it('runs verify-log (entries API and tiles) and verify-proof from an empty directory', async () => {
    expect(readdirSync(dir).sort()).toEqual(['auditor-key.pem', 'auditor.pem', 'ca.pem', 'paylog-verify.mjs']);
    const vkey = t.paylog.logKeys[0]!.vkey;
    const tls = ['--url', t.paylog.url, '--cacert', 'ca.pem', '--cert', 'auditor.pem', '--key', 'auditor-key.pem', '--log-key', vkey];
    const log = await runBundled(['verify-log', ...tls, '--json']);
    expect(log.code, log.stderr).toBe(0);
    expect(JSON.parse(log.stdout)).toMatchObject({ ok: true, leafTypes: { transaction: 3 } });
    const tiles = await runBundled(['verify-log', ...tls, '--tiles', '--state', 'state.json', '--json']);
    expect(tiles.code, tiles.stderr).toBe(0);
    expect(JSON.parse(tiles.stdout)).toMatchObject({ ok: true, stateSaved: true });
    const proof = await runBundled(['verify-proof', ...tls, '--fetch', '--transaction-id', txIds[1]!, '--out', 'tx.tlog-proof']);
    expect(proof.code, proof.stderr).toBe(0);
    const offline = await runBundled(['verify-proof', '--bundle', 'tx.tlog-proof', '--log-key', vkey, '--json']);
    expect(offline.code, offline.stderr).toBe(0);
    expect(JSON.parse(offline.stdout)).toMatchObject({ ok: true });
    expect((await runBundled(['verify-log', '--bogus'])).code).toBe(2);
    expect((await runBundled(['nonsense'])).code).toBe(2);
  });

  it('verifies a log written before leaf format v3 (export of a v2 log; test/log-compat.test.ts)', async () => {
    copyFileSync(V2_LOG_FIXTURE, join(dir, 'v2.ndjson'));
    const r = await runBundled(['verify-log', '--file', 'v2.ndjson', '--log-key', V2_LOG_FIXTURE_VKEY, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, entriesVerified: 13 });
    rmSync(join(dir, 'v2.ndjson'));
  });

  it('bundles exactly the auditor folder and the shared format code, no service module (esbuild metafile)', async () => {
    const out = mkdtempSync(join(tmpdir(), 'paylog-verifier-meta-'));
    try {
      const built = await runScript('build-verifier', ['--outfile', join(out, 'v.mjs'), '--metafile', join(out, 'meta.json')]);
      expect(built.code, built.stderr).toBe(0);
      const inputs = Object.keys((JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8')) as { inputs: Record<string, unknown> }).inputs);
      const ours = inputs.filter((p) => p.startsWith('src/'));
      const foreign = ours.filter(
        (p) => !AUDITOR_FOLDERS.some((f) => p.startsWith(f)) && !SHARED_FORMAT_FOLDERS.some((f) => p.startsWith(f)) && !SHARED_FORMAT_MODULES.includes(p),
      );
      expect(foreign).toEqual([]);
      for (const service of ['src/api/', 'src/services/', 'src/db/', 'src/kms/', 'src/cse/', 'src/app.ts', 'src/log/appender.ts', 'src/log/checkpoints.ts']) {
        expect(ours.filter((p) => p.startsWith(service))).toEqual([]);
      }
      // Every module of the auditor folder is bundled, except those holding only types (erased).
      const auditor = readdirSync('src/audit').filter((f) => f.endsWith('.ts')).map((f) => `src/audit/${f}`).filter((p) => !TYPE_ONLY_AUDITOR_MODULES.includes(p));
      expect(ours.filter((p) => p.startsWith('src/audit/')).sort()).toEqual(auditor.sort());
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
