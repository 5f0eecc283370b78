/**
 * Where an auditor reads a tiled log from (C2SP tlog-tiles §APIs): a live paylog over mTLS
 * (`<url>/v1/log/tiles/...`) or a static copy on disk written by `npm run export-tiles`.
 * Nothing read here is trusted; failures carry the verifier's failure codes through
 * `LogClientError` (transport → exit 2, refused or malformed → exit 1). Live reads go through
 * the one outbound HTTP module (src/net/http.ts) with {@link tileReadPolicy}: redirects are never
 * followed, an answer beyond MAX_TILE_RESPONSE_BYTES is not read (malformed).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzip } from 'node:zlib';
import { httpClient, HttpTransportError, ResponseTooLargeError, type EgressPolicy } from '../net/http.js';
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

/**
 * Largest tile answer read off the wire: a resource's bound plus slack for gzip's framing (a
 * gzip of incompressible data is slightly larger than the data; the decoded size is bounded
 * separately by {@link MAX_TILE_RESOURCE_BYTES}).
 */
const MAX_TILE_RESPONSE_BYTES = 2 * MAX_TILE_RESOURCE_BYTES;
/** Concurrent connections to the service for tiles. */
const TILE_CONNECTIONS = 8;
/** undici's codes for a headers or body timeout (reported as `timeout on GET …`). */
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** The egress policy of the auditor's tile reads (mTLS, src/net/http.ts). */
function tileReadPolicy(opts: ClientOptions): EgressPolicy {
  return {
    timeoutMs: REQUEST_TIMEOUT_MS,
    // The socket timeout of the former node:https source bounded the connection too.
    connectTimeoutMs: REQUEST_TIMEOUT_MS,
    maxResponseBytes: MAX_TILE_RESPONSE_BYTES,
    tls: { ca: opts.ca, cert: opts.cert, key: opts.key },
    connections: TILE_CONNECTIONS,
  };
}

/** A transport error's message as the tile source reports it. */
function transportMessage(path: string, e: unknown): string {
  const cause = e instanceof HttpTransportError ? (e.cause as { code?: unknown } | undefined) : undefined;
  if (typeof cause?.code === 'string' && TIMEOUT_CODES.has(cause.code)) return `timeout on GET ${path}`;
  return `GET ${path}: ${(e as Error)?.message ?? 'request failed'}`;
}

/** A live paylog's tiles over mTLS (gzip-encoded bundles are accepted and decoded). */
export function httpsTileSource(opts: ClientOptions): TileSource {
  const base = `${opts.url.replace(/\/+$/, '')}${TILES_PREFIX}`;
  const http = httpClient(tileReadPolicy(opts));
  const get = async (path: string): Promise<Buffer> => {
    let res;
    try {
      res = await http.request(`${base}/${path}`, { headers: { 'accept-encoding': TILES_ACCEPT_ENCODING } });
    } catch (e) {
      if (e instanceof ResponseTooLargeError) throw new LogClientError(`GET ${TILES_PREFIX}/${path}: ${e.message}`, undefined, 'malformed');
      throw new LogClientError(transportMessage(path, e), undefined, 'transport');
    }
    if (res.status < 200 || res.status > 299) throw new LogClientError(`GET ${TILES_PREFIX}/${path} answered ${res.status}`, res.status, 'refused');
    return await decodeContentEncoding(res.body, res.header('content-encoding'), `GET ${TILES_PREFIX}/${path}`);
  };
  return {
    checkpoint: async () => (await get('checkpoint')).toString('utf8'),
    read: get,
    close: () => void http.destroy(),
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
