/**
 * The CLIs as an auditor runs them (spawned with tsx, cwd = repo root): verify-log exit codes
 * 0/1/2 on offline exports and state files, and verify-proof on C2SP tlog-proof bundles
 * (round trip and tamper).
 */
import { runScript } from './helpers/cli.js';
import { createHash, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatCheckpointBody } from '../src/log/checkpoint.js';
import { encodeLeaf, type Leaf } from '../src/log/leaf.js';
import { appendLeaves, hashLeaf, inclusionProof, nodeKey, rootFromLeafHashes } from '../src/log/merkle.js';
import { formatVerifierKey, signNote, type NoteSigner } from '../src/log/note.js';
import { formatProofBundle, parseProofBundle, verifyProofBundle, TLOG_PROOF_HEADER } from '../src/log/proof-bundle.js';
import { toNoteVerifiers } from '../src/log/verifier.js';

const ORIGIN = 'paylog.test/cli';
let dir: string;

function makeSigner(): { signer: NoteSigner; vkey: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url');
  return { signer: { name: ORIGIN, publicKey: raw, sign: async (m) => cryptoSign(null, m, privateKey) }, vkey: formatVerifierKey(ORIGIN, raw) };
}
const KEY = makeSigner();
const OTHER = makeSigner();

function leaf(i: number, tag = 'c'): Buffer {
  const h = createHash('sha256').update(`${tag}${i}`).digest('base64');
  const l: Leaf = {
    v: 1,
    type: 'transaction',
    time: '2026-01-02T03:04:05.678Z',
    transactionId: `ord-${tag}-${i}`,
    processor: 'acme',
    amount: { value: 500 + i, currency: 'EUR' },
    paymentMethodType: 'iban',
    envelope: { version: 1, ciphertextSha256: h, keyCommitment: h, wrappedKeySha256: h, kmsKeyId: 'alias/test' },
  };
  return encodeLeaf(l);
}

