/**
 * HTTP content coding for C2SP tlog-tiles entry bundles (tlog-tiles §Log entries: "Entry bundles
 * SHOULD be compressed at the HTTP layer. Logs MAY use `Content-Encoding: gzip` with no
 * negotiation, or any compression algorithm requested by the client with `Accept-Encoding`").
 *
 * paylog negotiates: gzip when the request's Accept-Encoding (RFC 9110 §12.5.3) accepts it,
 * identity otherwise — including when the header is absent, so a client that cannot decompress
 * never gets gzip. Answers that depend on it carry `Vary: Accept-Encoding` (RFC 9110 §12.5.5).
 * Hash tiles and the checkpoint are not compressed (hashes do not compress; the checkpoint is tiny).
 */
import { constants, gzip } from 'node:zlib';
import { promisify } from 'node:util';

const gzipAsync = promisify(gzip);

/** Compressed full entry bundles kept in memory (they never change), bounded by total bytes. */
const GZIP_CACHE_MAX_BYTES = 32 * 1024 * 1024;

/**
 * RFC 9110 §12.5.3: true if `gzip` (or its alias `x-gzip`, §8.4.1.3) is acceptable — listed, or
 * covered by `*`, with a qvalue above 0. An explicit `gzip` entry wins over `*`.
 */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  if (header === undefined) return false;
  let explicit: number | undefined;
  let wildcard: number | undefined;
  for (const item of (Array.isArray(header) ? header.join(',') : header).split(',')) {
    const [coding, ...params] = item.split(';').map((s) => s.trim().toLowerCase());
    if (coding === undefined || coding === '') continue;
    let q = 1;
    for (const p of params) {
      const m = /^q\s*=\s*([0-9](?:\.[0-9]{0,3})?)$/.exec(p);
      if (m) q = Number(m[1]);
    }
    if (coding === 'gzip' || coding === 'x-gzip') explicit = Math.max(explicit ?? 0, q);
    else if (coding === '*') wildcard = q;
  }
  return (explicit ?? wildcard ?? 0) > 0;
}

/** gzip-compresses bodies off the event loop; immutable bodies are cached by key. */
export class GzipCache {
  readonly #cache = new Map<string, Buffer>();
  #bytes = 0;

  constructor(private readonly maxBytes = GZIP_CACHE_MAX_BYTES) {}

  /** The gzip of `body`; with `immutableKey`, cached so the same resource is compressed once. */
  async gzip(body: Buffer, immutableKey?: string): Promise<Buffer> {
    if (immutableKey !== undefined) {
      const hit = this.#cache.get(immutableKey);
      if (hit !== undefined) return hit;
    }
    const out = await gzipAsync(body, { level: constants.Z_DEFAULT_COMPRESSION });
    if (immutableKey !== undefined && !this.#cache.has(immutableKey) && out.length <= this.maxBytes) {
      while (this.#bytes + out.length > this.maxBytes) {
        const oldest = this.#cache.keys().next().value as string;
        this.#bytes -= this.#cache.get(oldest)!.length;
        this.#cache.delete(oldest);
      }
      this.#cache.set(immutableKey, out);
      this.#bytes += out.length;
    }
    return out;
  }
}
