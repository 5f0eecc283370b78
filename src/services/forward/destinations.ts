/**
 * A processor's forward destinations (issue 18 item 1), owned by administrators.
 *
 * Contract:
 * - Registering, changing and removing a destination are `admin_event` entries committed BEFORE
 *   the change takes effect (AdminService's rule); a registration's entry carries the SHA-256
 *   of the destination's canonical configuration (`cfg`).
 * - Rows are written only on the admin connection (paylog_admin; the runtime role can read
 *   them, not write them), and a row is USED only while its configuration hashes to the `cfg`
 *   of the granted `destination_registered` entry it names, for the same processor and name:
 *   a row changed or planted behind the admin route's back is refused (DESTINATION_NOT_ALLOWED).
 * - The client key is stored only KMS-wrapped (bound to processor and destination name), is
 *   never served back and never logged; GET serves `hasClientKey` only.
 */
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { z } from 'zod';
import type { AppDatabase } from '../../db/connection.js';
import type { KmsBackend } from '../../kms/backend.js';
import { PaylogError } from '../../errors.js';
import { authorize } from '../../auth/policy.js';
import type { Principal } from '../../auth/principal.js';
import { canonicalJson } from '../../crypto/canonical-json.js';
import { decodeLeaf } from '../../log/leaf.js';
import { isProcessorName } from '../../validation/identifiers.js';
import type { AdminService } from '../admin.js';
import { clientKeyContext, openClientKey, sealClientKey } from './client-key.js';

export const FORWARD_METHODS = ['POST', 'PUT', 'PATCH', 'GET', 'DELETE'] as const;
export type ForwardMethod = (typeof FORWARD_METHODS)[number];
const DEFAULT_DESTINATION_TIMEOUT_MS = 10_000;
const MAX_DESTINATION_TIMEOUT_MS = 60_000;
/** A path segment of a destination pattern: literal characters, or `*` for any one segment. */
const PATH_PATTERN = /^(?:\/(?:[A-Za-z0-9._~-]+|\*))+\/?$/;
const PIN_PATTERN = /^sha256\/[A-Za-z0-9+/]{43}=$/;

export const destinationRequestSchema = z.strictObject({
  url: z.string().min(9).max(2048),
  paths: z.array(z.string().min(1).max(256).regex(PATH_PATTERN)).min(1).max(64),
  methods: z.array(z.enum(FORWARD_METHODS)).min(1).max(FORWARD_METHODS.length).optional(),
  caPem: z.string().max(64 * 1024).optional(),
  pins: z.array(z.string().regex(PIN_PATTERN)).min(1).max(16).optional(),
  clientCertPem: z.string().max(64 * 1024).optional(),
  clientKeyPem: z.string().max(4096).optional(),
  allowPrivateNetwork: z.boolean().optional(),
  timeoutMs: z.number().int().min(100).max(MAX_DESTINATION_TIMEOUT_MS).optional(),
});

/** What each field must be, in words (the errors and the OpenAPI document use the same texts). */
const DESTINATION_FIELD_EXPECTATIONS: Readonly<Record<string, string>> = {
  url: 'url must be https://host[:port][/base], without credentials, query or fragment',
  paths: 'paths must be 1-64 paths like /v1/payments (a segment may be * for any one segment)',
  methods: `methods must be a non-empty subset of ${FORWARD_METHODS.join(', ')} (default POST)`,
  caPem: 'caPem must be PEM certificates (replaces the system roots for this destination)',
  pins: 'pins must be sha256/<base64 of the SHA-256 of a SubjectPublicKeyInfo>',
  clientCertPem: 'clientCertPem and clientKeyPem must be given together: a PEM certificate and its PEM private key',
  clientKeyPem: 'clientCertPem and clientKeyPem must be given together: a PEM certificate and its PEM private key',
  allowPrivateNetwork: 'allowPrivateNetwork must be a boolean',
  timeoutMs: `timeoutMs must be an integer from 100 to ${MAX_DESTINATION_TIMEOUT_MS}`,
  '*': 'the body may have only url, paths, methods, caPem, pins, clientCertPem, clientKeyPem, allowPrivateNetwork, timeoutMs',
};

