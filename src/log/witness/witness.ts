/**
 * A small C2SP tlog-witness (https://c2sp.org/tlog-witness) for paylog logs, meant to be run by
 * a third party (an auditor, a partner): it cosigns a checkpoint (tlog-cosignature, Ed25519
 * type 0x04) only after checking it is consistent with the last one it cosigned for that origin.
 *
 * Contract:
 * - The key pair is made on first start (`<dir>/witness-key.pem`, mode 0600); the verifier key is
 *   written to `<dir>/vkey` on every start.
 * - For each origin the witness keeps only the latest cosigned checkpoint (`<dir>/state/*.json`).
 *   Checking a request against it and persisting the new one happen under one per-origin lock,
 *   and the new state is durably on disk (fsync + rename + directory fsync) before the answer is
 *   sent, so two racing requests cannot roll it back (tlog-witness §add-checkpoint).
 * - One process per data directory: `startWitness` takes `<dir>/witness.lock` (./data-lock.ts)
 *   before it reads or creates anything there, and releases it on close.
 * - Plain HTTP (loopback, or behind the operator's TLS terminator), or HTTPS with `tls`.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { join } from 'node:path';
import { PaylogError } from '../../errors.js';
import { parseCheckpointBody, verifyCheckpoint } from '../checkpoint.js';
import { verifyConsistency } from '../merkle.js';
import { parseVerifierKey, type NoteVerifier } from '../note.js';
import { MAX_ADD_CHECKPOINT_BYTES, parseAddCheckpoint, TLOG_SIZE_CONTENT_TYPE } from './add-checkpoint.js';
import { formatCosignerVkey, signCosignature, splitNote, type Cosigner } from './cosignature.js';
import { lockDataDir } from './data-lock.js';

const WITNESS_KEY_FILE = 'witness-key.pem';
const WITNESS_VKEY_FILE = 'vkey';
const WITNESS_STATE_DIR = 'state';

interface WitnessOptions {
  dataDir: string;
  name: string;
  /** Log verifier keys (signed-note vkeys, type 0x01); the key name is the log's origin. */
  logVkeys: readonly string[];
  /** Clock in POSIX seconds (tests). */
  now?: () => number;
}

interface WitnessAnswer {
  status: number;
  contentType: string;
  body: string;
}

interface OriginState {
  origin: string;
  size: number;
  rootHash: string;
  note: string;
}

function answer(status: number, body: string, contentType = 'text/plain; charset=utf-8'): WitnessAnswer {
  return { status, contentType, body };
}

/** Writes `data` to `path` durably: temp file, fsync, rename, fsync of the directory. */
function writeDurably(dir: string, path: string, data: string, mode = 0o600): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const d = openSync(dir, 'r');
  try {
    fsyncSync(d);
  } finally {
    closeSync(d);
  }
}

