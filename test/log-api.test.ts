/**
 * Auditor read API against a running service: signed checkpoints (published after commits,
 * verifiable with the published key), entries, RFC 9162 proofs, refusal to sign an
 * inconsistent tree, and signing-key rotation.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { query } from './helpers/db.js';
import { cardTransaction, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { verifyCheckpoint } from '../src/log/checkpoint.js';
import { parseVerifierKey } from '../src/log/note.js';
import { appendLeaves, hashLeaf, rootFromLeafHashes, verifyConsistency, verifyInclusion } from '../src/log/merkle.js';

let t: TestPaylog;
const txIds: string[] = [];

const sql = <T = any>(text: string, params: unknown[] = []) => query<T>(t.databaseUrl, text, params);

async function verifiers() {
  const k = await t.call('auditor', 'GET', '/v1/log/key');
  expect(k.status).toBe(200);
  return k.json.keys.map((x: { vkey: string }) => {
    const v = parseVerifierKey(x.vkey);
    return { name: v.name, publicKey: v.publicKey };
  });
}

/** Polls (bounded) until a checkpoint for at least `size` is published. */
async function checkpointAtLeast(size: number) {
  for (let i = 0; i < 100; i++) {
    const r = await t.call('auditor', 'GET', '/v1/log/checkpoint');
    if (r.status === 200) {
      const c = verifyCheckpoint(r.text, await verifiers());
      if (c.size >= size) return { ...c, note: r.text };
    }
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`no checkpoint of size >= ${size} was published`);
}

async function allLeaves(size: number): Promise<Buffer[]> {
  const out: Buffer[] = [];
  while (out.length < size) {
    const r = await t.call('auditor', 'GET', `/v1/log/entries?start=${out.length}&end=${size}`);
    expect(r.status).toBe(200);
    for (const e of r.json.entries) {
      expect(e.index).toBe(out.length);
      out.push(Buffer.from(e.leaf, 'base64'));
    }
  }
  return out;
}

beforeAll(async () => {
  t = await startTestPaylog();
  const bodies = Array.from({ length: 21 }, (_, i) => cardTransaction({ processor: i % 3 === 0 ? 'globex' : 'acme' }));
  await Promise.all(bodies.map(async (b) => expect((await t.call('checkout', 'POST', '/v1/transactions', b)).status).toBe(201)));
  txIds.push(...bodies.map((b) => b.transactionId));
});
afterAll(async () => {
  await t?.stop();
});

describe('checkpoints', () => {
  it('publishes a signed C2SP checkpoint after commits whose root is the rebuilt tree', async () => {
    const c = await checkpointAtLeast(21);
    expect(c.origin).toBe('dev.paylog.invalid/log');
    expect(c.note).toMatch(/^dev\.paylog\.invalid\/log\n\d+\n[A-Za-z0-9+/]{43}=\n\n— dev\.paylog\.invalid\/log [A-Za-z0-9+/]+=*\n$/);
    const leaves = await allLeaves(c.size);
    expect(rootFromLeafHashes(leaves.map(hashLeaf)).equals(c.rootHash)).toBe(true);
  });

  it('publishes the verifier key as a signed-note vkey and a PEM key that agree', async () => {
    const k = await t.call('checkout', 'GET', '/v1/log/key');
    expect(k.status).toBe(200);
    const v = parseVerifierKey(k.json.vkey);
    const { createPublicKey } = await import('node:crypto');
    const der = createPublicKey(k.json.pem).export({ format: 'der', type: 'spki' });
    expect(Buffer.from(der).subarray(-32).equals(v.publicKey)).toBe(true);
  });

  it('serves earlier checkpoints by size and a wrong key does not verify them', async () => {
    const c = await checkpointAtLeast(1);
    const rows = await sql('SELECT DISTINCT size FROM checkpoints ORDER BY size');
    const early = Number(rows[0].size);
    const r = await t.call('auditor', 'GET', `/v1/log/checkpoint?size=${early}`);
    expect(r.status).toBe(200);
    expect(verifyCheckpoint(r.text, await verifiers()).size).toBe(early);
    const { generateKeyPairSync } = await import('node:crypto');
    const other = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
    expect(() => verifyCheckpoint(r.text, [{ name: c.origin, publicKey: Buffer.from(other) }])).toThrow();
    expect((await t.call('auditor', 'GET', '/v1/log/checkpoint?size=999999')).status).toBe(404);
    expect((await t.call('auditor', 'GET', '/v1/log/checkpoint?size=-1')).status).toBe(422);
  });
});

