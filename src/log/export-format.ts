/**
 * The NDJSON log export format, shared by the auditor (src/audit/export-log.ts writes it,
 * src/audit/verify-sources.ts verifies it) and the operator's restore (./restore.ts reads it).
 *
 * Export format (NDJSON, one JSON object per line, in this order):
 *   {"type":"paylog-export","version":1,"origin":"<origin>"}
 *   {"type":"checkpoint","note":"<signed note>"}          one or more; the LAST one covers the entries
 *   {"type":"key","vkey":"<name>+<keyid>+<base64>"}       zero or more; NOT trusted unless asked
 *   {"type":"entry","index":0,"leaf":"<base64 leaf bytes>"}  indexes 0 .. size-1
 *
 * Contract: parsing only; nothing read here is trusted (signatures, proofs and leaves are checked
 * by the auditor, src/audit/run.ts). MUST NOT import src/audit (the service side reads exports too).
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { PaylogError } from '../errors.js';
import { decodeBase64Strict } from './note.js';

/** Version of the NDJSON export format. */
export const EXPORT_VERSION = 1;

/** One entry line of an export (untrusted). */
interface ExportEntry {
  index: number;
  leaf: Uint8Array;
}

/** A malformed line in an NDJSON export: a verification failure of that file (not a read error). */
export class ExportFormatError extends PaylogError {
  /** The auditor's failure code for this error (src/audit/failures.ts). */
  readonly failureCode = 'EXPORT_MALFORMED' as const;
  constructor(message: string, line?: number) {
    super('BAD_REQUEST', `export file: ${message}${line !== undefined ? ` (line ${line})` : ''}`, line !== undefined ? { line } : undefined);
  }
}

export interface ExportHead {
  origin: string;
  checkpoints: string[];
  vkeys: string[];
  entries: AsyncIterable<ExportEntry>;
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
  const toEntry = (obj: any, at: number): ExportEntry => {
    const leaf = typeof obj?.leaf === 'string' ? decodeBase64Strict(obj.leaf) : undefined;
    if (obj?.type !== 'entry' || !Number.isSafeInteger(obj.index) || leaf === undefined) throw badExport('malformed entry line', at);
    return { index: obj.index, leaf };
  };
  async function* entries(): AsyncGenerator<ExportEntry> {
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