/** The stored, hashed configuration (no key material). */
interface DestinationConfig {
  url: string;
  paths: string[];
  methods: ForwardMethod[];
  caPem?: string;
  pins?: string[];
  clientCertPem?: string;
  allowPrivateNetwork: boolean;
  timeoutMs: number;
}

/** A destination as the forward service uses it (verified against its admin event). */
export interface Destination {
  processor: string;
  name: string;
  config: DestinationConfig;
  wrappedClientKey: Buffer | null;
  /** The configuration digest its admin event recorded (also the pool's cache key). */
  configSha256: Buffer;
}

/** What GET serves for one destination (no key material). */
interface DestinationView extends DestinationConfig {
  name: string;
  hasClientKey: boolean;
  adminLogIndex: number;
}

function invalid(path: string, message = DESTINATION_FIELD_EXPECTATIONS[path] ?? DESTINATION_FIELD_EXPECTATIONS['*']!): PaylogError {
  return new PaylogError('VALIDATION_FAILED', message, { issues: [{ path, code: 'invalid_value', message }] });
}

function checkUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw invalid('url');
  }
  if (u.protocol !== 'https:' || u.username || u.password || u.search || u.hash || raw.includes('{{')) throw invalid('url');
  return u.toString().replace(/\/$/, '');
}

function checkPems(caPem: string | undefined, certPem: string | undefined, keyPem: string | undefined): void {
  try {
    if (caPem !== undefined) new X509Certificate(caPem);
  } catch {
    throw invalid('caPem');
  }
  if ((certPem === undefined) !== (keyPem === undefined)) throw invalid('clientCertPem');
  if (certPem !== undefined && keyPem !== undefined) {
    try {
      if (!new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem))) throw new Error('mismatch');
    } catch {
      throw invalid('clientKeyPem', 'clientKeyPem must be the PEM private key of clientCertPem');
    }
  }
}

/** SHA-256 of what a registration commits to: name, processor, configuration, wrapped key's digest. */
function destinationDigest(processor: string, name: string, config: DestinationConfig, wrappedClientKey: Buffer | null): Buffer {
  const wrapped = wrappedClientKey ? createHash('sha256').update(wrappedClientKey).digest('hex') : null;
  return createHash('sha256').update(canonicalJson({ processor, name, config: config as unknown as Record<string, unknown>, wrappedClientKeySha256: wrapped })).digest();
}

function parseRequest(raw: unknown): { config: DestinationConfig; clientKeyPem: string | undefined } {
  const r = destinationRequestSchema.safeParse(raw);
  if (!r.success) {
    const first = r.error.issues[0];
    const path = first?.path.map(String)[0] ?? '*';
    throw invalid(Object.hasOwn(DESTINATION_FIELD_EXPECTATIONS, path) ? path : '*');
  }
  const d = r.data;
  const url = checkUrl(d.url);
  checkPems(d.caPem, d.clientCertPem, d.clientKeyPem);
  const config: DestinationConfig = {
    url,
    paths: [...new Set(d.paths)],
    methods: [...new Set<ForwardMethod>(d.methods ?? ['POST'])],
    ...(d.caPem !== undefined ? { caPem: d.caPem } : {}),
    ...(d.pins !== undefined ? { pins: [...new Set(d.pins)] } : {}),
    ...(d.clientCertPem !== undefined ? { clientCertPem: d.clientCertPem } : {}),
    allowPrivateNetwork: d.allowPrivateNetwork ?? false,
    timeoutMs: d.timeoutMs ?? DEFAULT_DESTINATION_TIMEOUT_MS,
  };
  return { config, clientKeyPem: d.clientKeyPem };
}

function checkNames(processor: string, name: string): void {
  if (!isProcessorName(processor)) throw invalid('processor', 'processor name: 1-63 lower-case letters, digits and -, e.g. acme');
  if (!isProcessorName(name)) throw invalid('destination', 'destination name: 1-63 lower-case letters, digits and -, e.g. payments');
}

