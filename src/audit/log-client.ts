/**
 * The auditor's client for the read routes of a paylog service (`/v1/log/*`, see
 * shared/contract.md) over mTLS, and how its failures map to report codes.
 *
 * Contract: nothing here is trusted by the verifier (signatures, proofs and leaves are all checked
 * in ./run.ts). Every error it throws is a {@link LogClientError} whose `kind` says whether any
 * answer arrived. MUST NOT import anything of the service.
 */
import { readFileSync } from 'node:fs';
import { PaylogError } from '../errors.js';
import { ExportFormatError } from '../log/export-format.js';
import { decodeBase64Strict } from '../log/note.js';
import type { FailureCode } from './failures.js';
import type { LogEntryInput } from './inputs.js';
import { httpClient, ResponseTooLargeError, type EgressPolicy, type HttpClient } from '../net/http.js';

/** Page size asked of `/v1/log/entries` (the server caps pages at 1000 and may return fewer). */
export const ENTRIES_PAGE_SIZE = 1000;
/** Per-request timeout. */
export const REQUEST_TIMEOUT_MS = 30_000;
/**
 * Largest answer read from a read route: a full entries page is 1000 entries of at most
 * MAX_LEAF_BYTES (16 KiB, base64 in JSON) plus served values and node hashes, well under this.
 */
const LOG_READ_MAX_RESPONSE_BYTES = 64 * 1024 * 1024;
/** Concurrent connections to the service. */
const LOG_READ_CONNECTIONS = 4;

/** The egress policy of the auditor's read routes client (mTLS, src/net/http.ts). */
function logReadPolicy(opts: ClientOptions): EgressPolicy {
  return {
    timeoutMs: REQUEST_TIMEOUT_MS,
    maxResponseBytes: LOG_READ_MAX_RESPONSE_BYTES,
    tls: { ca: opts.ca, cert: opts.cert, key: opts.key },
    connections: LOG_READ_CONNECTIONS,
  };
}

export interface ClientOptions {
  /** Base URL, e.g. https://127.0.0.1:8443 */
  url: string;
  /** PEM contents (not paths). */
  ca: string | Buffer;
  cert: string | Buffer;
  key: string | Buffer;
}

/**
 * How a request to the log failed: `transport` — no answer at all (connection refused/reset, TLS,
 * DNS, timeout; the CLI's exit 2); `refused` — the server answered with an HTTP error;
 * `malformed` — it answered 2xx with something unusable. The last two are verification failures.
 */
export type LogClientErrorKind = 'transport' | 'refused' | 'malformed';

/** Failure code in a verification report for each kind (see `failureCodeOf` in ./failures.ts). */
const FAILURE_CODE_BY_KIND: Record<LogClientErrorKind, FailureCode> = {
  transport: 'FETCH_FAILED',
  refused: 'REQUEST_REFUSED',
  malformed: 'BAD_RESPONSE',
};

/** Thrown by {@link LogClient}; `kind` (default: `refused` with a status, else `transport`) says what failed. */
export class LogClientError extends PaylogError {
  readonly kind: LogClientErrorKind;
  constructor(
    message: string,
    readonly status?: number,
    kind?: LogClientErrorKind,
  ) {
    super('LOG_UNAVAILABLE', message, status !== undefined ? { status } : undefined);
    this.kind = kind ?? (status !== undefined ? 'refused' : 'transport');
  }

  /** The verifier's failure code for this error (read by `failureCodeOf`). */
  get failureCode(): FailureCode {
    return FAILURE_CODE_BY_KIND[this.kind];
  }
}


/** True for an error that carries a report-worthy (non-transport) failure: a bad or refused answer, a malformed export. */
export function isAnsweredFailure(e: unknown): e is LogClientError | ExportFormatError {
  return (e instanceof LogClientError && e.kind !== 'transport') || e instanceof ExportFormatError;
}

export interface ServerKeys {
  origin?: string;
  vkeys: string[];
}

/** Minimal client for the auditor read routes over mTLS. */
export class LogClient {
  readonly #http: HttpClient;
  readonly #base: string;

  constructor(opts: ClientOptions) {
    this.#base = opts.url.replace(/\/+$/, '');
    this.#http = httpClient(logReadPolicy(opts));
  }

  static fromFiles(url: string, caPath: string, certPath: string, keyPath: string): LogClient {
    return new LogClient({ url, ca: readFileSync(caPath), cert: readFileSync(certPath), key: readFileSync(keyPath) });
  }

  close(): void {
    void this.#http.destroy();
  }

