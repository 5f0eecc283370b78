/**
 * The CLIs as an auditor runs them (spawned with tsx, cwd = repo root): verify-log exit codes
 * 0/1/2 on offline exports and state files, and against a scripted mTLS log server (the contract
 * command line with trust on first use and key pinning; bad, refused and short answers are exit
 * 1, transport failures exit 2), and verify-proof on C2SP tlog-proof bundles (round trip and tamper).
 */
import { runScript, type CliResult } from './helpers/cli.js';
import { createHash, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { formatCheckpointBody } from '../src/log/checkpoint.js';
import { encodeLeaf, type Leaf } from '../src/log/leaf.js';
import { appendLeaves, consistencyProof, hashLeaf, inclusionProof, nodeKey, rootFromLeafHashes } from '../src/log/merkle.js';
import { createCa, issuePrincipalCertificate, issueServerCertificate } from '../src/pki/ca.js';
import { formatVerifierKey, signNote, type NoteSigner } from '../src/log/note.js';
import { formatProofBundle, parseProofBundle, verifyProofBundle, TLOG_PROOF_HEADER } from '../src/audit/index.js';
import { toNoteVerifiers } from '../src/audit/index.js';

// Tests here spawn up to seven tsx processes one after another (~3 s each on a loaded 2-core
// machine, 20 s for the longest test): the default 60 s per test left too little room.
vi.setConfig({ testTimeout: 180_000 });

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

  it('--file: a malformed line is a failure of that file (exit 1, index named); a missing file is exit 2', async () => {
    const bad = join(dir, 'badline.ndjson');
    await writeExport(bad, leaves20);
    const lines = readFileSync(bad, 'utf8').split('\n');
    const at = lines.findIndex((l) => l.includes('"index":6,'));
    lines[at] = JSON.stringify({ type: 'entry', index: 6, leaf: '%%% not base64 %%%' });
    writeFileSync(bad, lines.join('\n'));
    const r = await run('verify-log', ['--file', bad, '--log-key', KEY.vkey, '--json']);
    expect(r.code, r.stderr).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, firstBadIndex: 6, failures: [{ code: 'EXPORT_MALFORMED', index: 6 }] });

    const notJson = join(dir, 'notjson.ndjson');
    writeFileSync(notJson, lines.map((l, i) => (i === at ? '{"type":"entry",' : l)).join('\n'));
    const r2 = await run('verify-log', ['--file', notJson, '--log-key', KEY.vkey]);
    expect(r2.code, r2.stderr).toBe(1);
    expect(r2.stdout).toContain('first bad index: 6');

    const noHeader = join(dir, 'noheader.ndjson');
    writeFileSync(noHeader, lines.slice(1).join('\n'));
    const r3 = await run('verify-log', ['--file', noHeader, '--log-key', KEY.vkey, '--json']);
    expect(r3.code, r3.stderr).toBe(1);
    expect(JSON.parse(r3.stdout).failures[0].code).toBe('EXPORT_MALFORMED');
    // Same with the export's own keys: the header is read to find them.
    expect((await run('verify-log', ['--file', noHeader, '--trust-server-key'])).code).toBe(1);

    const missing = await run('verify-log', ['--file', join(dir, 'does-not-exist.ndjson'), '--log-key', KEY.vkey]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('ENOENT');
    expectNoStack(missing);
    expect((await run('verify-log', ['--file', dir, '--log-key', KEY.vkey])).code).toBe(2); // a directory: unreadable
  });

  it('--help prints usage (trust order, exit codes) and exit 0; errors are one line, never a stack trace', async () => {
    const help = await run('verify-log', ['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--log-key');
    expect(help.stdout).toContain('/v1/log/key');
    expect(help.stdout).toMatch(/Exit codes: 0 verified; 1 not verified/);
    expectNoStack(help);
    const errors = await Promise.all([
      run('verify-log', ['--bogus']),
      run('verify-log', []),
      run('verify-log', ['--file', join(dir, 'nope'), '--log-key', KEY.vkey]),
      run('verify-log', ['--file', join(dir, 'nope'), '--log-key', join(dir, 'no-key-file')]),
      run('verify-log', ['--url', 'https://127.0.0.1:1', '--cacert', join(dir, 'nope.pem'), '--cert', 'x', '--key', 'y']),
      run('verify-log', ['--url', 'not a url', '--cacert', join(dir, 'x.pem'), '--cert', join(dir, 'x.pem'), '--key', join(dir, 'x.pem')]),
    ]);
    for (const e of errors) {
      expect(e.code, e.stderr).toBe(2);
      expect(e.stderr.trim().length).toBeGreaterThan(0);
      expectNoStack(e);
    }
  });
});