type Row = { processor: string; name: string; config: DestinationConfig; wrapped_client_key: Buffer | null; admin_log_index: string };
/**
 * A stored destination row with its admin event's leaf, not yet verified (read here, or beside a
 * forward's other first reads: src/services/forward/first-reads.ts).
 */
export type DestinationRow = Row & { leaf: Buffer | null };

interface DestinationDeps {
  /** Runtime pool: reads rows and leaves. */
  database: AppDatabase;
  /** Admin pool (paylog_admin): the only writer of the table. */
  adminDatabase: AppDatabase;
  kms: KmsBackend;
  /** KMS key wrapping client keys (the service's data key). */
  kmsKeyId: string;
  admin: AdminService;
}

/** Destinations whose last verified row `verified` remembers (per process). */
const MAX_VERIFIED_REMEMBERED = 1000;

const sameBytes = (a: Buffer | null, b: Buffer | null) => (a === null || b === null ? a === b : a.equals(b));

export class DestinationService {
  /** `processor/name` → the last row that verified (its leaf and configuration) and its answer. */
  private readonly lastVerified = new Map<string, { leaf: Buffer; configJson: string; destination: Destination }>();

  constructor(private readonly deps: DestinationDeps) {}

  /** Registers or replaces `name` of `processor`; its admin event commits first. */
  async put(principal: Principal, processor: string, name: string, raw: unknown, sourceAddress: string): Promise<DestinationView> {
    authorize(principal, 'admin:destinations');
    checkNames(processor, name);
    const { config, clientKeyPem } = parseRequest(raw);
    if ((await this.deps.adminDatabase.pool.query('SELECT 1 FROM processors WHERE name = $1', [processor])).rows.length === 0) {
      throw new PaylogError('UNKNOWN_PROCESSOR', 'no such processor: register it first (PUT /v1/admin/processors/{name})');
    }
    const keyBytes = clientKeyPem !== undefined ? Buffer.from(clientKeyPem, 'utf8') : undefined;
    let wrapped: Buffer | null = null;
    try {
      if (keyBytes) wrapped = await sealClientKey(this.deps.kms, this.deps.kmsKeyId, keyBytes, clientKeyContext(processor, name));
    } finally {
      keyBytes?.fill(0);
    }
    const digest = destinationDigest(processor, name, config, wrapped);
    const index = await this.deps.admin.logged(principal, sourceAddress, 'admin:destinations', { action: 'destination_registered', processor, destination: name, configSha256: digest }, async (logIndex) => {
      await this.deps.adminDatabase.pool.query(
        `INSERT INTO forward_destinations (processor, name, config, wrapped_client_key, admin_log_index) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (processor, name) DO UPDATE SET config = EXCLUDED.config, wrapped_client_key = EXCLUDED.wrapped_client_key, admin_log_index = EXCLUDED.admin_log_index, created_at = now()`,
        [processor, name, JSON.stringify(config), wrapped, logIndex],
      );
      return logIndex;
    });
    return { name, ...config, hasClientKey: wrapped !== null, adminLogIndex: index };
  }

  /** The processor's destinations as stored (no key material). */
  async list(principal: Principal, processor: string): Promise<{ destinations: DestinationView[] }> {
    authorize(principal, 'admin:destinations');
    if (!isProcessorName(processor)) throw invalid('processor', 'processor name: 1-63 lower-case letters, digits and -, e.g. acme');
    const r = await this.deps.database.pool.query('SELECT processor, name, config, wrapped_client_key, admin_log_index FROM forward_destinations WHERE processor = $1 ORDER BY name', [processor]);
    return { destinations: (r.rows as Row[]).map((row) => ({ name: row.name, ...row.config, hasClientKey: row.wrapped_client_key !== null, adminLogIndex: Number(row.admin_log_index) })) };
  }

