/**
 * Getting log data out of a paylog service for auditors: an mTLS client for the auditor read
 * routes (`/v1/log/*`, see shared/contract.md), the NDJSON export format, and the two verifier
 * drivers used by `scripts/verify-log.ts` (live service, offline export). Nothing here is
 * trusted by the verifier: signatures, proofs and leaves are all checked in `verifier.ts`.
 *
 * Export format (NDJSON, one JSON object per line, in this order):
 *   {"type":"paylog-export","version":1,"origin":"<origin>"}
 *   {"type":"checkpoint","note":"<signed note>"}          one or more; the LAST one covers the entries
 *   {"type":"key","vkey":"<name>+<keyid>+<base64>"}       zero or more; NOT trusted unless asked
 *   {"type":"entry","index":0,"leaf":"<base64 leaf bytes>"}  indexes 0 .. size-1
 */
import { createReadStream, createWriteStream, readFileSync } from 'node:fs';
import { Agent, request } from 'undici';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { PaylogError } from '../errors.js';
import { decodeBase64Strict, type NoteVerifier } from './note.js';
import type { WitnessPolicy } from './witness/policy.js';
import {
  errorMessage,
  failureReport,
  verifyLog,
  type FailureCode,
  type LogEntryInput,
  type VerifierState,
  type VerifyReport,
} from './verifier.js';

/** Version of the NDJSON export format. */
export const EXPORT_VERSION = 1;
/** Page size asked of `/v1/log/entries` (the server caps pages at 1000 and may return fewer). */
export const ENTRIES_PAGE_SIZE = 1000;
/** Per-request timeout. */
export const REQUEST_TIMEOUT_MS = 30_000;

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

/** Failure code in a verification report for each kind (see `failureCodeOf` in verifier.ts). */
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

