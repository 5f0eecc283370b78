/**
 * Tamper suite: a real service with ~30 entries (transactions + releases); the database is
 * changed behind its back as the superuser (append-only triggers disabled first), then the
 * auditor verifier — the same `verifyRemoteLog` the CLI runs, and the CLI itself — must fail and
 * name the right index. Restorable cases run first; the two that rebuild the server's own tree
 * state (truncate + rebuild, rewrite + recompute) run last.
 */
import { runScript } from './helpers/cli.js';
import { withClient } from './helpers/db.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cardTransaction, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { LogClient, checkpointSize, verifyRemoteLog } from '../src/audit/index.js';
import { decodeLeaf, encodeLeaf, type Leaf } from '../src/log/leaf.js';
import { appendLeaves, hashLeaf, rootFromLeafHashes } from '../src/log/merkle.js';
import { formatState, parseState, toNoteVerifiers, type VerifierState } from '../src/audit/index.js';
import { formatCheckpointBody } from '../src/log/checkpoint.js';
import { signNote, type NoteSigner } from '../src/log/note.js';
import { generateKeyPairSync, sign as edSign } from 'node:crypto';

/** An Ed25519 note signer that is not the service's (a forger's key). */
function ed25519Signer(name: string): NoteSigner {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  return { name, publicKey: Buffer.from(raw), sign: async (m: Buffer) => edSign(null, m, privateKey) };
}
import { readFileSync } from 'node:fs';
import { httpsTileSource } from '../src/audit/index.js';
import { verifyTiledLog } from '../src/audit/index.js';

const LOG_TABLES = ['log_entries', 'merkle_nodes', 'tree_heads', 'transactions', 'access_entries', 'checkpoints'];
const TRANSACTIONS = 26;
const RELEASES = 4;

let t: TestPaylog;
let client: LogClient;
let vkeys: string[];
let dir: string;
const txIds: string[] = [];

const withDb = <T>(fn: (c: pg.Client) => Promise<T>) => withClient(t.databaseUrl, fn);

/** Runs `fn` as the superuser with the append-only triggers of the log tables disabled. */
async function tamper(fn: (c: pg.Client) => Promise<void>): Promise<void> {
  await withDb(async (c) => {
    for (const tb of LOG_TABLES) await c.query(`ALTER TABLE ${tb} DISABLE TRIGGER ${tb}_no_update_delete, DISABLE TRIGGER ${tb}_no_truncate`);
    try {
      await fn(c);
    } finally {
      for (const tb of LOG_TABLES) {
        await c.query(`ALTER TABLE ${tb} ENABLE ALWAYS TRIGGER ${tb}_no_update_delete`);
        await c.query(`ALTER TABLE ${tb} ENABLE ALWAYS TRIGGER ${tb}_no_truncate`);
      }
    }
  });
}

async function leafAt(c: pg.Client, idx: number): Promise<Buffer> {
  const r = await c.query('SELECT leaf FROM log_entries WHERE idx = $1', [idx]);
  return r.rows[0].leaf as Buffer;
}

async function treeSize(): Promise<number> {
  // Entries are dense (0..size-1); tree_heads may hold forged rows (see the forged-rows case).
  return await withDb(async (c) => Number((await c.query('SELECT count(*) AS s FROM log_entries')).rows[0].s));
}

/**
 * Polls until the latest signed checkpoint covers the whole tree (the publisher signs in the
 * background), bounded by a deadline rather than a count of polls (each poll is a connection and
 * an HTTPS call: slow on a loaded machine, as is the signing it waits for).
 */
async function settled(): Promise<number> {
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; ) {
    const size = await treeSize();
    const cp = await client.checkpoint().catch(() => '');
    if (cp && checkpointSize(cp) === size) return size;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('checkpoint did not catch up with the tree');
}

async function verify(state?: VerifierState) {
  return await verifyRemoteLog(client, { verifiers: toNoteVerifiers(vkeys), ...(state ? { state } : {}) });
}

/** The same checks from the service's C2SP tlog-tiles (`verify-log --tiles`). */
async function verifyTiles(state?: VerifierState) {
  const a = t.paylog.devPki!.principals['auditor']!;
  const source = httpsTileSource({ url: t.paylog.url, ca: readFileSync(t.paylog.devPki!.caPath), cert: readFileSync(a.certPath), key: readFileSync(a.keyPath) });
  try {
    return await verifyTiledLog(source, { verifiers: toNoteVerifiers(vkeys), ...(state ? { state } : {}) });
  } finally {
    source.close();
  }
}