async function writeExport(path: string, leaves: Buffer[], size = leaves.length, signer = KEY.signer): Promise<void> {
  const root = rootFromLeafHashes(leaves.slice(0, size).map(hashLeaf));
  const note = await signNote(formatCheckpointBody({ origin: ORIGIN, size, rootHash: root }), [signer]);
  const lines = [
    { type: 'paylog-export', version: 1, origin: ORIGIN },
    { type: 'checkpoint', note },
    { type: 'key', vkey: KEY.vkey },
    ...leaves.map((l, index) => ({ type: 'entry', index, leaf: l.toString('base64') })),
  ];
  writeFileSync(path, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
}

const run = (script: string, args: string[]) => runScript(script, args);

const leaves20 = Array.from({ length: 20 }, (_, i) => leaf(i));

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'paylog-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('verify-log CLI', () => {
  it('exit 0 on a good export, saves state, then detects rollback from that state (exit 1)', async () => {
    const good = join(dir, 'good.ndjson');
    const state = join(dir, 'state.json');
    await writeExport(good, leaves20);
    const r0 = await run('verify-log', ['--file', good, '--log-key', KEY.vkey, '--state', state, '--json']);
    expect(r0.code, r0.stderr).toBe(0);
    expect(JSON.parse(r0.stdout)).toMatchObject({ ok: true, treeSize: 20, stateSaved: true });
    expect(JSON.parse(readFileSync(state, 'utf8'))).toMatchObject({ size: 20, keys: [KEY.vkey] });

    const shorter = join(dir, 'shorter.ndjson');
    await writeExport(shorter, leaves20.slice(0, 15));
    const r1 = await run('verify-log', ['--file', shorter, '--state', state, '--json']); // keys pinned in state
    expect(r1.code, r1.stderr).toBe(1);
    const rep = JSON.parse(r1.stdout);
    expect(rep.failures.map((f: { code: string }) => f.code)).toContain('ROLLBACK');
    expect(JSON.parse(readFileSync(state, 'utf8')).size).toBe(20); // not overwritten on failure
  });

  it('exit 1 naming the first bad index for a gap; human output names it too', async () => {
    const gap = join(dir, 'gap.ndjson');
    await writeExport(gap, leaves20);
    const lines = readFileSync(gap, 'utf8').split('\n').filter((l) => !l.includes('"index":9,'));
    writeFileSync(gap, lines.join('\n'));
    const r = await run('verify-log', ['--file', gap, '--log-key', KEY.vkey]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('first bad index: 9');
  });

  it('exit 1 for a checkpoint signed by an untrusted key', async () => {
    const foreign = join(dir, 'foreign.ndjson');
    await writeExport(foreign, leaves20, 20, OTHER.signer);
    const r = await run('verify-log', ['--file', foreign, '--log-key', KEY.vkey, '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).failures[0].code).toBe('CHECKPOINT_INVALID');
  });

  it('exit 2 for usage and connection errors', async () => {
    const good = join(dir, 'good2.ndjson');
    await writeExport(good, leaves20);
    expect((await run('verify-log', ['--file', good])).code).toBe(2); // no trusted key
    expect((await run('verify-log', ['--file', good, '--log-key', 'not-a-key'])).code).toBe(2);
    expect((await run('verify-log', ['--bogus'])).code).toBe(2);
    expect((await run('verify-log', ['--url', 'https://127.0.0.1:1'])).code).toBe(2); // missing certs
    const pem = join(dir, 'x.pem');
    writeFileSync(pem, 'not a pem');
    const conn = await run('verify-log', ['--url', 'https://127.0.0.1:9', '--cacert', pem, '--cert', pem, '--key', pem, '--log-key', KEY.vkey]);
    expect(conn.code).toBe(2);
  });

  it('--trust-server-key trusts the export\'s key, loudly', async () => {
    const good = join(dir, 'good3.ndjson');
    await writeExport(good, leaves20);
    const r = await run('verify-log', ['--file', good, '--trust-server-key', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('WARNING');
    expect(JSON.parse(r.stdout).trust).toBe('server-key');
  });
});

describe('verify-proof (C2SP tlog-proof bundles)', () => {
  const { newNodes, root } = appendLeaves(0, [], leaves20.map(hashLeaf));
  const nodes = new Map(newNodes.map((n) => [nodeKey(n), n.hash]));
  let bundleText: string;

  beforeAll(async () => {
    const note = await signNote(formatCheckpointBody({ origin: ORIGIN, size: 20, rootHash: root }), [KEY.signer]);
    bundleText = formatProofBundle({ leaf: leaves20[13]!, index: 13, hashes: inclusionProof(13, 20, nodes), checkpoint: note });
  });

  it('round-trips and verifies in-process', () => {
    expect(bundleText.startsWith(`${TLOG_PROOF_HEADER}\nextra `)).toBe(true);
    const b = parseProofBundle(bundleText);
    expect(b.index).toBe(13);
    expect(formatProofBundle(b)).toBe(bundleText);
    const v = verifyProofBundle(b, toNoteVerifiers([KEY.vkey]), { transactionId: 'ord-c-13' });
    expect(v).toMatchObject({ ok: true, treeSize: 20, leaf: { transactionId: 'ord-c-13' } });
    expect(verifyProofBundle(b, toNoteVerifiers([KEY.vkey]), { transactionId: 'ord-c-12' }).ok).toBe(false);
  });

  it('CLI: exit 0 and prints non-secret fields; exit 1 on a tampered leaf, index or key; exit 2 on garbage', async () => {
    const path = join(dir, 'p.tlog-proof');
    writeFileSync(path, bundleText);
    const ok = await run('verify-proof', ['--bundle', path, '--log-key', KEY.vkey]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('ord-c-13');
    expect(ok.stdout).toContain('513 EUR');

    const b = parseProofBundle(bundleText);
    const otherLeaf = join(dir, 'leaf.tlog-proof');
    writeFileSync(otherLeaf, formatProofBundle({ ...b, leaf: leaves20[12]! }));
    const r1 = await run('verify-proof', ['--bundle', otherLeaf, '--log-key', KEY.vkey, '--json']);
    expect(r1.code).toBe(1);
    expect(JSON.parse(r1.stdout).failures[0].code).toBe('INCLUSION_PROOF_INVALID');

    const wrongIndex = join(dir, 'index.tlog-proof');
    writeFileSync(wrongIndex, formatProofBundle({ ...b, index: 12 }));
    expect((await run('verify-proof', ['--bundle', wrongIndex, '--log-key', KEY.vkey])).code).toBe(1);

    const r3 = await run('verify-proof', ['--bundle', path, '--log-key', OTHER.vkey, '--json']);
    expect(r3.code).toBe(1);
    expect(JSON.parse(r3.stdout).failures[0].code).toBe('CHECKPOINT_INVALID');

    const garbage = join(dir, 'garbage.tlog-proof');
    writeFileSync(garbage, 'hello\n');
    expect((await run('verify-proof', ['--bundle', garbage, '--log-key', KEY.vkey])).code).toBe(2);
    expect((await run('verify-proof', ['--bundle', path])).code).toBe(2); // no trusted key
    expect(existsSync(join(dir, 'nothing'))).toBe(false);
  });
});