describe('stored checkpoints are not trusted blindly', () => {
  it('a forged checkpoint row is ignored: the served checkpoint verifies, publication goes on', async () => {
    const good = await checkpointAtLeast(21);
    await sql(`INSERT INTO checkpoints (size, root_hash, note) VALUES ($1, $2, 'bogus')`, [good.size + 1_000_000, Buffer.alloc(32)]);
    const served = await t.call('auditor', 'GET', '/v1/log/checkpoint');
    expect(served.status).toBe(200);
    expect(verifyCheckpoint(served.text, await verifiers()).size).toBe(good.size);
    await expect(t.paylog.checkpoints.publish()).resolves.toMatchObject({ size: good.size });
    const proof = await t.call('processor-acme', 'GET', `/v1/log/proof/inclusion?transactionId=${txIds[1]}`);
    expect(proof.status).toBe(200);
    expect(proof.json.treeSize).toBe(good.size);
  });
});

describe('entries and proofs', () => {
  it('pages entries with bounds checked', async () => {
    const c = await checkpointAtLeast(21);
    const page = await t.call('auditor', 'GET', '/v1/log/entries?start=2&end=5');
    expect(page.json.entries.map((e: any) => e.index)).toEqual([2, 3, 4]);
    expect((await t.call('auditor', 'GET', `/v1/log/entries?start=${c.size + 10}&end=${c.size + 20}`)).json.entries).toEqual([]);
    expect((await t.call('auditor', 'GET', '/v1/log/entries?start=5&end=5')).json.entries).toEqual([]);
    expect((await t.call('auditor', 'GET', '/v1/log/entries?start=5&end=4')).status).toBe(422);
    expect((await t.call('auditor', 'GET', '/v1/log/entries?start=1&start=2&end=5')).status).toBe(422);
    expect((await t.call('auditor', 'GET', `/v1/log/proof/inclusion?index=${c.size}&treeSize=${c.size}`)).status).toBe(422);
    expect((await t.call('auditor', 'GET', `/v1/log/proof/inclusion?transactionId=a&transactionId=b`)).status).toBe(422);
    expect((await t.call('auditor', 'GET', '/v1/log/entries?start=abc&end=5')).status).toBe(422);
    expect((await t.call('auditor', 'GET', '/v1/log/entries?start=1e3&end=5')).status).toBe(422);
    for (const who of ['checkout', 'processor-acme', 'admin'] as const) {
      expect((await t.call(who, 'GET', '/v1/log/entries?start=0&end=5')).status).toBe(403);
    }
    expect((await t.call(null, 'GET', '/v1/log/entries?start=0&end=5')).status).toBe(401);
  });

  it('inclusion proofs (by index and by transactionId) verify against the signed root', async () => {
    const c = await checkpointAtLeast(21);
    const leaves = await allLeaves(c.size);
    for (let index = 0; index < c.size; index++) {
      const r = await t.call('auditor', 'GET', `/v1/log/proof/inclusion?index=${index}&treeSize=${c.size}`);
      expect(r.status).toBe(200);
      const proof = r.json.hashes.map((h: string) => Buffer.from(h, 'base64'));
      expect(verifyInclusion(hashLeaf(leaves[index]!), index, c.size, proof, c.rootHash)).toBe(true);
    }
    const byTx = await t.call('auditor', 'GET', `/v1/log/proof/inclusion?transactionId=${txIds[1]}&treeSize=${c.size}`);
    expect(byTx.status).toBe(200);
    const proof = byTx.json.hashes.map((h: string) => Buffer.from(h, 'base64'));
    expect(verifyInclusion(hashLeaf(leaves[byTx.json.index]!), byTx.json.index, c.size, proof, c.rootHash)).toBe(true);
  });

  it('processors get proofs for their own entries only; checkout none', async () => {
    const acmeTx = txIds[1]!; // i % 3 !== 0 → acme
    const globexTx = txIds[0]!;
    expect((await t.call('processor-acme', 'GET', `/v1/log/proof/inclusion?transactionId=${acmeTx}`)).status).toBe(200);
    expect((await t.call('processor-acme', 'GET', `/v1/log/proof/inclusion?transactionId=${globexTx}`)).status).toBe(404);
    expect((await t.call('processor-acme', 'GET', `/v1/log/proof/inclusion?transactionId=nope`)).status).toBe(404);
    expect((await t.call('checkout', 'GET', `/v1/log/proof/inclusion?transactionId=${acmeTx}`)).status).toBe(403);
    expect((await t.call('processor-acme', 'GET', '/v1/log/proof/consistency?from=1&to=2')).status).toBe(403);
  });

  it('consistency proofs between checkpoints verify', async () => {
    const first = await checkpointAtLeast(21);
    const more = Array.from({ length: 5 }, () => cardTransaction());
    await Promise.all(more.map((b) => t.call('checkout', 'POST', '/v1/transactions', b)));
    const second = await checkpointAtLeast(first.size + 5);
    const r = await t.call('auditor', 'GET', `/v1/log/proof/consistency?from=${first.size}&to=${second.size}`);
    expect(r.status).toBe(200);
    const proof = r.json.hashes.map((h: string) => Buffer.from(h, 'base64'));
    expect(verifyConsistency(first.size, second.size, proof, first.rootHash, second.rootHash)).toBe(true);
    expect(verifyConsistency(first.size, second.size, proof, second.rootHash, first.rootHash)).toBe(false);
    expect((await t.call('auditor', 'GET', `/v1/log/proof/consistency?from=${second.size}&to=${first.size}`)).status).toBe(422);
  });
});