function loadOrCreateKey(dataDir: string, name: string): Cosigner & { privateKey: KeyObject } {
  const keyPath = join(dataDir, WITNESS_KEY_FILE);
  if (!existsSync(keyPath)) {
    const { privateKey } = generateKeyPairSync('ed25519');
    writeDurably(dataDir, keyPath, privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
  }
  const privateKey = createPrivateKey(readFileSync(keyPath));
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return { name, publicKey: Buffer.from(spki.subarray(spki.length - 32)), privateKey };
}

export class Witness {
  readonly vkey: string;
  readonly #key: Cosigner & { privateKey: KeyObject };
  readonly #logs = new Map<string, NoteVerifier[]>();
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #stateDir: string;
  readonly #now: () => number;

  constructor(opts: WitnessOptions) {
    mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    this.#stateDir = join(opts.dataDir, WITNESS_STATE_DIR);
    mkdirSync(this.#stateDir, { recursive: true, mode: 0o700 });
    this.#key = loadOrCreateKey(opts.dataDir, opts.name);
    this.vkey = formatCosignerVkey(this.#key);
    writeDurably(opts.dataDir, join(opts.dataDir, WITNESS_VKEY_FILE), `${this.vkey}\n`, 0o644);
    for (const v of opts.logVkeys) {
      const k = parseVerifierKey(v);
      this.#logs.set(k.name, [...(this.#logs.get(k.name) ?? []), { name: k.name, publicKey: k.publicKey }]);
    }
    this.#now = opts.now ?? (() => Math.floor(Date.now() / 1000));
  }

  #statePath(origin: string): string {
    return join(this.#stateDir, `${createHash('sha256').update(origin).digest('hex')}.json`);
  }

  /** The latest cosigned checkpoint for `origin` (size 0 if none). */
  state(origin: string): OriginState | undefined {
    const p = this.#statePath(origin);
    if (!existsSync(p)) return undefined;
    const s = JSON.parse(readFileSync(p, 'utf8')) as OriginState;
    if (s.origin !== origin) throw new PaylogError('INTEGRITY_FAILURE', 'witness state file does not match its origin');
    return s;
  }

  /** Runs `fn` alone for `origin` (check-and-persist is atomic per origin). */
  async #locked<T>(origin: string, fn: () => T): Promise<T> {
    const prev = this.#locks.get(origin) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    this.#locks.set(origin, run.catch(() => {}));
    return await run;
  }

  /** tlog-witness §add-checkpoint, every check in the spec's order. */
  async addCheckpoint(body: string): Promise<WitnessAnswer> {
    let req;
    try {
      req = parseAddCheckpoint(body);
    } catch (e) {
      return answer(400, `${(e as Error).message}\n`);
    }
    let origin: string;
    try {
      origin = parseCheckpointBody(splitNote(req.checkpoint).text).origin;
    } catch {
      return answer(400, 'malformed checkpoint\n');
    }
    // The origin must be known (404), and a trusted key's signature must verify (403).
    const verifiers = this.#logs.get(origin);
    if (verifiers === undefined) return answer(404, 'unknown log origin\n');
    let cp;
    try {
      cp = verifyCheckpoint(req.checkpoint, verifiers, { origin });
    } catch {
      return answer(403, 'checkpoint is not signed by a trusted key of this log\n');
    }
    if (req.oldSize > cp.size) return answer(400, 'old size is larger than the checkpoint size\n');
    return await this.#locked(origin, () => {
      const state = this.state(origin);
      const known = state?.size ?? 0;
      // Old size must match the latest cosigned size: 409 with that size.
      if (req.oldSize !== known) return answer(409, `${known}\n`, TLOG_SIZE_CONTENT_TYPE);
      if (req.oldSize === 0 && req.proof.length > 0) return answer(400, 'the consistency proof must be empty when the old size is 0\n');
      if (state !== undefined && req.oldSize === cp.size) {
        // Same size: the root hashes must be identical (409 otherwise: a fork).
        if (state.rootHash !== cp.rootHash.toString('base64')) return answer(409, `${known}\n`, TLOG_SIZE_CONTENT_TYPE);
      } else if (state !== undefined) {
        // RFC 6962 §2.1.2 / RFC 9162 §2.1.4.2 consistency proof from the cosigned tree (422 if not).
        if (!verifyConsistency(state.size, cp.size, req.proof, Buffer.from(state.rootHash, 'base64'), cp.rootHash)) {
          return answer(422, 'consistency proof does not verify\n');
        }
      }
      // Persist before answering.
      const next: OriginState = { origin, size: cp.size, rootHash: cp.rootHash.toString('base64'), note: req.checkpoint };
      writeDurably(this.#stateDir, this.#statePath(origin), `${JSON.stringify(next)}\n`);
      return answer(200, signCosignature(this.#key, cp.text, BigInt(this.#now())));
    });
  }
}

export interface RunningWitness {
  witness: Witness;
  url: string;
  close(): Promise<void>;
}

function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > limit) {
        resolve(undefined);
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(n > limit ? undefined : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

interface WitnessListenOptions {
  host: string;
  port: number;
  /** Serve HTTPS with this certificate chain and key (PEM); absent → plain HTTP. */
  tls?: { cert: string | Buffer; key: string | Buffer };
}

/**
 * Locks the data directory (throws DataDirLockedError if another live process holds it), then
 * serves `POST <prefix>/add-checkpoint` over HTTPS (`tls`) or plain HTTP (loopback, or behind
 * TLS termination).
 */
export async function startWitness(opts: WitnessOptions & WitnessListenOptions): Promise<RunningWitness> {
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const lock = await lockDataDir(opts.dataDir);
  try {
    return await listen(new Witness(opts), opts, () => lock.release());
  } catch (e) {
    lock.release();
    throw e;
  }
}

async function listen(witness: Witness, opts: WitnessListenOptions, release: () => void): Promise<RunningWitness> {
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const send = (a: WitnessAnswer) => res.writeHead(a.status, { 'content-type': a.contentType, 'cache-control': 'no-store' }).end(a.body);
    if (req.url !== '/add-checkpoint') return send(answer(404, 'not found\n'));
    if (req.method !== 'POST') return send(answer(405, 'POST only\n'));
    readBody(req, MAX_ADD_CHECKPOINT_BYTES)
      .then(async (body) => send(body === undefined ? answer(413, 'request too large\n') : await witness.addCheckpoint(body)))
      .catch(() => send(answer(500, 'internal error\n')));
  };
  const server: Server = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : createServer(handler);
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    witness,
    url: `${opts.tls ? 'https' : 'http'}://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          release();
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}