/** A malformed line in an NDJSON export: a verification failure of that file (not a read error). */
export class ExportFormatError extends PaylogError {
  readonly failureCode: FailureCode = 'EXPORT_MALFORMED';
  constructor(message: string, line?: number) {
    super('BAD_REQUEST', `export file: ${message}${line !== undefined ? ` (line ${line})` : ''}`, line !== undefined ? { line } : undefined);
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
  readonly #agent: Agent;
  readonly #base: string;

  constructor(opts: ClientOptions) {
    this.#base = opts.url.replace(/\/+$/, '');
    this.#agent = new Agent({ connect: { ca: opts.ca, cert: opts.cert, key: opts.key }, connections: 4 });
  }

  static fromFiles(url: string, caPath: string, certPath: string, keyPath: string): LogClient {
    return new LogClient({ url, ca: readFileSync(caPath), cert: readFileSync(certPath), key: readFileSync(keyPath) });
  }

  close(): void {
    void this.#agent.destroy();
  }

  /** One GET (undici); any failure before a full answer is a `transport` error. */
  async #get(path: string): Promise<{ status: number; body: string }> {
    try {
      const res = await request(`${this.#base}${path}`, {
        method: 'GET',
        dispatcher: this.#agent,
        headersTimeout: REQUEST_TIMEOUT_MS,
        bodyTimeout: REQUEST_TIMEOUT_MS,
      });
      return { status: res.statusCode, body: await res.body.text() };
    } catch (e) {
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

// ---------------------------------------------------------------------------------------------
// Live verification.

export interface RemoteVerifyOptions {
  verifiers: readonly NoteVerifier[];
  state?: VerifierState;
  /** Witness cosignatures the checkpoint must carry (`--witness`). */
  witnesses?: WitnessPolicy;
  onProgress?: (verified: number, total: number) => void;
}

/**
 * verify-log against a live service: latest checkpoint, consistency proof from the saved state,
 * all entries paged, inclusion proofs to name the first bad entry. A transport failure while
 * fetching the checkpoint throws `LogClientError` (kind `transport`); later ones are reported as
 * `FETCH_FAILED`. An answer that arrives but is refused or malformed — from the checkpoint on —
 * is a failure in the report (`REQUEST_REFUSED`, `PROOF_REFUSED`, `BAD_RESPONSE`).
 */
export async function verifyRemoteLog(client: LogClient, opts: RemoteVerifyOptions): Promise<VerifyReport> {
  let checkpoint: string;
  try {
    checkpoint = await client.checkpoint();
  } catch (e) {
    if (!isAnsweredFailure(e)) throw e;
    return failureReport({ code: e.failureCode, message: `checkpoint unavailable: ${errorMessage(e)}` });
  }
  const size = checkpointSize(checkpoint);
  return await verifyLog({
    checkpoint,
    verifiers: opts.verifiers,
    entries: client.entries(0, size),
    ...(opts.state !== undefined ? { state: opts.state } : {}),
    consistencyProof: (from, to) => client.consistencyProof(from, to),
    inclusionProof: (index, treeSize) => client.inclusionProof(index, treeSize),
    readLeaves: (start, end) => client.entries(start, end),
    ...(opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {}),
    ...(opts.witnesses !== undefined ? { witnesses: opts.witnesses } : {}),
  });
}

/** Tree size from an (unverified) checkpoint note, only to decide how much to fetch; 0 if unparsable. */
export function checkpointSize(note: string): number {
  const lines = note.split('\n');
  const n = Number(lines[1]);
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

// ---------------------------------------------------------------------------------------------
// Export.

function writeLine(out: NodeJS.WritableStream, obj: unknown): Promise<void> | undefined {
  const ok = out.write(`${JSON.stringify(obj)}\n`);
  return ok ? undefined : once(out, 'drain').then(() => undefined);
}

/** Writes an NDJSON export (format in the module comment) of the latest checkpoint's tree. */
export async function exportLog(client: LogClient, outPath: string, onProgress?: (n: number, total: number) => void): Promise<{ size: number; origin: string }> {
  const checkpoint = await client.checkpoint();
  const origin = checkpoint.split('\n')[0] ?? '';
  const size = checkpointSize(checkpoint);
  const keys = await client.keys();
  const out = createWriteStream(outPath, { flags: 'wx' });
  const done = once(out, 'finish');
  try {
    await writeLine(out, { type: 'paylog-export', version: EXPORT_VERSION, origin });
    await writeLine(out, { type: 'checkpoint', note: checkpoint });
    for (const vkey of keys.vkeys) await writeLine(out, { type: 'key', vkey });
    let n = 0;
    for await (const e of client.entries(0, size)) {
      await writeLine(out, { type: 'entry', index: e.index, leaf: Buffer.from(e.leaf).toString('base64') });
      onProgress?.(++n, size);
    }
  } finally {
    out.end();
  }
  await done;
  return { size, origin };
}

export interface ExportHead {
  origin: string;
  checkpoints: string[];
  vkeys: string[];
  entries: AsyncIterable<LogEntryInput>;
  /** Closes the file (needed only when `entries` is not read to the end). */
  close(): void;
}

function badExport(message: string, line?: number): ExportFormatError {
  return new ExportFormatError(message, line);
}

/**
 * Streams an NDJSON export: reads the header, checkpoints and keys eagerly, then hands back the
 * entries as a lazy iterable (one line in memory at a time). Malformed lines throw
 * {@link ExportFormatError} (code BAD_REQUEST; for entry lines, while iterating); an unreadable
 * file throws the file system error.
 */
export async function openExport(path: string): Promise<ExportHead> {
  const rl = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  const it = rl[Symbol.asyncIterator]();
  let lineNo = 0;
  const parse = (text: string): any => {
    try {
      return JSON.parse(text);
    } catch {
      throw badExport('line is not JSON', lineNo);
    }
  };
  const first = await it.next();
  lineNo = 1;
  const header = first.done ? undefined : parse(first.value);
  if (header?.type !== 'paylog-export' || header.version !== EXPORT_VERSION || typeof header.origin !== 'string') {
    rl.close();
    throw badExport('missing or unsupported header', 1);
  }
  const checkpoints: string[] = [];
  const vkeys: string[] = [];
  let pending: any;
  for (;;) {
    const r = await it.next();
    if (r.done) break;
    lineNo += 1;
    if (r.value.trim() === '') continue;
    const obj = parse(r.value);
    if (obj?.type === 'checkpoint' && typeof obj.note === 'string') checkpoints.push(obj.note);
    else if (obj?.type === 'key' && typeof obj.vkey === 'string') vkeys.push(obj.vkey);
    else if (obj?.type === 'entry') {
      pending = obj;
      break;
    } else {
      rl.close();
      throw badExport('unknown line type', lineNo);
    }
  }
  if (checkpoints.length === 0) {
    rl.close();
    throw badExport('no checkpoint line');
  }
  const toEntry = (obj: any, at: number): LogEntryInput => {
    const leaf = typeof obj?.leaf === 'string' ? decodeBase64Strict(obj.leaf) : undefined;
    if (obj?.type !== 'entry' || !Number.isSafeInteger(obj.index) || leaf === undefined) throw badExport('malformed entry line', at);
    return { index: obj.index, leaf };
  };
  async function* entries(): AsyncGenerator<LogEntryInput> {
    try {
      if (pending !== undefined) yield toEntry(pending, lineNo);
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        lineNo += 1;
        if (r.value.trim() === '') continue;
        yield toEntry(parse(r.value), lineNo);
      }
    } finally {
      rl.close();
    }
  }
  return { origin: header.origin, checkpoints, vkeys, entries: entries(), close: () => rl.close() };
}

export interface FileVerifyOptions {
  /** Trusted keys (the CLI decides where they come from; see `scripts/verify-log.ts`). */
  verifiers: readonly NoteVerifier[];
  state?: VerifierState;
  witnesses?: WitnessPolicy;
  onProgress?: (verified: number, total: number) => void;
}

/**
 * verify-log --file: verifies an export offline. The last checkpoint line covers the entries;
 * earlier checkpoints and the saved state are checked as prefix roots while streaming (so a
 * rollback or fork is still caught without a consistency proof). A bad entry can be named when
 * it breaks the index sequence or the leaf format; a root mismatch from a modified leaf cannot
 * be narrowed offline (no signed per-entry data) and is reported without an index.
 * A malformed line is an `EXPORT_MALFORMED` failure in the report (for an entry line, naming the
 * index it should have held); only an unreadable file throws.
 */
export async function verifyExportFile(path: string, opts: FileVerifyOptions): Promise<VerifyReport> {
  let head: ExportHead;
  try {
    head = await openExport(path);
  } catch (e) {
    if (!(e instanceof ExportFormatError)) throw e;
    return failureReport({ code: e.failureCode, message: e.message });
  }
  const checkpoint = head.checkpoints[head.checkpoints.length - 1] as string;
  return await verifyLog({
    checkpoint,
    verifiers: opts.verifiers,
    entries: head.entries,
    origin: head.origin,
    extraCheckpoints: head.checkpoints.slice(0, -1),
    ...(opts.state !== undefined ? { state: opts.state } : {}),
    ...(opts.witnesses !== undefined ? { witnesses: opts.witnesses } : {}),
    ...(opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {}),
  });
}

/** Reads only the keys of an export (for `--trust-server-key` with `--file`). */
export async function exportKeys(path: string): Promise<string[]> {
  const head = await openExport(path);
  head.close();
  return head.vkeys;
}