const runCli = (args: string[], script = 'verify-log') => runScript(script, args);

function tlsArgs(who: 'auditor' | 'processor-acme' | 'processor-globex' = 'auditor'): string[] {
  const a = t.paylog.devPki!.principals[who]!;
  return ['--url', t.paylog.url, '--cacert', t.paylog.devPki!.caPath, '--cert', a.certPath, '--key', a.keyPath];
}

/** The same leaf with a different amount (or time): still a canonical leaf of its format. */
function altered(leaf: Buffer): Buffer {
  const l: Leaf = decodeLeaf(leaf);
  if (l.v === 1) {
    if (l.type === 'transaction') return encodeLeaf({ ...l, amount: { ...l.amount, value: l.amount.value + 1 } });
    return encodeLeaf({ ...l, time: '2001-01-01T00:00:00.000Z' });
  }
  if (l.type === 'transaction') return encodeLeaf({ ...l, amt: l.amt + 1 });
  return encodeLeaf({ ...l, time: Date.UTC(2001, 0, 1) });
}

beforeAll(async () => {
  t = await startTestPaylog();
  dir = mkdtempSync(join(tmpdir(), 'paylog-tamper-'));
  for (let i = 0; i < TRANSACTIONS; i++) {
    const body = cardTransaction({ processor: i % 2 === 0 ? 'acme' : 'globex' });
    const r = await t.call('checkout', 'POST', '/v1/transactions', body);
    expect(r.status).toBe(201);
    txIds.push(body.transactionId);
    // An intermediate signed checkpoint for the truncation case (the publisher coalesces).
    if (i === 19) await t.paylog.checkpoints.publish();
  }
  for (let i = 0; i < RELEASES; i++) {
    const r = await t.call('processor-acme', 'POST', `/v1/transactions/${txIds[i * 2]}/release`, { purpose: 'capture' });
    expect(r.status).toBe(200);
  }
  const a = t.paylog.devPki!.principals['auditor']!;
  client = LogClient.fromFiles(t.paylog.url, t.paylog.devPki!.caPath, a.certPath, a.keyPath);
  vkeys = (await client.keys()).vkeys; // pinned once here, as an auditor would out of band
  expect(await settled()).toBeGreaterThanOrEqual(TRANSACTIONS + RELEASES);
});