  /** Removes `name` of `processor`; its admin event commits first. */
  async remove(principal: Principal, processor: string, name: string, sourceAddress: string): Promise<{ removed: boolean }> {
    authorize(principal, 'admin:destinations');
    checkNames(processor, name);
    const exists = (await this.deps.database.pool.query('SELECT 1 FROM forward_destinations WHERE processor = $1 AND name = $2', [processor, name])).rows.length > 0;
    if (!exists) throw new PaylogError('NOT_FOUND', 'no such destination');
    await this.deps.admin.logged(principal, sourceAddress, 'admin:destinations', { action: 'destination_removed', processor, destination: name }, async () => {
      await this.deps.adminDatabase.pool.query('DELETE FROM forward_destinations WHERE processor = $1 AND name = $2', [processor, name]);
    });
    return { removed: true };
  }

  /**
   * The destination `name` of `processor`, only if its row hashes to what its granted
   * `destination_registered` entry recorded. DESTINATION_NOT_ALLOWED otherwise (or when absent).
   * `prefetched` (the forward's first read) is used only when it is the row of this very processor
   * and name (the record's processor comes from its leaf, the prefetch from its row's column);
   * otherwise the row is read here.
   */
  async verified(processor: string, name: string, prefetched?: DestinationRow | null): Promise<Destination> {
    const refused = (why: string) => new PaylogError('DESTINATION_NOT_ALLOWED', `destination ${name} is not registered for this transaction's processor${why}`);
    if (!isProcessorName(name)) throw refused('');
    let row = prefetched?.processor === processor && prefetched.name === name ? prefetched : undefined;
    if (!row) {
      const r = await this.deps.database.pool.query({
        name: 'paylog_forward_destination',
        text: `SELECT d.processor, d.name, d.config, d.wrapped_client_key, d.admin_log_index, e.leaf
               FROM forward_destinations d LEFT JOIN log_entries e ON e.idx = d.admin_log_index
               WHERE d.processor = $1 AND d.name = $2`,
        values: [processor, name],
      });
      row = r.rows[0] as DestinationRow | undefined;
    }
    if (!row) throw refused('');
    // The answer is a function of the row and its leaf: a row identical to the last one verified
    // (same leaf bytes, configuration and wrapped key) gets the same answer without the work.
    const id = `${processor}/${name}`;
    const configJson = JSON.stringify(row.config);
    const last = this.lastVerified.get(id);
    if (last && row.leaf && last.leaf.equals(row.leaf) && last.configJson === configJson && sameBytes(last.destination.wrappedClientKey, row.wrapped_client_key)) return last.destination;
    const digest = destinationDigest(row.processor, row.name, row.config, row.wrapped_client_key);
    let ok = false;
    try {
      const leaf = row.leaf ? decodeLeaf(row.leaf) : undefined;
      ok =
        leaf?.type === 'admin_event' &&
        leaf.action === 'destination_registered' &&
        leaf.outcome === 'granted' &&
        leaf.processor === processor &&
        leaf.dest === name &&
        leaf.cfg !== undefined &&
        leaf.cfg.equals(digest);
    } catch {
      ok = false;
    }
    if (!ok) throw refused(' (its stored configuration does not match its admin_event entry)');
    const destination: Destination = { processor, name, config: row.config, wrappedClientKey: row.wrapped_client_key, configSha256: digest };
    if (this.lastVerified.size >= MAX_VERIFIED_REMEMBERED && !this.lastVerified.has(id)) this.lastVerified.clear();
    this.lastVerified.set(id, { leaf: Buffer.from(row.leaf!), configJson, destination });
    return destination;
  }

  /** The destination's client key PEM (unwrapped; the caller zeroes it), or undefined. */
  async clientKey(d: Destination): Promise<Buffer | undefined> {
    if (!d.wrappedClientKey) return undefined;
    // Any KMS failure here is the destination's TLS set-up failing: no bytes leave.
    return await openClientKey(this.deps.kms, this.deps.kmsKeyId, d.wrappedClientKey, clientKeyContext(d.processor, d.name));
  }
}