/** A stack trace line, as Node prints one ("    at fn (file:line:col)"). */
function expectNoStack(r: CliResult): void {
  expect(r.stderr).not.toMatch(/^\s+at .+[:(]/m);
  expect(r.stdout).not.toMatch(/^\s+at .+[:(]/m);
}

/**
 * A scripted paylog log server over mTLS (same CA pinning as the real one) serving the 20-leaf
 * log above; each knob makes it misbehave in one way.
 */
interface Script {
  /** Current checkpoint size (12 or 20; both are signed). */
  size: number;
  /** Keys published at /v1/log/key, and the signer of the checkpoints. */
  publish: string[];
  signer: 'KEY' | 'OTHER';
  keyStatus?: number;
  checkpointStatus?: number;
  /** Entries the server actually has (fewer than signed = a short log). */
  stored?: number;
  /** HTTP status for entry pages from this index on. */
  refuseEntriesFrom?: number;
  /** Index of an entry served with a malformed leaf. */
  malformedAt?: number;
  entriesNotJson?: boolean;
  /** Destroy the connection on entry pages from this index on. */
  resetEntriesFrom?: number;
  consistencyStatus?: number;
}

describe('verify-log against a live (scripted) log over mTLS', () => {
  const { newNodes } = appendLeaves(0, [], leaves20.map(hashLeaf));
  const nodes = new Map(newNodes.map((n) => [nodeKey(n), n.hash]));
  const notes = new Map<string, string>();
  let server: Server;
  let url: string;
  let tls: string[];
  let wrongCa: string;
  let script: Script;
  const reset = (): void => {
    script = { size: 20, publish: [KEY.vkey], signer: 'KEY' };
  };
  const jsonError = (status: number, code: string) => ({ status, body: { error: { code, message: 'scripted refusal' } } });

  function answer(path: string, q: URLSearchParams): { status: number; body: unknown; text?: boolean } | 'reset' {
    const s = script;
    if (path === '/v1/log/key') return s.keyStatus ? jsonError(s.keyStatus, 'FORBIDDEN') : { status: 200, body: { origin: ORIGIN, keys: s.publish.map((vkey) => ({ vkey })), vkey: s.publish[0] } };
    if (path === '/v1/log/checkpoint') {
      if (s.checkpointStatus) return jsonError(s.checkpointStatus, 'INTERNAL');
      return { status: 200, body: notes.get(`${s.signer}:${s.size}`), text: true };
    }
    if (path === '/v1/log/entries') {
      const start = Number(q.get('start'));
      const have = Math.min(s.stored ?? s.size, s.size);
      if (s.resetEntriesFrom !== undefined && start >= s.resetEntriesFrom) return 'reset';
      if (s.refuseEntriesFrom !== undefined && start >= s.refuseEntriesFrom) return jsonError(400, 'VALIDATION_FAILED');
      if (s.entriesNotJson) return { status: 200, body: '<html>proxy error</html>', text: true };
      // Pages are cut at the refusal / reset point so the next page starts there.
      const cut = Math.min(have, s.refuseEntriesFrom ?? Infinity, s.resetEntriesFrom ?? Infinity, Number(q.get('end')));
      const entries = [];
      for (let i = start; i < cut; i++) entries.push({ index: i, leaf: i === s.malformedAt ? 'not base64!' : leaves20[i]!.toString('base64') });
      return { status: 200, body: { start, end: Math.max(start, cut), treeSize: have, entries } };
    }
    if (path === '/v1/log/proof/consistency') {
      if (s.consistencyStatus) return jsonError(s.consistencyStatus, 'INTERNAL');
      return { status: 200, body: { from: Number(q.get('from')), to: Number(q.get('to')), hashes: consistencyProof(Number(q.get('from')), Number(q.get('to')), nodes).map((h) => h.toString('base64')) } };
    }
    if (path === '/v1/log/proof/inclusion') {
      const [i, n] = [Number(q.get('index')), Number(q.get('treeSize'))];
      return { status: 200, body: { index: i, treeSize: n, hashes: inclusionProof(i, n, nodes).map((h) => h.toString('base64')) } };
    }
    return jsonError(404, 'NOT_FOUND');
  }

  beforeAll(async () => {
    for (const [name, signer] of [['KEY', KEY.signer], ['OTHER', OTHER.signer]] as const) {
      for (const size of [12, 20]) {
        const root = rootFromLeafHashes(leaves20.slice(0, size).map(hashLeaf));
        notes.set(`${name}:${size}`, await signNote(formatCheckpointBody({ origin: ORIGIN, size, rootHash: root }), [signer]));
      }
    }
    const ca = createCa();
    const srv = issueServerCertificate(ca, ['127.0.0.1']);
    const auditor = issuePrincipalCertificate(ca, { role: 'auditor', name: 'auditor' });
    const files = { ca: ca.certPem, cert: auditor.certPem, key: auditor.keyPem, other: createCa().certPem };
    for (const [name, pem] of Object.entries(files)) writeFileSync(join(dir, `mock-${name}.pem`), pem);
    wrongCa = join(dir, 'mock-other.pem');
    server = createServer({ key: srv.keyPem, cert: srv.certPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      const u = new URL(req.url ?? '/', 'https://x');
      const a = answer(u.pathname, u.searchParams);
      if (a === 'reset') return void req.socket.destroy();
      res.writeHead(a.status, { 'content-type': a.text ? 'text/plain' : 'application/json' });
      res.end(a.text ? String(a.body) : JSON.stringify(a.body));
    });
    server.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    tls = ['--url', url, '--cacert', join(dir, 'mock-ca.pem'), '--cert', join(dir, 'mock-cert.pem'), '--key', join(dir, 'mock-key.pem')];
  }, 60_000);
  afterAll(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

  const live = async (args: string[], patch: Partial<Script> = {}): Promise<CliResult> => {
    reset();
    Object.assign(script, patch);
    const r = await run('verify-log', [...tls, ...args]);
    expectNoStack(r);
    return r;
  };
  const report = (r: CliResult) => JSON.parse(r.stdout) as { ok: boolean; trust: string; trustedKeys: string[]; stateSaved: boolean; firstBadIndex?: number; failures: Array<{ code: string; index?: number }> };

  it('the contract command line (no --log-key, no state) verifies, trusting the server key on first use, loudly', async () => {
    const r = await live(['--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(report(r)).toMatchObject({ ok: true, treeSize: 20, trust: 'server-key', trustedKeys: [KEY.vkey], stateSaved: false });
    expect(r.stderr).toContain('WARNING');
    expect(r.stderr).toContain(KEY.vkey);
    expect(r.stdout).not.toContain('WARNING');
    const human = await live([]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain('trust:      SERVER-PUBLISHED KEY');
    expect(human.stderr).toContain('WARNING');
    // --trust-server-key is still accepted (it is the default now); --log-key is never a TOFU.
    expect(report(await live(['--trust-server-key', '--json'])).trust).toBe('server-key');
    const pinned = await live(['--log-key', KEY.vkey, '--json']);
    expect(report(pinned).trust).toBe('log-key');
    expect(pinned.stderr).not.toContain('WARNING');
  });

  it('first use pins the fetched key into --state; later runs trust only the pinned key', async () => {
    const state = join(dir, 'tofu-state.json');
    const first = await live(['--state', state, '--json'], { size: 12 });
    expect(first.code, first.stderr).toBe(0);
    expect(report(first)).toMatchObject({ trust: 'server-key', stateSaved: true });
    expect(first.stderr).toContain(`pinned into ${state}`);
    expect(JSON.parse(readFileSync(state, 'utf8'))).toMatchObject({ size: 12, keys: [KEY.vkey] });

    const second = await live(['--state', state, '--json']);
    expect(second.code, second.stderr).toBe(0);
    expect(report(second)).toMatchObject({ trust: 'state', previous: { size: 12, consistency: 'verified' } });
    expect(second.stderr).not.toContain('WARNING');

    // The server now publishes (and signs with) another key: the pinned key rejects it.
    const swapped = await live(['--state', state, '--json'], { publish: [OTHER.vkey], signer: 'OTHER' });
    expect(swapped.code, swapped.stderr).toBe(1);
    expect(report(swapped)).toMatchObject({ trust: 'state', stateSaved: false, failures: [{ code: 'CHECKPOINT_INVALID' }] });
    expect(JSON.parse(readFileSync(state, 'utf8')).keys).toEqual([KEY.vkey]);
  });

  it('answers that arrive but are wrong or refused are verification failures (exit 1), naming the first bad index', async () => {
    const malformed = await live(['--log-key', KEY.vkey, '--json'], { malformedAt: 9 });
    expect(malformed.code, malformed.stderr).toBe(1);
    expect(report(malformed)).toMatchObject({ firstBadIndex: 9, failures: [{ code: 'BAD_RESPONSE', index: 9 }] });

    const short = await live(['--log-key', KEY.vkey, '--json'], { stored: 15 });
    expect(short.code, short.stderr).toBe(1);
    expect(report(short)).toMatchObject({ firstBadIndex: 15, failures: [{ code: 'MISSING_ENTRY', index: 15 }] });

    const refusedPage = await live(['--log-key', KEY.vkey], { refuseEntriesFrom: 15 });
    expect(refusedPage.code, refusedPage.stderr).toBe(1);
    expect(refusedPage.stdout).toContain('first bad index: 15');
    expect(refusedPage.stdout).toContain('[REQUEST_REFUSED]');

    const notJson = await live(['--log-key', KEY.vkey, '--json'], { entriesNotJson: true });
    expect(notJson.code, notJson.stderr).toBe(1);
    expect(report(notJson)).toMatchObject({ firstBadIndex: 0, failures: [{ code: 'BAD_RESPONSE' }] });

    const cp500 = await live(['--log-key', KEY.vkey, '--json'], { checkpointStatus: 500 });
    expect(cp500.code, cp500.stderr).toBe(1);
    expect(report(cp500).failures[0]?.code).toBe('REQUEST_REFUSED');

    const key403 = await live(['--json'], { keyStatus: 403 });
    expect(key403.code, key403.stderr).toBe(1);
    expect(report(key403)).toMatchObject({ trust: 'server-key', failures: [{ code: 'REQUEST_REFUSED' }] });

    const noKey = await live(['--json'], { publish: [] });
    expect(noKey.code, noKey.stderr).toBe(1);
    expect(report(noKey).failures[0]?.code).toBe('BAD_RESPONSE');
  });

  it('a refused consistency proof is exit 1 (PROOF_REFUSED) and leaves the state alone', async () => {
    const state = join(dir, 'consistency-state.json');
    expect((await live(['--log-key', KEY.vkey, '--state', state], { size: 12 })).code).toBe(0);
    const r = await live(['--state', state, '--json'], { consistencyStatus: 500 });
    expect(r.code, r.stderr).toBe(1);
    expect(report(r)).toMatchObject({ ok: false, trust: 'state', stateSaved: false, previous: { consistency: 'failed' } });
    expect(report(r).failures.map((f) => f.code)).toContain('PROOF_REFUSED');
    expect(JSON.parse(readFileSync(state, 'utf8')).size).toBe(12);
  });

  it('transport failures are exit 2: connection refused, TLS failure, reset mid-stream', async () => {
    const closed = createServer();
    closed.listen(0, '127.0.0.1');
    await new Promise((r) => closed.once('listening', r));
    const deadUrl = `https://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((r) => closed.close(r));
    const refused = await live(['--json', '--url', deadUrl]); // the later --url wins
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('cannot reach the log');
    expect(refused.stdout).toBe('');

    const wrongCaArgs = tls.map((a) => (a === join(dir, 'mock-ca.pem') ? wrongCa : a));
    reset();
    const tlsFail = await run('verify-log', [...wrongCaArgs, '--log-key', KEY.vkey]);
    expect(tlsFail.code).toBe(2);
    expect(tlsFail.stderr).toContain('cannot reach the log');
    expectNoStack(tlsFail);

    const midStream = await live(['--log-key', KEY.vkey, '--json'], { resetEntriesFrom: 0 });
    expect(midStream.code, midStream.stdout).toBe(2);
    expect(report(midStream).failures.map((f) => f.code)).toEqual(['FETCH_FAILED']);
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
