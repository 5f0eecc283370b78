/**
 * An append-only list of small byte records in bounded memory, for state the auditor must keep
 * per entry until the end of a run (the shred records of ./shred-report.ts). Records are packed
 * into fixed-size chunks; the newest chunks stay in memory, older ones are written to an
 * anonymous temporary file (created on the first spill and unlinked at once, so nothing outlives
 * the process) and read back, in append order, by {@link SpillRecords.scan}.
 *
 * Memory: at most `residentChunks + 1` chunks whatever the number of records (defaults:
 * {@link SPILL_CHUNK_BYTES} × ({@link SPILL_RESIDENT_CHUNKS} + 1) = 4.25 MiB); a log small enough
 * to stay under that never touches the disk. Disk: the record bytes beyond that.
 *
 * Contract: synchronous (the verifier's entry loop is); a record is at most `chunkBytes − 6`
 * bytes; {@link SpillRecords.scan} visits every record exactly once, in append order, with the
 * bytes it was written with; {@link SpillRecords.close} releases the file (idempotent).
 */
import { closeSync, mkdtempSync, openSync, readSync, rmdirSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PaylogError } from '../errors.js';

/** Bytes per chunk (larger than any leaf, so any record derived from one leaf fits). */
const SPILL_CHUNK_BYTES = 256 * 1024;
/** Full chunks kept in memory before the oldest is written to the spill file. */
const SPILL_RESIDENT_CHUNKS = 16;
/** Chunk header: the bytes used (u32). Record header: its length (u16). */
const CHUNK_HEADER = 4;
const RECORD_HEADER = 2;

export class SpillRecords {
  /** The chunk being filled; write a record at the offset {@link begin} returns. */
  chunk: Buffer;
  private pos = CHUNK_HEADER;
  private recordAt = -1;
  /** Full chunks still in memory, oldest first. */
  private readonly resident: Buffer[] = [];
  /** Full chunks in the spill file (chunk k at offset k × chunkBytes). */
  private spilled = 0;
  private fd: number | undefined;
  private leftover: string | undefined;
  private readonly chunkBytes: number;
  private readonly residentChunks: number;

  constructor(opts: { chunkBytes?: number; residentChunks?: number } = {}) {
    this.chunkBytes = opts.chunkBytes ?? SPILL_CHUNK_BYTES;
    this.residentChunks = opts.residentChunks ?? SPILL_RESIDENT_CHUNKS;
    this.chunk = Buffer.allocUnsafe(this.chunkBytes);
  }

  /** Number of chunks written to disk so far (0 while everything fits in memory). */
  get spilledChunks(): number {
    return this.spilled;
  }

  /** Starts a record of at most `max` bytes; returns the offset in {@link chunk} to write it at. */
  begin(max: number): number {
    if (max > this.chunkBytes - CHUNK_HEADER - RECORD_HEADER) throw new PaylogError('BAD_REQUEST', `spill record of ${max} bytes exceeds a chunk`);
    if (this.pos + RECORD_HEADER + max > this.chunkBytes) this.nextChunk();
    this.recordAt = this.pos;
    return this.pos + RECORD_HEADER;
  }

  /** Ends the record begun last, `len` bytes long (≤ the `max` it was begun with). */
  end(len: number): void {
    this.chunk.writeUInt16LE(len, this.recordAt);
    this.pos = this.recordAt + RECORD_HEADER + len;
  }

  private nextChunk(): void {
    this.chunk.writeUInt32LE(this.pos, 0);
    this.resident.push(this.chunk);
    let reuse: Buffer | undefined;
    if (this.resident.length > this.residentChunks) {
      reuse = this.resident.shift() as Buffer;
      writeSync(this.spillFd(), reuse, 0, this.chunkBytes, this.spilled * this.chunkBytes);
      this.spilled++;
    }
    this.chunk = reuse ?? Buffer.allocUnsafe(this.chunkBytes);
    this.pos = CHUNK_HEADER;
  }

  private spillFd(): number {
    if (this.fd !== undefined) return this.fd;
    const dir = mkdtempSync(join(tmpdir(), 'paylog-audit-'));
    const path = join(dir, 'records');
    this.fd = openSync(path, 'w+', 0o600);
    try {
      unlinkSync(path);
      rmdirSync(dir);
    } catch {
      this.leftover = dir; // a platform that cannot unlink an open file: removed in close()
    }
    return this.fd;
  }

  /** Visits every record in append order: `visit(buf, at, len)` reads `buf[at, at + len)`. */
  scan(visit: (buf: Buffer, at: number, len: number) => void): void {
    const each = (c: Buffer, used: number) => {
      for (let p = CHUNK_HEADER; p < used; ) {
        const len = c.readUInt16LE(p);
        visit(c, p + RECORD_HEADER, len);
        p += RECORD_HEADER + len;
      }
    };
    if (this.spilled > 0) {
      const buf = Buffer.allocUnsafe(this.chunkBytes);
      for (let k = 0; k < this.spilled; k++) {
        if (readSync(this.fd as number, buf, 0, this.chunkBytes, k * this.chunkBytes) !== this.chunkBytes) throw new PaylogError('INTEGRITY_FAILURE', 'spill file read short');
        each(buf, buf.readUInt32LE(0));
      }
    }
    for (const c of this.resident) each(c, c.readUInt32LE(0));
    each(this.chunk, this.pos);
  }

  /** Closes (and removes) the spill file, if any. */
  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    if (this.leftover !== undefined) {
      try {
        unlinkSync(join(this.leftover, 'records'));
        rmdirSync(this.leftover);
      } catch {
        // already gone
      }
      this.leftover = undefined;
    }
  }
}
