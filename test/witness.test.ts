/**
 * Witnesses (C2SP tlog-witness, tlog-cosignature): two witnesses run in-process on loopback,
 * the service submits each new checkpoint to both and serves the newest one that reached the
 * quorum with both cosignatures; a rolled-back, forked or foreign checkpoint is refused by each
 * witness with the spec's status codes and fails `verify-log --witness`; the cosignature is
 * checked by hand against the spec's signed message.
 */
import { createHash, generateKeyPairSync, randomBytes, verify as edVerify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runScript } from './helpers/cli.js';
import { startTestPaylog, newTestDatabase, type TestPaylog } from './helpers/paylog.js';
import { formatCheckpointBody } from '../src/log/checkpoint.js';
import { encodeLeaf } from '../src/log/leaf.js';
import { kmsNoteSigners } from '../src/log/checkpoint-publisher.js';
import { LogClient, checkpointSize } from '../src/audit/index.js';
import { signNote, formatVerifierKey, type NoteSigner } from '../src/log/note.js';
import { toNoteVerifiers, verifyLog } from '../src/audit/index.js';
import { formatAddCheckpoint, parseAddCheckpoint } from '../src/log/witness/add-checkpoint.js';
import { cosignatureKeyId, formatCosignerVkey, parseCosignerVkey, signCosignature, splitNote, verifyCosignatures } from '../src/log/witness/cosignature.js';
import { witnessPolicy } from '../src/audit/index.js';
import { loadConfig } from '../src/config.js';
import { startWitness, type RunningWitness } from '../src/log/witness/witness.js';

describe('tlog-cosignature and tlog-witness formats', () => {
  it('a cosignature line is key ID || big-endian u64 timestamp || Ed25519 over "cosignature/v1\\ntime <t>\\n<body>"', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const spki = publicKey.export({ format: 'der', type: 'spki' });
    const pub = Buffer.from(spki.subarray(spki.length - 32));
    const name = 'witness.example/w1';
    const body = 'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n';
    const line = signCosignature({ name, publicKey: pub, privateKey }, body, 1679315147n);
    // By hand, from the spec text.
    expect(line.startsWith(`\u2014 ${name} `)).toBe(true);
    expect(line.endsWith('\n')).toBe(true);
    const blob = Buffer.from(line.slice(`\u2014 ${name} `.length, -1), 'base64');
    expect(blob.length).toBe(4 + 8 + 64);
    const keyId = createHash('sha256').update(Buffer.concat([Buffer.from(`${name}\n`), Buffer.from([0x04]), pub])).digest().subarray(0, 4);
    expect(blob.subarray(0, 4)).toEqual(keyId);
    expect(blob.readBigUInt64BE(4)).toBe(1679315147n);
    const message = Buffer.from(`cosignature/v1\ntime 1679315147\n${body}`);
    expect(edVerify(null, message, publicKey, blob.subarray(12))).toBe(true);
    expect(edVerify(null, Buffer.from(`cosignature/v1\ntime 1679315148\n${body}`), publicKey, blob.subarray(12))).toBe(false);
    // vkey type 0x04 round-trips; the log's type-0x01 vkey is not a witness key.
    const vkey = formatCosignerVkey({ name, publicKey: pub });
    expect(vkey).toBe(`${name}+${keyId.toString('hex')}+${Buffer.concat([Buffer.from([0x04]), pub]).toString('base64')}`);
    expect(parseCosignerVkey(vkey).publicKey).toEqual(pub);
    expect(() => parseCosignerVkey(formatVerifierKey(name, pub))).toThrow();
    expect(cosignatureKeyId(name, pub)).toEqual(keyId);
    // Verified through the library, and rejected for another body.
    const note = `${body}\n\u2014 example.com/behind-the-sofa ${randomBytes(68).toString('base64')}\n${line}`;
    expect(verifyCosignatures(note, [{ name, publicKey: pub }], 1679315147 + 10).valid).toHaveLength(1);
    const forged = note.replace('20852163', '20852164');
    const r = verifyCosignatures(forged, [{ name, publicKey: pub }], 1679315147 + 10);
    expect(r.valid).toHaveLength(0);
    expect(r.invalid).toHaveLength(1);
  });

  it('add-checkpoint bodies: old line, proof lines, empty line, checkpoint', () => {
    const proof = [randomBytes(32), randomBytes(32)];
    const cp = 'o\n5\n' + Buffer.alloc(32).toString('base64') + '\n\n\u2014 o AAAA\n';
    const body = formatAddCheckpoint({ oldSize: 3, proof, checkpoint: cp });
    expect(body).toBe(`old 3\n${proof[0]!.toString('base64')}\n${proof[1]!.toString('base64')}\n\n${cp}`);
    expect(parseAddCheckpoint(body)).toEqual({ oldSize: 3, proof, checkpoint: cp });
    for (const bad of ['old 03\n\nx', 'old -1\n\nx', 'new 3\n\nx', 'old 3\nnot-base64\n\nx', 'old 3\n', `old 1\n${'AAAA\n'.repeat(1)}\nx`]) {
      expect(() => parseAddCheckpoint(bad), bad).toThrow();
    }
  });
});