afterAll(async () => {
  client?.close();
  await t?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('tamper suite', () => {
  it('the untouched log verifies (in-process and through the CLI)', async () => {
    const r = await verify();
    expect(r.failures).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.leafTypes['transaction']).toBe(TRANSACTIONS);
    const cli = await runCli([...tlsArgs(), '--log-key', vkeys[0]!, '--json']);
    expect(cli.code, cli.stderr).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ ok: true, trust: 'log-key' });
    const tiles = await verifyTiles();
    expect(tiles.failures).toEqual([]);
    expect(tiles).toMatchObject({ ok: true, entriesVerified: r.entriesVerified, rootHash: r.rootHash });
    const tilesCli = await runCli([...tlsArgs(), '--tiles', '--log-key', vkeys[0]!, '--json']);
    expect(tilesCli.code, tilesCli.stderr).toBe(0);
    // Connection error (nothing listening) → exit 2.
    const down = await runCli([...tlsArgs().map((a) => (a === t.paylog.url ? 'https://127.0.0.1:9' : a)), '--log-key', vkeys[0]!]);
    expect(down.code).toBe(2);
  });

  it('100 forged rows in checkpoints and in tree_heads (as paylog_app and as superuser) change nothing the signer or an auditor sees', async () => {
    const size = await settled();
    const honest = await client.checkpoint();
    const foreign = await signNote(formatCheckpointBody({ origin: honest.split('\n')[0]!, size: 10_000_000, rootHash: Buffer.alloc(32, 9) }), [
      ed25519Signer(honest.split('\n')[0]!),
    ]);
    const forge = async (c: pg.Client, base: number) => {
      for (let i = 0; i < 50; i++) {
        const s = 1_000_000_000 + base + i;
        await c.query('INSERT INTO checkpoints (size, root_hash, note) VALUES ($1, $2, $3)', [s, Buffer.alloc(32, i), i % 2 === 0 ? 'junk\n' : foreign]);
        await c.query('INSERT INTO tree_heads (size, root_hash, mac) VALUES ($1, $2, $3)', [s, Buffer.alloc(32, i), i % 2 === 0 ? null : Buffer.alloc(32, i)]);
      }
    };
    await withDb(async (c) => {
      await c.query('SET ROLE paylog_app');
      await forge(c, 0);
      await c.query('RESET ROLE');
      await forge(c, 50); // and as the superuser
    });
    const served = await client.checkpoint();
    expect(served).toBe(honest);
    // The signer still sees the honest head (and signs only it).
    const published = await t.paylog.checkpoints.publish();
    expect(published?.size).toBe(size);
    const r = await verify();
    expect(r.failures).toEqual([]);
    expect(r.treeSize).toBe(size);
    // New entries still append at the honest head.
    const body = cardTransaction();
    const post = await t.call('checkout', 'POST', '/v1/transactions', body);
    expect(post.status).toBe(201);
    expect(post.json.logIndex).toBe(size);
    txIds.push(body.transactionId);
    await settled();
    expect((await verify()).ok).toBe(true);
  });

  describe('every served column of the log tables is checked against the leaves and the signed root', () => {
    // [what, tamper SQL, restore SQL, the index verify-log must name, failure code]
    const tx = () => txIds[4]!;
    const txIndex = async () => await withDb(async (c) => Number((await c.query('SELECT log_index FROM transactions WHERE transaction_id = $1', [tx()])).rows[0].log_index));
    const accessIndex = async () => await withDb(async (c) => Number((await c.query('SELECT min(log_index) AS i FROM access_entries')).rows[0].i));
    const cases: Array<{ what: string; index: () => Promise<number>; code: string; apply: (c: pg.Client, i: number) => Promise<(c: pg.Client) => Promise<void>> }> = [
      {
        what: 'transactions.transaction_id',
        index: txIndex,
        code: 'SERVED_VIEW_MISMATCH',
        apply: async (c, i) => {
          // (foreign keys off, as a superuser can)
          await c.query("SET session_replication_role = replica; UPDATE transactions SET transaction_id = transaction_id || 'x' WHERE log_index = " + i + '; SET session_replication_role = origin');
          return async (c) => void (await c.query("SET session_replication_role = replica; UPDATE transactions SET transaction_id = left(transaction_id, -1) WHERE log_index = " + i + '; SET session_replication_role = origin'));
        },
      },
      {
        what: 'transactions.log_index',
        index: txIndex,
        code: 'SERVED_VIEW_MISMATCH',
        apply: async (c, i) => {
          // (foreign keys off, as a superuser can: data_keys still names the old index, migration 0018)
          await c.query(`SET session_replication_role = replica; UPDATE transactions SET log_index = ${-1 - i} WHERE log_index = ${i}; SET session_replication_role = origin`);
          return async (c) => void (await c.query(`SET session_replication_role = replica; UPDATE transactions SET log_index = ${i} WHERE log_index = ${-1 - i}; SET session_replication_role = origin`));
        },
      },
      {
        what: 'access_entries.transaction_id',
        index: accessIndex,
        code: 'SERVED_VIEW_MISMATCH',
        apply: async (c, i) => {
          await c.query("UPDATE access_entries SET transaction_id = transaction_id || 'x' WHERE log_index = $1", [i]);
          return async (c) => void (await c.query('UPDATE access_entries SET transaction_id = left(transaction_id, -1) WHERE log_index = $1', [i]));
        },
      },
      {
        what: 'access_entries.log_index',
        index: accessIndex,
        code: 'SERVED_VIEW_MISMATCH',
        apply: async (c, i) => {
          await c.query('UPDATE access_entries SET log_index = $2 WHERE log_index = $1', [i, -1 - i]);
          return async (c) => void (await c.query('UPDATE access_entries SET log_index = $1 WHERE log_index = $2', [i, -1 - i]));
        },
      },
      {
        what: 'merkle_nodes.hash (level 0)',
        index: async () => 9,
        code: 'NODE_MISMATCH',
        apply: async (c) => {
          await c.query('UPDATE merkle_nodes SET hash = set_byte(hash, 0, (get_byte(hash, 0) + 1) % 256) WHERE level = 0 AND idx = 9');
          return async (c) => void (await c.query('UPDATE merkle_nodes SET hash = set_byte(hash, 0, (get_byte(hash, 0) + 255) % 256) WHERE level = 0 AND idx = 9'));
        },
      },
      {
        what: 'merkle_nodes.hash (level 2)',
        index: async () => 8, // node (2, 2) covers entries [8, 12)
        code: 'NODE_MISMATCH',
        apply: async (c) => {
          await c.query('UPDATE merkle_nodes SET hash = set_byte(hash, 0, (get_byte(hash, 0) + 1) % 256) WHERE level = 2 AND idx = 2');
          return async (c) => void (await c.query('UPDATE merkle_nodes SET hash = set_byte(hash, 0, (get_byte(hash, 0) + 255) % 256) WHERE level = 2 AND idx = 2'));
        },
      },
    ];
    for (const k of cases) {
      it(`${k.what}: verify-log exits 1 and names the index`, async () => {
        await settled();
        const index = await k.index();
        let restore!: (c: pg.Client) => Promise<void>;
        await tamper(async (c) => {
          restore = await k.apply(c, index);
        });
        try {
          const r = await verify();
          expect(r.ok).toBe(false);
          expect(r.failures.map((f) => f.code)).toContain(k.code);
          expect(r.firstBadIndex).toBe(index);
          const cli = await runCli([...tlsArgs(), '--log-key', vkeys[0]!, '--json']);
          expect(cli.code, cli.stderr).toBe(1);
          expect(JSON.parse(cli.stdout)).toMatchObject({ ok: false, firstBadIndex: index });
        } finally {
          await tamper(async (c) => restore(c));
        }
        expect((await verify()).ok).toBe(true);
      });
    }

    it('columns SECURITY.md lists as outside the tree change nothing served (log_entries.entry_type / transaction_id, transactions.request_mac / created_at)', async () => {
      const index = await txIndex();
      const before = await t.call('auditor', 'GET', `/v1/transactions/${tx()}`);
      await tamper(async (c) => {
        await c.query("UPDATE log_entries SET entry_type = 'access', transaction_id = 'other' WHERE idx = $1", [index]);
        await c.query("UPDATE transactions SET created_at = '2001-01-01' WHERE log_index = $1", [index]);
      });
      const after = await t.call('auditor', 'GET', `/v1/transactions/${tx()}`);
      const { proof: _p1, ...b } = before.json;
      const { proof: _p2, ...a } = after.json;
      expect(a).toEqual(b);
      expect((await verify()).ok).toBe(true);
    });
  });

  it('verify-proof --fetch builds a tlog-proof bundle for a transaction and verifies it offline', async () => {
    const out = join(dir, 'tx.tlog-proof');
    const fetched = await runCli([...tlsArgs(), '--fetch', '--transaction-id', txIds[1]!, '--out', out, '--log-key', vkeys[0]!], 'verify-proof');
    expect(fetched.code, fetched.stderr).toBe(0);
    const offline = await runCli(['--bundle', out, '--log-key', vkeys[0]!, '--transaction-id', txIds[1]!, '--json'], 'verify-proof');
    expect(offline.code, offline.stderr).toBe(0);
    expect(JSON.parse(offline.stdout)).toMatchObject({ ok: true, leaf: { type: 'transaction', transactionId: txIds[1] } });
    expect(offline.stdout).not.toContain('4111111111111111');
  });

  it('a processor fetches a proof bundle for its own transaction (not for another processor\'s)', async () => {
    // txIds[i] for even i is assigned to acme, odd i to globex.
    const own = join(dir, 'own.tlog-proof');
    const mine = await runCli([...tlsArgs('processor-acme'), '--fetch', '--transaction-id', txIds[2]!, '--out', own, '--log-key', vkeys[0]!], 'verify-proof');
    expect(mine.code, mine.stderr).toBe(0);
    const offline = await runCli(['--bundle', own, '--log-key', vkeys[0]!, '--json'], 'verify-proof');
    expect(offline.code, offline.stderr).toBe(0);
    expect(JSON.parse(offline.stdout)).toMatchObject({ ok: true, leaf: { transactionId: txIds[2], processor: 'acme' } });
    const theirs = await runCli([...tlsArgs('processor-acme'), '--fetch', '--transaction-id', txIds[1]!, '--out', join(dir, 'theirs.tlog-proof'), '--log-key', vkeys[0]!], 'verify-proof');
    expect(theirs.code).not.toBe(0);
  });

  it('export-log writes an NDJSON export that verify-log --file verifies offline', async () => {
    const out = join(dir, 'export.ndjson');
    const ex = await runCli([...tlsArgs(), '--out', out, '--quiet'], 'export-log');
    expect(ex.code, ex.stderr).toBe(0);
    const v = await runCli(['--file', out, '--log-key', vkeys[0]!, '--json']);
    expect(v.code, v.stderr).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({ ok: true, treeSize: await treeSize() });
  });

  it('export-tiles writes a static copy (incrementally) that verify-log --tiles-dir verifies offline', async () => {
    const out = join(dir, 'tiles');
    const first = await runCli([...tlsArgs(), '--out', out], 'export-tiles');
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/wrote [1-9][0-9]* tiles, kept 0/);
    const v = await runCli(['--tiles-dir', out, '--log-key', vkeys[0]!, '--json']);
    expect(v.code, v.stderr).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({ ok: true, treeSize: await treeSize() });
    const again = await runCli([...tlsArgs(), '--out', out], 'export-tiles');
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/wrote 0 tiles, kept [1-9]/);
    // A tampered static copy fails with exit 1; an absent one is exit 2.
    const bundle = join(out, 'tile', 'entries', '000.p', String(await treeSize()));
    const bytes = readFileSync(bundle);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 5) ^ 1, bytes.length - 5);
    writeFileSync(bundle, bytes);
    const bad = await runCli(['--tiles-dir', out, '--log-key', vkeys[0]!, '--json']);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout).ok).toBe(false);
    expect((await runCli(['--tiles-dir', join(dir, 'no-such-copy'), '--log-key', vkeys[0]!])).code).toBe(2);
  });

  it('modified leaf: named by index (in-process and through the CLI)', async () => {
    const idx = 7;
    let original!: Buffer;
    await tamper(async (c) => {
      original = await leafAt(c, idx);
      await c.query('UPDATE log_entries SET leaf = $2 WHERE idx = $1', [idx, altered(original)]);
    });
    try {
      const r = await verify();
      expect(r.ok).toBe(false);
      expect(r.firstBadIndex).toBe(idx);
      expect(r.failures.map((f) => f.code)).toEqual(['ROOT_MISMATCH']);
      const cli = await runCli([...tlsArgs(), '--log-key', vkeys[0]!, '--json']);
      expect(cli.code, cli.stderr).toBe(1);
      expect(JSON.parse(cli.stdout)).toMatchObject({ ok: false, firstBadIndex: idx });
      const human = await runCli([...tlsArgs(), '--log-key', vkeys[0]!]);
      expect(human.code).toBe(1);
      expect(human.stdout).toContain(`first bad index: ${idx}`);
      const tiles = await verifyTiles();
      expect(tiles.ok).toBe(false);
      expect(tiles.firstBadIndex).toBe(idx);
      expect(tiles.failures.map((f) => f.code)).toEqual(['ROOT_MISMATCH']);
      const tilesCli = await runCli([...tlsArgs(), '--tiles', '--log-key', vkeys[0]!, '--json']);
      expect(tilesCli.code, tilesCli.stderr).toBe(1);
      expect(JSON.parse(tilesCli.stdout)).toMatchObject({ ok: false, firstBadIndex: idx });
    } finally {
      await tamper(async (c) => void (await c.query('UPDATE log_entries SET leaf = $2 WHERE idx = $1', [idx, original])));
    }
    expect((await verify()).ok).toBe(true);
  });

  it('deleted entry: named by index', async () => {
    const idx = 12;
    let row!: any;
    await tamper(async (c) => {
      row = (await c.query('SELECT * FROM log_entries WHERE idx = $1', [idx])).rows[0];
      await c.query('DELETE FROM log_entries WHERE idx = $1', [idx]);
    });
    try {
      const r = await verify();
      expect(r.ok).toBe(false);
      expect(r.firstBadIndex).toBe(idx);
      expect(r.failures[0]?.code).toBe('MISSING_ENTRY');
      // From tiles: the bundle is one entry short; matched against the level-0 tile, 12 is named.
      const tiles = await verifyTiles();
      expect(tiles.ok).toBe(false);
      expect(tiles.firstBadIndex).toBe(idx);
      expect(tiles.failures[0]?.code).toBe('MISSING_ENTRY');
    } finally {
      await tamper(async (c) => {
        await c.query('INSERT INTO log_entries (idx, entry_type, transaction_id, leaf, created_at) VALUES ($1, $2, $3, $4, $5)', [
          row.idx,
          row.entry_type,
          row.transaction_id,
          row.leaf,
          row.created_at,
        ]);
      });
    }
    expect((await verify()).ok).toBe(true);
  });

  it('swapped entries: the first of the two is named', async () => {
    const [i, j] = [3, 20];
    let a!: Buffer;
    let b!: Buffer;
    await tamper(async (c) => {
      a = await leafAt(c, i);
      b = await leafAt(c, j);
      await c.query('UPDATE log_entries SET leaf = $2 WHERE idx = $1', [i, b]);
      await c.query('UPDATE log_entries SET leaf = $2 WHERE idx = $1', [j, a]);
    });
    try {
      const r = await verify();
      expect(r.ok).toBe(false);
      expect(r.firstBadIndex).toBe(i);
      const tiles = await verifyTiles();
      expect(tiles.ok).toBe(false);
      expect(tiles.firstBadIndex).toBe(i);
    } finally {
      await tamper(async (c) => {
        await c.query('UPDATE log_entries SET leaf = $2 WHERE idx = $1', [i, a]);
        await c.query('UPDATE log_entries SET leaf = $2 WHERE idx = $1', [j, b]);
      });
    }
    expect((await verify()).ok).toBe(true);
  });

  it('modified ciphertext (carried in the v2 leaf): verify-log names the index, and release refuses it', async () => {
    const tx = txIds[10]!; // assigned to acme
    const index = await withDb(async (c) => Number((await c.query('SELECT log_index FROM transactions WHERE transaction_id = $1', [tx])).rows[0].log_index));
    let original!: Buffer;
    await tamper(async (c) => {
      original = await leafAt(c, index);
      const l = decodeLeaf(original);
      if (l.v === 1 || l.type !== 'transaction') throw new Error('expected a v2 or v3 transaction leaf');
      const ct = Buffer.from(l.env.ct);
      ct[0] = (ct[0]! + 1) % 256;
      await c.query('UPDATE log_entries SET leaf = $2 WHERE idx = $1', [index, encodeLeaf({ ...l, env: { ...l.env, ct } })]);
    });
    try {
      const report = await verify();
      expect(report.ok).toBe(false);
      expect(report.firstBadIndex).toBe(index);
      // Leaf format v2 carries the ciphertext in the leaf, so the tiles (entry bundles) catch it too.
      const tiles = await verifyTiles();
      expect(tiles.ok).toBe(false);
      expect(tiles.firstBadIndex).toBe(index);
      // The server's envelope check (key commitment + GCM tag) refuses to release it.
      const r = await t.call('processor-acme', 'POST', `/v1/transactions/${tx}/release`, { purpose: 'capture' });
      expect(r.status).not.toBe(200);
      expect(r.status).toBeLessThan(500);
      expect(r.text).not.toContain('4111111111111111');
    } finally {
      await tamper(async (c) => void (await c.query('UPDATE log_entries SET leaf = $2 WHERE idx = $1', [index, original])));
    }
    await settled();
    expect((await verify()).ok).toBe(true); // restored; the refused attempt is itself a valid access entry
  });

  it('truncated tail rebuilt as a shorter valid tree: only the saved --state catches it (rollback)', async () => {
    const full = await settled();
    const before = await verify();
    expect(before.ok).toBe(true);
    const statePath = join(dir, 'state-full.json');
    writeFileSync(statePath, formatState({ ...before.newState!, keys: vkeys }));
    // Cut back to the newest signed checkpoint at least 5 entries shorter.
    const m = await withDb(async (c) => Number((await c.query('SELECT max(size) AS s FROM checkpoints WHERE size <= $1', [full - 5])).rows[0].s));
    expect(m).toBeGreaterThan(0);
    await tamper(async (c) => {
      await c.query('DELETE FROM log_entries WHERE idx >= $1', [m]);
      await c.query('DELETE FROM access_entries WHERE log_index >= $1', [m]);
      await c.query('DELETE FROM data_keys WHERE log_index >= $1', [m]);
      await c.query('DELETE FROM transactions WHERE log_index >= $1', [m]);
      await c.query('DELETE FROM merkle_nodes WHERE (idx + 1) * (1::bigint << level) > $1', [m]);
      await c.query('DELETE FROM tree_heads WHERE size > $1', [m]);
      await c.query('DELETE FROM checkpoints WHERE size > $1', [m]);
    });
    const noState = await verify();
    expect(noState.ok).toBe(true); // a consistent shorter log, validly signed: undetectable without memory
    expect(noState.treeSize).toBe(m);
    const r = await verify(parseState(formatState({ ...before.newState!, keys: vkeys })));
    expect(r.ok).toBe(false);
    expect(r.failures.map((f) => f.code)).toContain('ROLLBACK');
    const cli = await runCli([...tlsArgs(), '--state', statePath, '--json']);
    expect(cli.code, cli.stderr).toBe(1);
    expect(JSON.parse(cli.stdout)).toMatchObject({ ok: false, trust: 'state', stateSaved: false });
    const tiles = await verifyTiles(parseState(formatState({ ...before.newState!, keys: vkeys })));
    expect(tiles.ok).toBe(false);
    expect(tiles.failures.map((f) => f.code)).toContain('ROLLBACK');
    const tilesCli = await runCli([...tlsArgs(), '--tiles', '--state', statePath, '--json']);
    expect(tilesCli.code, tilesCli.stderr).toBe(1);
  });

  it('leaf rewritten AND merkle_nodes/tree_heads recomputed: the signed checkpoint and --state still catch it', async () => {
    const size = await treeSize();
    const good = await verify();
    expect(good.ok).toBe(true);
    const statePath = join(dir, 'state-now.json');
    writeFileSync(statePath, formatState({ ...good.newState!, keys: vkeys }));
    const idx = 5;
    await tamper(async (c) => {
      const rows = (await c.query('SELECT idx, leaf FROM log_entries ORDER BY idx')).rows as Array<{ idx: string; leaf: Buffer }>;
      const leaves = rows.map((r) => r.leaf);
      leaves[idx] = altered(leaves[idx]!);
      await c.query('UPDATE log_entries SET leaf = $2 WHERE idx = $1', [idx, leaves[idx]]);
      const hashes = leaves.map(hashLeaf);
      const { newNodes } = appendLeaves(0, [], hashes);
      await c.query('DELETE FROM merkle_nodes');
      for (const n of newNodes) await c.query('INSERT INTO merkle_nodes (level, idx, hash) VALUES ($1, $2, $3)', [n.level, n.index, n.hash]);
      const heads = (await c.query('SELECT size FROM tree_heads')).rows as Array<{ size: string }>;
      for (const h of heads) {
        await c.query('UPDATE tree_heads SET root_hash = $2 WHERE size = $1', [h.size, rootFromLeafHashes(hashes.slice(0, Number(h.size)))]);
      }
    });
    const r = await verify(parseState(formatState({ ...good.newState!, keys: vkeys })));
    expect(r.ok).toBe(false);
    expect(r.treeSize).toBe(size);
    const codes = r.failures.map((f) => f.code);
    // The recomputed tree heads carry no valid MAC (the attacker lacks the service's key), so
    // the service falls back to the last head whose MAC still verifies (one whose root did not
    // change, at or before the rewritten entry) and verify-log reports the rest missing.
    expect(codes).toContain('MISSING_ENTRY');
    expect(r.firstBadIndex).toBeLessThanOrEqual(idx);
    // From tiles (built from the rewritten nodes): they no longer hash to the signed root.
    const tiles = await verifyTiles(parseState(formatState({ ...good.newState!, keys: vkeys })));
    expect(tiles.ok).toBe(false);
    expect(tiles.failures.map((f) => f.code)).toEqual(expect.arrayContaining(['ROOT_MISMATCH']));
    const cli = await runCli([...tlsArgs(), '--state', statePath, '--json']);
    expect(cli.code, cli.stderr).toBe(1);
    expect(JSON.parse(cli.stdout).ok).toBe(false);
  });
});
