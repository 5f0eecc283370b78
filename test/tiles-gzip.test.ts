/**
 * C2SP tlog-tiles §Log entries: "Entry bundles SHOULD be compressed at the HTTP layer. Logs MAY
 * use `Content-Encoding: gzip` with no negotiation, or any compression algorithm requested by
 * the client with `Accept-Encoding`. Clients SHOULD include `gzip` and `identity` in their
 * `Accept-Encoding` headers."
 *
 * The service negotiates (gzip only when accepted, `Vary: Accept-Encoding`); the tiles client
 * (verify-log --tiles, the bundled verifier) asks for `gzip, identity` and decodes gzip, also
 * from a static host that gzips without negotiation.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runScript } from './helpers/cli.js';
import { startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { acceptsGzip, GzipCache } from '../src/api/content-coding.js';
import { encodeLeaf } from '../src/log/leaf.js';
import { toNoteVerifiers } from '../src/audit/index.js';
import { decodeEntryBundle } from '../src/log/tiles/encoding.js';
import { exportTiles } from '../src/audit/index.js';
import { decodeContentEncoding, httpsTileSource, MAX_TILE_RESOURCE_BYTES, TILES_ACCEPT_ENCODING, TILES_PREFIX } from '../src/audit/index.js';
import { verifyTiledLog } from '../src/audit/index.js';

describe('Accept-Encoding (RFC 9110 §12.5.3)', () => {
  it('gzip is chosen only when listed or covered by * with q > 0', () => {
    for (const h of ['gzip', 'gzip, identity', 'GZIP;q=0.5', 'br, gzip;q=0.1', 'x-gzip', '*', 'identity, *;q=0.2', ['br', 'gzip']]) expect(acceptsGzip(h), String(h)).toBe(true);
    for (const h of [undefined, '', 'identity', 'br', 'deflate, br', 'gzip;q=0', 'gzip;q=0.000, *', '*;q=0', 'br, *;q=0, gzip;q=0']) expect(acceptsGzip(h), String(h)).toBe(false);
  });

  it('GzipCache compresses once per immutable key, and stays within its byte budget', async () => {
    const cache = new GzipCache(100_000);
    const a = randomBytes(60_000);
    const first = await cache.gzip(a, 'a');
    expect(gunzipSync(first).equals(a)).toBe(true);
    expect(await cache.gzip(Buffer.alloc(10), 'a')).toBe(first); // cached by key
    await cache.gzip(randomBytes(60_000), 'b'); // evicts a
    expect(gunzipSync(await cache.gzip(Buffer.from('fresh'), 'a')).toString()).toBe('fresh');
  });
});

describe('the tiles client decodes Content-Encoding', () => {
  it('identity and gzip pass; another coding, a corrupt body or a gzip bomb is a malformed answer', async () => {
    const body = Buffer.from('entry bundle bytes');
    expect((await decodeContentEncoding(body, undefined, 'x')).equals(body)).toBe(true);
    expect((await decodeContentEncoding(body, 'identity', 'x')).equals(body)).toBe(true);
    expect((await decodeContentEncoding(gzipSync(body), 'gzip', 'x')).equals(body)).toBe(true);
    await expect(decodeContentEncoding(body, 'br', 'x')).rejects.toMatchObject({ kind: 'malformed' });
    await expect(decodeContentEncoding(body, 'gzip', 'x')).rejects.toMatchObject({ kind: 'malformed' });
    const bomb = gzipSync(Buffer.alloc(MAX_TILE_RESOURCE_BYTES + 1));
    await expect(decodeContentEncoding(bomb, 'gzip', 'x')).rejects.toMatchObject({ kind: 'malformed' });
  });
});

describe('entry bundles over HTTPS', () => {
  let t: TestPaylog;
  let size = 0;
  let vkey: string;
  const dirs: string[] = [];
  const servers: Server[] = [];

  beforeAll(async () => {
    t = await startTestPaylog();
    vkey = t.paylog.logKeys[0]!.vkey;
    // 300 key events: one full bundle (256) and a partial one (44).
    await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        t.paylog.appender.append({
          kind: 'key_event',
          leaf: encodeLeaf({ v: 1, type: 'key_event', time: new Date().toISOString(), event: 'shred', keyName: `gz${i}-${randomBytes(4).toString('hex')}` }),
          createdAt: new Date(),
        }),
      ),
    );
    size = (await t.paylog.checkpoints.publish())!.size;
  });
  afterAll(async () => {
    for (const s of servers) s.close();
    await t?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const bundlePaths = () => [`${TILES_PREFIX}/tile/entries/000`, `${TILES_PREFIX}/tile/entries/001.p/${size - 256}`];

  it('a gzip-accepting client gets gzip whose decompressed bytes equal the identity answer; full bundles stay immutable', async () => {
    expect(size).toBeGreaterThan(256);
    for (const path of bundlePaths()) {
      const plain = await t.call('auditor', 'GET', path);
      const gz = await t.call('auditor', 'GET', path, undefined, { headers: { 'accept-encoding': 'gzip, identity' } });
      expect(plain.status).toBe(200);
      expect(gz.status).toBe(200);
      expect(gz.headers['content-encoding']).toBe('gzip');
      expect(gz.headers['vary']).toMatch(/accept-encoding/i);
      expect(gz.headers['content-type']).toBe('application/octet-stream');
      expect(Number(gz.headers['content-length'])).toBe(gz.bytes.length);
      expect(gz.bytes.subarray(0, 2).equals(Buffer.from([0x1f, 0x8b]))).toBe(true);
      expect(gunzipSync(gz.bytes).equals(plain.bytes), path).toBe(true);
      expect(gz.headers['cache-control']).toBe(plain.headers['cache-control']);
      // A second request for the same bundle is the same bytes (cached for full bundles).
      const again = await t.call('auditor', 'GET', path, undefined, { headers: { 'accept-encoding': 'gzip' } });
      expect(gunzipSync(again.bytes).equals(plain.bytes)).toBe(true);
    }
    const full = await t.call('auditor', 'GET', bundlePaths()[0]!, undefined, { headers: { 'accept-encoding': 'gzip' } });
    expect(full.headers['cache-control']).toBe('max-age=31536000, immutable');
    expect(decodeEntryBundle(gunzipSync(full.bytes))).toHaveLength(256);
  });

  it('a client without Accept-Encoding (or refusing gzip) gets identity, still with Vary', async () => {
    for (const headers of [{}, { 'accept-encoding': 'identity' }, { 'accept-encoding': 'br' }, { 'accept-encoding': 'gzip;q=0, identity' }] as Array<Record<string, string>>) {
      const r = await t.call('auditor', 'GET', bundlePaths()[0]!, undefined, { headers });
      expect(r.status).toBe(200);
      expect(r.headers['content-encoding'], JSON.stringify(headers)).toBeUndefined();
      expect(r.headers['vary']).toMatch(/accept-encoding/i);
      expect(decodeEntryBundle(r.bytes)).toHaveLength(256);
    }
  });

  it('hash tiles and the checkpoint are never gzip-encoded', async () => {
    const tile = await t.call('auditor', 'GET', `${TILES_PREFIX}/tile/0/000`, undefined, { headers: { 'accept-encoding': 'gzip' } });
    expect(tile.status).toBe(200);
    expect(tile.headers['content-encoding']).toBeUndefined();
    expect(tile.bytes.length).toBe(8192);
    const cp = await t.call('auditor', 'GET', `${TILES_PREFIX}/checkpoint`, undefined, { headers: { 'accept-encoding': 'gzip' } });
    expect(cp.headers['content-encoding']).toBeUndefined();
    expect(cp.headers['cache-control']).toBe('no-store');
  });

  it('verify-log --tiles passes against the negotiating service (in-process and CLI)', async () => {
    const a = t.paylog.devPki!.principals['auditor']!;
    await expectTilesVerify(t.paylog.url, { ca: readFileSync(t.paylog.devPki!.caPath), cert: readFileSync(a.certPath), key: readFileSync(a.keyPath) }, vkey, size);
    const cli = await runScript('verify-log', ['--url', t.paylog.url, '--cacert', t.paylog.devPki!.caPath, '--cert', a.certPath, '--key', a.keyPath, '--tiles', '--log-key', vkey, '--json']);
    expect(cli.code, cli.stderr).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ ok: true });
  });

  it('verify-log --tiles reads a static host that gzips bundles without negotiation, asking for gzip and identity', async () => {
    const a = t.paylog.devPki!.principals['auditor']!;
    const tls = { ca: readFileSync(t.paylog.devPki!.caPath), cert: readFileSync(a.certPath), key: readFileSync(a.keyPath) };
    const out = mkdtempSync(join(tmpdir(), 'paylog-tiles-gzip-'));
    dirs.push(out);
    const live = httpsTileSource({ url: t.paylog.url, ...tls });
    try {
      expect((await exportTiles(live, out)).size).toBe(size);
    } finally {
      live.close();
    }
    // A static web server in front of the copy: always gzip for bundles (tlog-tiles: "MAY use
    // Content-Encoding: gzip with no negotiation").
    const seen: Array<string | undefined> = [];
    let gzipped = 0;
    const server = createServer({ cert: t.paylog.devPki!.server.certPem, key: t.paylog.devPki!.server.keyPem }, (req, res) => {
      seen.push(req.headers['accept-encoding']);
      const rel = (req.url ?? '').slice(TILES_PREFIX.length + 1);
      let body: Buffer;
      try {
        body = readFileSync(join(out, ...rel.split('/')));
      } catch {
        res.writeHead(404).end();
        return;
      }
      if (rel.startsWith('tile/entries/')) {
        gzipped++;
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' }).end(gzipSync(body));
      } else res.writeHead(200, { 'content-type': rel === 'checkpoint' ? 'text/plain; charset=utf-8' : 'application/octet-stream' }).end(body);
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    await expectTilesVerify(`https://127.0.0.1:${port}`, tls, vkey, size);
    expect(gzipped).toBeGreaterThanOrEqual(2);
    expect(new Set(seen)).toEqual(new Set([TILES_ACCEPT_ENCODING]));
  });
});

/** Full verification from the tiles at `url` passes, with all `size` entries verified. */
async function expectTilesVerify(url: string, tls: { ca: Buffer; cert: Buffer; key: Buffer }, vkey: string, size: number): Promise<void> {
  const source = httpsTileSource({ url, ...tls });
  try {
    const r = await verifyTiledLog(source, { verifiers: toNoteVerifiers([vkey]) });
    expect(r.failures).toEqual([]);
    expect(r).toMatchObject({ ok: true, entriesVerified: size });
  } finally {
    source.close();
  }
}