  /** One GET; any failure before a full answer is a `transport` error, an oversized answer is `malformed`. */
  async #get(path: string): Promise<{ status: number; body: string }> {
    try {
      const res = await this.#http.request(`${this.#base}${path}`);
      // Decoded as undici's body.text() does (UTF-8, a leading BOM dropped).
      return { status: res.status, body: new TextDecoder().decode(res.body) };
    } catch (e) {
      if (e instanceof ResponseTooLargeError) throw new LogClientError(`GET ${path.split('?')[0]}: ${e.message}`, undefined, 'malformed');
      throw new LogClientError(`GET ${path}: ${(e as Error)?.message ?? 'request failed'}`, undefined, 'transport');
    }
  }

  async #getOk(path: string): Promise<string> {
    const r = await this.#get(path);
    if (r.status < 200 || r.status > 299) {
      let code = '';
      try {
        code = JSON.parse(r.body)?.error?.code ?? '';
      } catch {
        /* not JSON */
      }
      throw new LogClientError(`GET ${path.split('?')[0]} answered ${r.status}${code ? ` ${code}` : ''}`, r.status, 'refused');
    }
    return r.body;
  }

  async #getJson(path: string): Promise<any> {
    const body = await this.#getOk(path);
    try {
      return JSON.parse(body);
    } catch {
      throw new LogClientError(`GET ${path.split('?')[0]} did not answer JSON`, undefined, 'malformed');
    }
  }

  /** Latest signed checkpoint, or the stored one for `size`. */
  async checkpoint(size?: number): Promise<string> {
    return await this.#getOk(`/v1/log/checkpoint${size !== undefined ? `?size=${size}` : ''}`);
  }

  /** `/v1/log/key`: verifier keys as published by the server (untrusted). */
  async keys(): Promise<ServerKeys> {
    const j = await this.#getJson('/v1/log/key');
    const vkeys: string[] = [];
    if (Array.isArray(j?.keys)) for (const k of j.keys) if (typeof k?.vkey === 'string') vkeys.push(k.vkey);
    if (vkeys.length === 0 && typeof j?.vkey === 'string') vkeys.push(j.vkey);
    return { ...(typeof j?.origin === 'string' ? { origin: j.origin } : {}), vkeys };
  }

  /** One page of `/v1/log/entries`; may hold fewer entries than asked. Throws on a malformed entry. */
  async entriesPage(start: number, end: number): Promise<{ end: number; entries: LogEntryInput[] }> {
    const page = await this.#entriesPageUpToError(start, end);
    if (page.error !== undefined) throw page.error;
    return page;
  }

  /** A page parsed up to its first malformed entry: the good prefix, and the error for the rest. */
  async #entriesPageUpToError(start: number, end: number): Promise<{ end: number; entries: LogEntryInput[]; error?: LogClientError }> {
    const j = await this.#getJson(`/v1/log/entries?start=${start}&end=${end}`);
    if (!Array.isArray(j?.entries)) throw new LogClientError('entries answer has no entries array', undefined, 'malformed');
    const entries: LogEntryInput[] = [];
    for (const e of j.entries as any[]) {
      const leaf = typeof e?.leaf === 'string' ? decodeBase64Strict(e.leaf) : undefined;
      if (!Number.isSafeInteger(e?.index) || leaf === undefined) {
        return { end: start, entries, error: new LogClientError('malformed entry in entries answer', undefined, 'malformed') };
      }
      entries.push({
        index: e.index,
        leaf,
        ...(typeof e.ciphertextSha256 === 'string' ? { storedCiphertextSha256: e.ciphertextSha256 } : {}),
        ...(e.lookup !== null && typeof e.lookup === 'object'
          ? {
              lookup: {
                ...(typeof e.lookup.transaction === 'string' ? { transaction: e.lookup.transaction } : {}),
                ...(typeof e.lookup.access === 'string' ? { access: e.lookup.access } : {}),
              },
            }
          : {}),
        ...(e.view !== null && typeof e.view === 'object' ? { view: e.view } : {}),
        ...(Array.isArray(e.nodes) ? { storedNodes: (e.nodes as unknown[]).map((h) => (typeof h === 'string' ? (decodeBase64Strict(h) ?? null) : null)) } : {}),
      });
    }
    const last = entries[entries.length - 1];
    const pageEnd = Number.isSafeInteger(j.end) ? (j.end as number) : last !== undefined ? last.index + 1 : start;
    return { end: pageEnd, entries };
  }

  /**
   * All entries `[start, end)` in pages (`start = previous end`). Stops early (yielding what it
   * got) if the server returns an empty page; the verifier then reports the first missing index.
   * A malformed entry throws after the well-formed ones before it were yielded, so the verifier
   * names its index.
   */
  async *entries(start: number, end: number): AsyncGenerator<LogEntryInput> {
    let pos = start;
    while (pos < end) {
      const page = await this.#entriesPageUpToError(pos, Math.min(end, pos + ENTRIES_PAGE_SIZE));
      for (const e of page.entries) yield e;
      if (page.error !== undefined) throw page.error;
      if (page.entries.length === 0) return;
      const last = page.entries[page.entries.length - 1] as LogEntryInput;
      // Page with start = previous end; never go backwards even if the server says so.
      pos = Math.max(page.end, last.index + 1, pos + 1);
    }
  }

  async inclusionProof(index: number, treeSize: number): Promise<Buffer[]> {
    return parseHashes(await this.#getJson(`/v1/log/proof/inclusion?index=${index}&treeSize=${treeSize}`));
  }

  /** Inclusion proof by transaction ID; returns the index too (and the leaf if the server sends it). */
  async inclusionProofFor(transactionId: string, treeSize: number): Promise<{ index: number; hashes: Buffer[]; leaf?: Buffer }> {
    const j = await this.#getJson(`/v1/log/proof/inclusion?transactionId=${encodeURIComponent(transactionId)}&treeSize=${treeSize}`);
    if (!Number.isSafeInteger(j?.index)) throw new LogClientError('inclusion proof answer has no index', undefined, 'malformed');
    const leaf = typeof j.leaf === 'string' ? decodeBase64Strict(j.leaf) : undefined;
    return { index: j.index, hashes: parseHashes(j), ...(leaf !== undefined ? { leaf } : {}) };
  }

  async consistencyProof(from: number, to: number): Promise<Buffer[]> {
    return parseHashes(await this.#getJson(`/v1/log/proof/consistency?from=${from}&to=${to}`));
  }
}

function parseHashes(j: any): Buffer[] {
  if (!Array.isArray(j?.hashes)) throw new LogClientError('proof answer has no hashes array', undefined, 'malformed');
  return j.hashes.map((h: unknown) => {
    const b = typeof h === 'string' ? decodeBase64Strict(h) : undefined;
    if (b === undefined || b.length !== 32) throw new LogClientError('proof answer holds a malformed hash', undefined, 'malformed');
    return b;
  });
}