describe('PAYLOG_WITNESSES / PAYLOG_WITNESS_QUORUM', () => {
  it('are checked at start and name the bad setting', () => {
    const { publicKey } = generateKeyPairSync('ed25519');
    const spki = publicKey.export({ format: 'der', type: 'spki' });
    const vkey = formatCosignerVkey({ name: 'w.example/1', publicKey: Buffer.from(spki.subarray(spki.length - 32)) });
    const base = { PAYLOG_DATA_DIR: tmpdir() };
    const ok = loadConfig({ ...base, PAYLOG_WITNESSES: `http://127.0.0.1:7380 ${vkey}` });
    expect(ok.witnesses).toMatchObject({ quorum: 1, endpoints: [{ url: 'http://127.0.0.1:7380', key: expect.stringMatching(/^w\.example\/1\+[0-9a-f]{8}$/) }] });
    expect(() => loadConfig({ ...base, PAYLOG_WITNESSES: `http://127.0.0.1:7380 ${vkey}`, PAYLOG_WITNESS_QUORUM: '2' })).toThrow(/PAYLOG_WITNESS_QUORUM/);
    expect(() => loadConfig({ ...base, PAYLOG_WITNESSES: 'http://127.0.0.1:7380' })).toThrow(/PAYLOG_WITNESSES/);
    expect(() => loadConfig({ ...base, PAYLOG_WITNESSES: `ftp://x ${vkey}` })).toThrow(/PAYLOG_WITNESSES/);
    expect(() => loadConfig({ ...base, PAYLOG_WITNESSES: `http://a ${vkey},http://b ${vkey}` })).toThrow(/twice/);
    expect(() => loadConfig({ ...base, PAYLOG_WITNESSES: `http://a ${formatVerifierKey('w.example/1', Buffer.from(spki.subarray(spki.length - 32)))}` })).toThrow(/type 0x04/);
    expect(() => loadConfig({ ...base, PAYLOG_WITNESS_QUORUM: '1' })).toThrow(/PAYLOG_WITNESS_QUORUM/);
  });
});

