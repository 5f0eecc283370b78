/**
 * Where an auditor reads a tiled log from (C2SP tlog-tiles §APIs): a live paylog over mTLS
 * (`<url>/v1/log/tiles/...`) or a static copy on disk written by `npm run export-tiles`.
 * Nothing read here is trusted; failures carry the verifier's failure codes through
 * `LogClientError` (transport → exit 2, refused or malformed → exit 1).
 */
import { readFile } from 'node:fs/promises';
import { Agent, request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { gunzip } from 'node:zlib';
import { LogClientError, REQUEST_TIMEOUT_MS, type ClientOptions } from './log-client.js';
import { MAX_BUNDLE_ENTRY_BYTES } from '../log/tiles/encoding.js';
import { TILE_WIDTH } from '../log/tiles/path.js';

/** URL path under which paylog serves its tiles (contract v1.1). */
export const TILES_PREFIX = '/v1/log/tiles';

export interface TileSource {
  /** `<prefix>/checkpoint` as text. */
  checkpoint(): Promise<string>;
  /** Raw bytes of `<prefix>/<path>` (`path` from `tilePath`). */
  read(path: string): Promise<Buffer>;
  close(): void;
}

/**
 * tlog-tiles §Log entries: "Clients SHOULD include `gzip` and `identity` in their
 * `Accept-Encoding` headers" (entry bundles may be gzip-encoded, negotiated or not).
 */
export const TILES_ACCEPT_ENCODING = 'gzip, identity';
/** The largest resource a tile path can name: a full bundle of 65,535-byte entries (a gzip bomb stops here). */
export const MAX_TILE_RESOURCE_BYTES = TILE_WIDTH * (2 + MAX_BUNDLE_ENTRY_BYTES);

/** Undoes the response's Content-Encoding (identity or gzip; anything else is refused as malformed). */
export function decodeContentEncoding(body: Buffer, encoding: string | undefined, what: string): Promise<Buffer> {
  const coding = (encoding ?? 'identity').trim().toLowerCase();
  if (coding === 'identity' || coding === '') return Promise.resolve(body);
  if (coding !== 'gzip' && coding !== 'x-gzip') {
    return Promise.reject(new LogClientError(`${what}: unsupported Content-Encoding ${JSON.stringify(coding)}`, undefined, 'malformed'));
  }
  return new Promise((resolve, reject) =>
    gunzip(body, { maxOutputLength: MAX_TILE_RESOURCE_BYTES }, (e, out) =>
      e ? reject(new LogClientError(`${what}: gzip body does not decompress (${e.message})`, undefined, 'malformed')) : resolve(out),
    ),
  );
}

/** A live paylog's tiles over mTLS (gzip-encoded bundles are accepted and decoded). */
export function httpsTileSource(opts: ClientOptions): TileSource {
  const base = `${opts.url.replace(/\/+$/, '')}${TILES_PREFIX}`;
  const agent = new Agent({ ca: opts.ca, cert: opts.cert, key: opts.key, keepAlive: true, maxSockets: 8 });
  const get = (path: string): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const req = httpsRequest(`${base}/${path}`, { method: 'GET', agent, timeout: REQUEST_TIMEOUT_MS, headers: { 'accept-encoding': TILES_ACCEPT_ENCODING } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (status < 200 || status > 299) reject(new LogClientError(`GET ${TILES_PREFIX}/${path} answered ${status}`, status, 'refused'));
          else decodeContentEncoding(Buffer.concat(chunks), res.headers['content-encoding'], `GET ${TILES_PREFIX}/${path}`).then(resolve, reject);
        });
        res.on('error', (e) => reject(new LogClientError(`GET ${path}: ${e.message}`, undefined, 'transport')));
      });
      req.on('timeout', () => req.destroy(new LogClientError(`timeout on GET ${path}`, undefined, 'transport')));
      req.on('error', (e) => reject(e instanceof LogClientError ? e : new LogClientError(`GET ${path}: ${e.message}`, undefined, 'transport')));
      req.end();
    });
  return {
    checkpoint: async () => (await get('checkpoint')).toString('utf8'),
    read: get,
    close: () => agent.destroy(),
  };
}

/**
 * A static copy (`export-tiles --out DIR`). An unreadable checkpoint is a transport failure
 * (nothing to verify); a missing tile in a readable copy is a refused read (the copy is incomplete).
 */
export function directoryTileSource(dir: string): TileSource {
  const read = async (path: string, missing: 'transport' | 'refused'): Promise<Buffer> => {
    try {
      return await readFile(join(dir, ...path.split('/')));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new LogClientError(`${path}: ${code === 'ENOENT' ? 'missing from the static copy' : 'unreadable'}`, undefined, missing);
    }
  };
  return {
    checkpoint: async () => (await read('checkpoint', 'transport')).toString('utf8'),
    read: (path) => read(path, 'refused'),
    close: () => {},
  };
}