describe('never signs a tree inconsistent with an earlier checkpoint', () => {
  it('refuses a bogus tree head, and a consistently rewritten history', async () => {
    const signed = await checkpointAtLeast(26);
    // 1. A tree head the service did not write (no valid MAC): ignored, the honest head is signed.
    await sql(`ALTER TABLE tree_heads DISABLE TRIGGER ALL`);
    await sql(`INSERT INTO tree_heads (size, root_hash) VALUES ($1, $2)`, [signed.size + 1000, Buffer.alloc(32, 7)]);
    const published = await t.paylog.checkpoints.publish();
    expect(published?.size).toBeLessThan(signed.size + 1000);
    expect(published?.size).toBeGreaterThanOrEqual(signed.size);
    await sql(`DELETE FROM tree_heads WHERE size = $1`, [signed.size + 1000]);

    // 2. History rewritten so that nodes and head agree with each other — but not with the
    //    signed checkpoint.
    const leaves = (await sql<{ leaf: Buffer }>('SELECT leaf FROM log_entries ORDER BY idx')).map((r) => r.leaf);
    const forged = [Buffer.from(leaves[0]!.toString().replace('"processor":"', '"processor":"x')), ...leaves.slice(1)];
    const { newNodes, root } = appendLeaves(0, [], forged.map(hashLeaf));
    await sql(`ALTER TABLE merkle_nodes DISABLE TRIGGER ALL`);
    await sql(`DELETE FROM merkle_nodes`);
    for (const n of newNodes) await sql('INSERT INTO merkle_nodes (level, idx, hash) VALUES ($1, $2, $3)', [n.level, n.index, n.hash]);
    await sql(`DELETE FROM tree_heads`);
    await sql(`INSERT INTO tree_heads (size, root_hash) VALUES ($1, $2)`, [forged.length, root]);
    await expect(t.paylog.checkpoints.publish()).rejects.toMatchObject({ code: 'INCONSISTENT_TREE' });
    // The latest served checkpoint is still the last honest one.
    const served = await t.call('auditor', 'GET', '/v1/log/checkpoint');
    expect(verifyCheckpoint(served.text, await verifiers()).rootHash.equals(signed.rootHash)).toBe(true);
    for (const table of ['tree_heads', 'merkle_nodes']) {
      await sql(`ALTER TABLE ${table} ENABLE TRIGGER ALL`);
      for (const trg of ['no_update_delete', 'no_truncate']) await sql(`ALTER TABLE ${table} ENABLE ALWAYS TRIGGER ${table}_${trg}`);
    }
  });
});

describe('signing-key rotation', () => {
  it('a second key signs alongside the first; both keys are published and each verifies', async () => {
    const t2 = await startTestPaylog({ env: { PAYLOG_KMS_ADDITIONAL_SIGNING_KEY_IDS: 'alias/paylog-checkpoint-next' } });
    try {
      expect((await t2.call('checkout', 'POST', '/v1/transactions', cardTransaction())).status).toBe(201);
      const k = await t2.call('auditor', 'GET', '/v1/log/key');
      expect(k.json.keys).toHaveLength(2);
      const keys = k.json.keys.map((x: { vkey: string }) => parseVerifierKey(x.vkey));
      expect(keys[0].keyId.equals(keys[1].keyId)).toBe(false);
      let note = '';
      for (let i = 0; i < 100 && !note.includes('\n\n'); i++) {
        const r = await t2.call('auditor', 'GET', '/v1/log/checkpoint');
        if (r.status === 200 && verifyCheckpoint(r.text, [{ name: keys[0].name, publicKey: keys[0].publicKey }]).size >= 1) note = r.text;
        else await new Promise((res) => setTimeout(res, 50));
      }
      expect(note.trim().split('\n').filter((l) => l.startsWith('— '))).toHaveLength(2);
      for (const key of keys) {
        expect(verifyCheckpoint(note, [{ name: key.name, publicKey: key.publicKey }]).size).toBeGreaterThanOrEqual(1);
      }
    } finally {
      await t2.stop();
    }
  });
});