describe('two witnesses and the service', () => {
  let t: TestPaylog;
  let w1: RunningWitness;
  let w2: RunningWitness;
  const dirs: string[] = [];
  let logVkey: string;
  let origin: string;
  let signers: NoteSigner[];
  let client: LogClient;
  const tmp = () => {
    const d = mkdtempSync(join(tmpdir(), 'paylog-witness-'));
    dirs.push(d);
    return d;
  };

  const post = async (w: RunningWitness, body: string) => {
    const r = await fetch(`${w.url}/add-checkpoint`, { method: 'POST', body });
    return { status: r.status, type: r.headers.get('content-type') ?? '', text: await r.text() };
  };

  async function appendAndPublish(n: number): Promise<number> {
    await Promise.all(Array.from({ length: n }, (_, i) => t.paylog.appender.append({ kind: 'key_event', leaf: encodeLeaf({ v: 1, type: 'key_event', time: new Date().toISOString(), event: 'shred', keyName: `w${i}-${randomBytes(4).toString('hex')}` }), createdAt: new Date() })));
    const c = await t.paylog.checkpoints.publish();
    return c!.size;
  }

  /**
   * Bounded poll until /v1/log/checkpoint serves a witnessed checkpoint of `size` (the service asks
   * the witnesses after publishing, in the background): a deadline, not a count of polls (200 polls
   * were ~5 s, short for two witness round trips on a loaded machine).
   */
  async function witnessedAt(size: number): Promise<string> {
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
      const r = await t.call('auditor', 'GET', '/v1/log/checkpoint');
      if (r.status === 200 && checkpointSize(r.text) === size) return r.text;
      await new Promise((res) => setTimeout(res, 25));
    }
    throw new Error(`checkpoint ${size} was not witnessed`);
  }

  beforeAll(async () => {
    const dataDir = tmp();
    const databaseUrl = await newTestDatabase();
    const first = await startTestPaylog({ dataDir, databaseUrl });
    logVkey = first.paylog.logKeys[0]!.vkey;
    origin = first.paylog.config.logOrigin;
    await first.stop();
    w1 = await startWitness({ host: '127.0.0.1', port: 0, dataDir: tmp(), name: 'witness.test/w1', logVkeys: [logVkey] });
    w2 = await startWitness({ host: '127.0.0.1', port: 0, dataDir: tmp(), name: 'witness.test/w2', logVkeys: [logVkey] });
    t = await startTestPaylog({
      dataDir,
      databaseUrl,
      env: { PAYLOG_WITNESSES: `${w1.url} ${w1.witness.vkey},${w2.url} ${w2.witness.vkey}`, PAYLOG_WITNESS_QUORUM: '2' },
    });
    signers = (await kmsNoteSigners(t.paylog.kms, origin, t.paylog.signingKeyIds)).signers;
    const a = t.paylog.devPki!.principals['auditor']!;
    client = LogClient.fromFiles(t.paylog.url, t.paylog.devPki!.caPath, a.certPath, a.keyPath);
  });
  afterAll(async () => {
    client?.close();
    await t?.stop();
    await w1?.close();
    await w2?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('each witness writes its vkey file on first start', () => {
    expect(readFileSync(join(dirs[1]!, 'vkey'), 'utf8')).toBe(`${w1.witness.vkey}\n`);
    expect(parseCosignerVkey(w2.witness.vkey).name).toBe('witness.test/w2');
  });

  it('both witnesses cosign a consistent sequence; the service serves it with both cosignatures', async () => {
    const witnesses = [parseCosignerVkey(w1.witness.vkey), parseCosignerVkey(w2.witness.vkey)];
    let last = 0;
    for (const n of [3, 1, 300, 17]) {
      const size = await appendAndPublish(n);
      expect(size).toBeGreaterThan(last);
      last = size;
      const note = await witnessedAt(size);
      const { valid } = verifyCosignatures(note, witnesses);
      expect(valid.map((v) => v.name).sort()).toEqual(['witness.test/w1', 'witness.test/w2']);
      expect(w1.witness.state(origin)?.size).toBe(size);
      expect(w2.witness.state(origin)?.size).toBe(size);
      // The tiles' checkpoint is the same witnessed checkpoint.
      const tiled = (await t.call('auditor', 'GET', '/v1/log/tiles/checkpoint')).text;
      expect(splitNote(tiled).text).toBe(splitNote(note).text);
      expect(verifyCosignatures(tiled, witnesses).valid).toHaveLength(2);
    }
    const ready = await t.call(null, 'GET', '/readyz');
    expect(ready.json.details.witnesses).toMatchObject({ quorum: 2, witnesses: 2 });
    const metrics = await t.call(null, 'GET', '/metrics');
    expect(metrics.text).toContain('paylog_witness_lag_entries');
    expect(metrics.text).toMatch(/paylog_witness_submissions_total\{witness="witness.test\/w1[^"]*",outcome="cosigned"\} [1-9]/);
  });

  it('cosignature rows planted by the runtime role (forged lines, at the served size and at a size never signed) are never served', async () => {
    const witnesses = [parseCosignerVkey(w1.witness.vkey), parseCosignerVkey(w2.witness.vkey)];
    const size = await appendAndPublish(2);
    await witnessedAt(size);
    const runtime = t.paylog.database.pool; // the service's own login: a member of paylog_app
    const genuine = (await runtime.query('SELECT witness_key, root_hash, signature_line FROM witness_cosignatures WHERE checkpoint_size = $1', [size])).rows as {
      witness_key: string;
      root_hash: Buffer;
      signature_line: string;
    }[];
    expect(genuine.length).toBeGreaterThanOrEqual(2);
    // A forged line: a genuine line's name and key id with another signature.
    const forge = (line: string) => line.replace(/ (\S+)$/, (_m, b64: string) => ` ${Buffer.from(Buffer.from(b64, 'base64').map((x, i) => (i > 4 ? x ^ 0x5a : x))).toString('base64')}`);
    for (const g of genuine) {
      for (const at of [size, size + 1_000]) {
        await runtime.query('INSERT INTO witness_cosignatures (checkpoint_size, root_hash, witness_key, cosigned_at, signature_line) VALUES ($1, $2, $3, $4, $5)', [
          at,
          g.root_hash,
          g.witness_key,
          Math.floor(Date.now() / 1000),
          forge(g.signature_line),
        ]);
      }
    }
    await new Promise((res) => setTimeout(res, 1_100)); // past the witnessed-checkpoint cache
    const served = (await t.call('auditor', 'GET', '/v1/log/checkpoint')).text;
    expect(checkpointSize(served)).toBe(size);
    const { valid } = verifyCosignatures(served, witnesses);
    expect(valid).toHaveLength(2);
    for (const g of genuine) expect(served).not.toContain(forge(g.signature_line));
  });

  it('verify-log --witness (entries API and tiles) accepts the quorum and refuses a missing or stale one', async () => {
    const a = t.paylog.devPki!.principals['auditor']!;
    const tls = ['--url', t.paylog.url, '--cacert', t.paylog.devPki!.caPath, '--cert', a.certPath, '--key', a.keyPath, '--log-key', logVkey];
    const ok = await runScript('verify-log', [...tls, '--witness', w1.witness.vkey, '--witness', w2.witness.vkey, '--witness-quorum', '2', '--json']);
    expect(ok.code, ok.stderr + ok.stdout).toBe(0);
    expect(JSON.parse(ok.stdout).cosignedBy).toHaveLength(2);
    const tiles = await runScript('verify-log', [...tls, '--tiles', '--witness', w1.witness.vkey, '--witness', w2.witness.vkey, '--json']);
    expect(tiles.code, tiles.stderr + tiles.stdout).toBe(0);
    const { publicKey } = generateKeyPairSync('ed25519');
    const spki = publicKey.export({ format: 'der', type: 'spki' });
    const stranger = formatCosignerVkey({ name: 'witness.test/stranger', publicKey: Buffer.from(spki.subarray(spki.length - 32)) });
    const none = await runScript('verify-log', [...tls, '--witness', stranger, '--json']);
    expect(none.code).toBe(1);
    expect(JSON.parse(none.stdout).failures.map((f: { code: string }) => f.code)).toContain('WITNESS_QUORUM');
    // --max-age: the same cosignatures two days later are too old.
    const note = await client.checkpoint();
    const stale = await verifyLog({
      checkpoint: note,
      verifiers: toNoteVerifiers([logVkey]),
      entries: client.entries(0, checkpointSize(note)),
      witnesses: witnessPolicy([w1.witness.vkey, w2.witness.vkey], 1),
      now: () => new Date(Date.now() + 2 * 86_400_000),
    });
    expect(stale.failures.map((f) => f.code)).toEqual(['WITNESS_QUORUM']);
    expect((await runScript('verify-log', [...tls, '--witness-quorum', '1'])).code).toBe(2); // needs --witness
  });

  it('rolled-back, forked and foreign checkpoints are refused by each witness (409 with its size, 422, 400, 403, 404) and fail verify-log --witness', async () => {
    const size = w1.witness.state(origin)!.size;
    const sign = (s: number, root: Buffer, by = signers) => signNote(formatCheckpointBody({ origin, size: s, rootHash: root }), by);
    const fork = await sign(size, randomBytes(32));
    const longerFork = await sign(size + 5, randomBytes(32));
    const rollback = await sign(size - 3, randomBytes(32));
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const spki = publicKey.export({ format: 'der', type: 'spki' });
    const foreignSigner: NoteSigner = { name: origin, publicKey: Buffer.from(spki.subarray(spki.length - 32)), sign: async (m) => (await import('node:crypto')).sign(null, m, privateKey) };
    const foreign = await sign(size + 1, randomBytes(32), [foreignSigner]);
    const otherLog = await signNote(formatCheckpointBody({ origin: 'other.example/log', size: 1, rootHash: randomBytes(32) }), [{ ...foreignSigner, name: 'other.example/log' }]);
    for (const w of [w1, w2]) {
      const sameSize = await post(w, formatAddCheckpoint({ oldSize: size, proof: [], checkpoint: fork }));
      expect(sameSize.status).toBe(409);
      expect(sameSize.type).toBe('text/x.tlog.size');
      expect(sameSize.text).toBe(`${size}\n`);
      expect((await post(w, formatAddCheckpoint({ oldSize: size, proof: [randomBytes(32), randomBytes(32)], checkpoint: longerFork }))).status).toBe(422);
      const back = await post(w, formatAddCheckpoint({ oldSize: size - 3, proof: [], checkpoint: rollback }));
      expect(back.status).toBe(409);
      expect(back.text).toBe(`${size}\n`);
      expect((await post(w, formatAddCheckpoint({ oldSize: size, proof: [], checkpoint: rollback }))).status).toBe(400);
      expect((await post(w, formatAddCheckpoint({ oldSize: 0, proof: [], checkpoint: longerFork }))).text).toBe(`${size}\n`);
      expect((await post(w, formatAddCheckpoint({ oldSize: size, proof: [], checkpoint: foreign }))).status).toBe(403);
      expect((await post(w, formatAddCheckpoint({ oldSize: 0, proof: [], checkpoint: otherLog }))).status).toBe(404);
      expect((await post(w, 'garbage')).status).toBe(400);
      expect(w.witness.state(origin)!.size).toBe(size); // nothing was persisted
    }
    // verify-log --witness refuses the fork: it carries no cosignature, and the witnesses'
    // cosignatures of the real checkpoint do not verify over the forked body.
    const real = await client.checkpoint();
    const cosigs = splitNote(real).lines.filter((l) => l.startsWith('\u2014 witness.test/'));
    for (const note of [fork, `${fork}${cosigs.map((l) => `${l}\n`).join('')}`]) {
      const r = await verifyLog({
        checkpoint: note,
        verifiers: toNoteVerifiers([logVkey]),
        entries: client.entries(0, size),
        witnesses: witnessPolicy([w1.witness.vkey, w2.witness.vkey], 1),
      });
      expect(r.ok).toBe(false);
      expect(r.failures.map((f) => f.code)).toContain('WITNESS_QUORUM');
    }
  });

  it('a restarted witness keeps its key; one that lost its state answers 409 with size 0 and the service catches it up', async () => {
    const before = w1.witness.vkey;
    const dir = dirs[1]!;
    await w1.close();
    const size = await appendAndPublish(5); // w1 is down: only w2 cosigns, no quorum of 2
    await new Promise((r) => setTimeout(r, 100));
    expect(checkpointSize((await t.call('auditor', 'GET', '/v1/log/checkpoint')).text)).toBeLessThan(size);
    // Simulate a witness that lost its state: it now answers 409 "0" to the service's old size.
    rmSync(join(dir, 'state'), { recursive: true, force: true });
    const port = Number(new URL(w1.url).port);
    w1 = await startWitness({ host: '127.0.0.1', port, dataDir: dir, name: 'witness.test/w1', logVkeys: [logVkey] });
    expect(w1.witness.vkey).toBe(before);
    const next = await appendAndPublish(2);
    await witnessedAt(next);
    expect(w1.witness.state(origin)!.size).toBe(next);
    const metrics = await t.call(null, 'GET', '/metrics');
    expect(metrics.text).toMatch(/paylog_witness_submissions_total\{witness="witness.test\/w1[^"]*",outcome="conflict"\} [1-9]/);
  });
});
