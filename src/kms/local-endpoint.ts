/**
 * Local, DEV-ONLY, AWS-KMS-compatible endpoint.
 *
 * When no AWS settings are present paylog starts this on loopback and points the real
 * `@aws-sdk/client-kms` client at it, so the same code path runs in development and production.
 * It speaks the AWS JSON 1.1 protocol exactly as the SDK expects it:
 *   - `POST /`, `Content-Type: application/x-amz-json-1.1`, `X-Amz-Target: TrentService.<Op>`;
 *     JSON bodies, blobs as base64 strings, timestamps as epoch seconds.
 *   - errors: HTTP 400 (500 for internal faults), body `{"__type":"<Name>","message":"..."}` and
 *     header `x-amzn-ErrorType: <Name>`. The SDK resolves `__type` first (smithy
 *     `loadJsonRpcErrorCode`: `__type`, then `code`, then the header), so modeled KMS errors come
 *     out as their SDK classes (`NotFoundException`, `InvalidCiphertextException`, ...), and
 *     unmodeled ones (`UnknownOperationException`) as `KMSServiceException` with that `name`.
 *   - an `Authorization` header (SigV4) is required; the signature is NOT verified (dev only).
 *     The region of the credential scope selects the region keys live in.
 *
 * Operations: CreateKey, DescribeKey, CreateAlias, ListAliases, EnableKey, DisableKey,
 * ScheduleKeyDeletion, CancelKeyDeletion, GenerateDataKey, GenerateDataKeyWithoutPlaintext,
 * GenerateRandom, Encrypt, Decrypt, ReEncrypt, Sign, Verify, GetPublicKey. Other real KMS
 * operations answer `UnsupportedOperationException`; unknown targets `UnknownOperationException`.
 * Key specs: SYMMETRIC_DEFAULT/ENCRYPT_DECRYPT and ECC_NIST_EDWARDS25519/SIGN_VERIFY
 * (signing algorithm ED25519_SHA_512 with MessageType RAW = plain Ed25519 over the message;
 * ED25519_PH_SHA_512 is not offered).
 *
 * Key deletion as in KMS: ScheduleKeyDeletion (7–30 days) makes the key unusable at once
 * (KMSInvalidStateException) and CancelKeyDeletion leaves it Disabled; when the waiting period
 * ends, the key, its material and its aliases are deleted (NotFoundException from then on).
 *
 * Key ids resolve like AWS: key id, key ARN `arn:aws:kms:<region>:111122223333:key/<uuid>`,
 * alias name `alias/<name>`, alias ARN `arn:aws:kms:<region>:111122223333:alias/<name>`.
 * Responses carry `KeyId` as the key ARN.
 *
 * Ciphertext blob format (version 1), produced by Encrypt / GenerateDataKey / ReEncrypt:
 *
 *   offset 0        1 byte   version = 0x01
 *   offset 1        1 byte   L = length of the key id in bytes
 *   offset 2        L bytes  key id (UUID, ASCII)
 *   offset 2+L     12 bytes  AES-GCM IV (random)
 *   offset 14+L     n bytes  AES-256-GCM ciphertext of the plaintext
 *   last           16 bytes  GCM tag
 *
 * AAD = blob header (version, L, key id) || canonicalEncryptionContext(context), where the
 * canonical encoding is u32be(pair count) followed, for each pair in ascending order of the
 * key's UTF-8 bytes, by u32be(len(key)) || key || u32be(len(value)) || value (UTF-8). It is
 * unambiguous (`{"ab":"c"}` ≠ `{"a":"bc"}`), exact and case-sensitive: Decrypt with a missing,
 * extra or changed context entry fails GCM authentication → InvalidCiphertextException.
 */
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  randomUUID,
  sign as edSign,
  verify as edVerify,
} from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KeyStore, type KeySpec, type KeyUsage, type StoredAlias, type StoredKey } from './keystore.js';

export interface LocalKmsEndpoint {
  readonly url: string;
  /** Requests answered so far, by operation name (tests count KMS calls here). */
  readonly requestCounts: ReadonlyMap<string, number>;
  close(): Promise<void>;
}

/** Account id in every ARN the local endpoint issues (the AWS documentation example account). */
export const LOCAL_KMS_ACCOUNT_ID = '111122223333';
export const LOCAL_KMS_DEFAULT_HOST = '127.0.0.1';
/** Region used when a request's SigV4 credential scope cannot be read. */
const FALLBACK_REGION = 'us-east-1';
const MAX_REQUEST_BYTES = 1024 * 1024;
const JSON_11 = 'application/x-amz-json-1.1';
const TARGET_PREFIX = 'TrentService.';

const BLOB_VERSION = 0x01;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const SYMMETRIC_KEY_BYTES = 32;
/** KMS limits (AWS KMS API reference). */
const MAX_PLAINTEXT_BYTES = 4096;
const MAX_CIPHERTEXT_BYTES = 6144;
const MAX_MESSAGE_BYTES = 4096;
const MAX_RANDOM_BYTES = 1024;
const MAX_DESCRIPTION_CHARS = 8192;
const MAX_ALIAS_CHARS = 256;
const DEFAULT_PENDING_WINDOW_DAYS = 30;

const SYMMETRIC_DEFAULT = 'SYMMETRIC_DEFAULT';
const ED25519_SHA_512 = 'ED25519_SHA_512';
const ED25519_PH_SHA_512 = 'ED25519_PH_SHA_512';

/** Real KMS operations (API 2014-11-01) this endpoint does not implement. */
const UNIMPLEMENTED_KMS_OPERATIONS = new Set([
  'ConnectCustomKeyStore', 'CreateCustomKeyStore', 'CreateGrant', 'Decapsulate', 'DeleteAlias',
  'DeleteCustomKeyStore', 'DeleteImportedKeyMaterial', 'DeriveSharedSecret',
  'DescribeCustomKeyStores', 'DisableKeyRotation', 'DisconnectCustomKeyStore',
  'EnableKeyRotation', 'Encapsulate', 'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext',
  'GenerateMac', 'GetKeyLastUsage', 'GetKeyPolicy', 'GetKeyRotationStatus',
  'GetParametersForImport', 'ImportKeyMaterial', 'ListGrants', 'ListKeyPolicies',
  'ListKeyRotations', 'ListKeys', 'ListResourceTags', 'ListRetirableGrants', 'PutKeyPolicy',
  'ReplicateKey', 'RetireGrant', 'RevokeGrant', 'RotateKeyOnDemand', 'TagResource',
  'UntagResource', 'UpdateAlias', 'UpdateCustomKeyStore', 'UpdateKeyDescription',
  'UpdatePrimaryRegion', 'VerifyMac',
]);

/** An AWS JSON error: `type` is the wire `__type` (the SDK error `name`). */
class KmsWireError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

type Json = Record<string, unknown>;
interface RequestContext {
  readonly region: string;
}
type Operation = (input: Json, ctx: RequestContext) => Promise<Json> | Json;

/** Starts the endpoint on loopback (port 0 = any free port) backed by `<keyStoreDir>/keystore.json`. */
export async function startLocalKms(opts: {
  keyStoreDir: string;
  host?: string;
  port?: number;
  /** The endpoint's clock (tests: a waiting period that has ended); default the system clock. */
  clock?: () => Date;
}): Promise<LocalKmsEndpoint> {
  const host = opts.host ?? LOCAL_KMS_DEFAULT_HOST;
  if (!isLoopbackHost(host)) {
    throw new Error('the local KMS endpoint is dev-only and listens on loopback only');
  }
  const store = await KeyStore.open(opts.keyStoreDir);
  const clock = opts.clock ?? (() => new Date());
  const nowSeconds = () => Math.floor(clock().getTime() / 1000);
  const operations = buildOperations(store, nowSeconds);
  const inFlight = new Set<Promise<void>>();
  const requestCounts = new Map<string, number>();

  const server = createServer((req, res) => {
    const target = req.headers['x-amz-target'];
    const name = typeof target === 'string' && target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : '?';
    requestCounts.set(name, (requestCounts.get(name) ?? 0) + 1);
    const p = handleRequest(operations, req, res, async () => {
      store.refresh();
      await completeDueDeletions(store, nowSeconds());
    });
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  return {
    url,
    requestCounts,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // The SDK keeps connections alive; drop them so close() does not wait for idle timeouts.
      server.closeAllConnections();
      await closed;
      // Let handlers whose connection was dropped finish their key-store writes.
      await Promise.allSettled([...inFlight]);
    },
  };
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

// ---------------------------------------------------------------------------------------------
// AWS JSON 1.1 transport
// ---------------------------------------------------------------------------------------------

async function handleRequest(
  operations: ReadonlyMap<string, Operation>,
  req: IncomingMessage,
  res: ServerResponse,
  beforeOperation: () => Promise<void>,
): Promise<void> {
  const requestId = randomUUID();
  try {
    const body = await readBody(req);
    const { op, ctx } = routeRequest(operations, req);
    await beforeOperation();
    const input = parseJsonInput(body);
    const output = await op(input, ctx);
    sendJson(res, 200, output, requestId);
  } catch (e) {
    const err =
      e instanceof KmsWireError
        ? e
        : new KmsWireError('KMSInternalException', 'internal error in the local KMS endpoint', 500);
    sendJson(res, err.status, { __type: err.type, message: err.message }, requestId, err.type);
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_REQUEST_BYTES) tooLarge = true;
      else chunks.push(c);
    });
    req.on('end', () =>
      tooLarge
        ? reject(new KmsWireError('ValidationException', 'request body too large'))
        : resolve(Buffer.concat(chunks)),
    );
    req.on('error', reject);
  });
}

/** AWS JSON 1.1: POST /, x-amz-json-1.1 content type, SigV4 Authorization, TrentService target. */
function routeRequest(
  operations: ReadonlyMap<string, Operation>,
  req: IncomingMessage,
): { op: Operation; ctx: RequestContext } {
  const auth = req.headers.authorization;
  if (auth === undefined || auth === '') {
    throw new KmsWireError('MissingAuthenticationTokenException', 'Missing Authentication Token');
  }
  const region = regionFromAuthorization(auth);
  if (region === undefined) {
    throw new KmsWireError('IncompleteSignatureException', 'Authorization header is not AWS SigV4');
  }
  const target = req.headers['x-amz-target'];
  const contentType = req.headers['content-type'] ?? '';
  const opName =
    typeof target === 'string' && target.startsWith(TARGET_PREFIX)
      ? target.slice(TARGET_PREFIX.length)
      : undefined;
  const pathname = (req.url ?? '').split('?')[0];
  if (req.method !== 'POST' || pathname !== '/' || !contentType.startsWith(JSON_11) || opName === undefined) {
    throw new KmsWireError('UnknownOperationException', 'unknown operation');
  }
  const op = operations.get(opName);
  if (op !== undefined) return { op, ctx: { region } };
  if (UNIMPLEMENTED_KMS_OPERATIONS.has(opName)) {
    throw new KmsWireError(
      'UnsupportedOperationException',
      `${opName} is not implemented by the local dev KMS endpoint`,
    );
  }
  throw new KmsWireError('UnknownOperationException', 'unknown operation');
}

/** SigV4: `AWS4-HMAC-SHA256 Credential=<akid>/<date>/<region>/kms/aws4_request, ...`. */
function regionFromAuthorization(auth: string): string | undefined {
  const m = /^AWS4-HMAC-SHA256\s+Credential=[^/,\s]+\/\d{8}\/([a-z0-9-]+)\/kms\/aws4_request/.exec(auth);
  return m?.[1] ?? (auth.startsWith('AWS4-HMAC-SHA256') ? FALLBACK_REGION : undefined);
}

function parseJsonInput(body: Buffer): Json {
  if (body.length === 0) return {};
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    throw new KmsWireError('SerializationException', 'request body is not valid JSON');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new KmsWireError('SerializationException', 'request body must be a JSON object');
  }
  return v as Json;
}

function sendJson(res: ServerResponse, status: number, body: Json, requestId: string, errorType?: string): void {
  const text = JSON.stringify(body);
  const headers: Record<string, string | number> = {
    'content-type': JSON_11,
    'content-length': Buffer.byteLength(text),
    'x-amzn-requestid': requestId,
  };
  if (errorType !== undefined) headers['x-amzn-errortype'] = errorType;
  res.writeHead(status, headers);
  res.end(text);
}

// ---------------------------------------------------------------------------------------------
// Input validation (ValidationException like the KMS service)
// ---------------------------------------------------------------------------------------------

function validation(member: string, constraint: string): KmsWireError {
  return new KmsWireError('ValidationException', `1 validation error detected: Value at '${member}' failed to satisfy constraint: ${constraint}`);
}

function optString(input: Json, name: string): string | undefined {
  const v = input[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw validation(name, 'Member must be a string');
  return v;
}

function reqString(input: Json, name: string): string {
  const v = optString(input, name);
  if (v === undefined || v.length === 0) throw validation(name, 'Member must not be null or empty');
  return v;
}

function optInt(input: Json, name: string): number | undefined {
  const v = input[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw validation(name, 'Member must be an integer');
  return v;
}

function reqBlob(input: Json, name: string, maxBytes: number): Buffer {
  const v = input[name];
  if (typeof v !== 'string' || v.length === 0) throw validation(name, 'Member must not be null or empty');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(v)) throw new KmsWireError('SerializationException', `${name} is not base64`);
  const b = Buffer.from(v, 'base64');
  if (b.length < 1 || b.length > maxBytes) {
    throw validation(name, `Member must have length between 1 and ${maxBytes}`);
  }
  return b;
}

function optContext(input: Json, name: string): Record<string, string> {
  const v = input[name];
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw validation(name, 'Member must be a map');
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v as Json)) {
    if (typeof val !== 'string') throw validation(name, 'Map values must be strings');
    out[k] = val;
  }
  return out;
}

function checkEncryptionAlgorithm(input: Json, name: string): string {
  const alg = optString(input, name) ?? SYMMETRIC_DEFAULT;
  if (alg !== SYMMETRIC_DEFAULT) {
    throw new KmsWireError('InvalidKeyUsageException', `${alg} is not supported for this KMS key`);
  }
  return alg;
}

// ---------------------------------------------------------------------------------------------
// Key resolution (key id, key ARN, alias name, alias ARN)
// ---------------------------------------------------------------------------------------------

function keyArn(key: StoredKey): string {
  return `arn:aws:kms:${key.region}:${LOCAL_KMS_ACCOUNT_ID}:key/${key.keyId}`;
}

function aliasArn(a: StoredAlias): string {
  return `arn:aws:kms:${a.region}:${LOCAL_KMS_ACCOUNT_ID}:${a.aliasName}`;
}

const ARN_RE = /^arn:aws:kms:([a-z0-9-]+):(\d{12}):((?:key|alias)\/.+)$/;

/** KMS key-id resolution: key id | key ARN | alias/<name> | alias ARN, within one region. */
function resolveKey(store: KeyStore, region: string, keyIdInput: string): StoredKey {
  let ref = keyIdInput;
  if (ref.startsWith('arn:')) {
    const m = ARN_RE.exec(ref);
    if (m === null || m[1] !== region || m[2] !== LOCAL_KMS_ACCOUNT_ID) {
      throw new KmsWireError('NotFoundException', `Invalid arn ${keyIdInput}`);
    }
    ref = m[3] ?? '';
    if (ref.startsWith('key/')) ref = ref.slice('key/'.length);
  }
  if (ref.startsWith('alias/')) {
    const alias = store.aliases.find((a) => a.region === region && a.aliasName === ref);
    const key = alias === undefined ? undefined : store.keys.get(alias.targetKeyId);
    if (key === undefined) {
      throw new KmsWireError('NotFoundException', `Alias arn:aws:kms:${region}:${LOCAL_KMS_ACCOUNT_ID}:${ref} is not found.`);
    }
    return key;
  }
  const key = store.keys.get(ref);
  if (key === undefined || key.region !== region) {
    throw new KmsWireError('NotFoundException', `Key 'arn:aws:kms:${region}:${LOCAL_KMS_ACCOUNT_ID}:key/${ref}' does not exist`);
  }
  return key;
}

/** Cryptographic operations need an Enabled key. */
function requireUsable(key: StoredKey): void {
  if (key.state === 'Disabled') throw new KmsWireError('DisabledException', `${keyArn(key)} is disabled.`);
  if (key.state === 'PendingDeletion') {
    throw new KmsWireError('KMSInvalidStateException', `${keyArn(key)} is pending deletion.`);
  }
}

function requireSymmetric(key: StoredKey): Buffer {
  if (key.keySpec !== 'SYMMETRIC_DEFAULT' || key.symmetricKey === undefined) {
    throw new KmsWireError('InvalidKeyUsageException', `${keyArn(key)} key usage is ${key.keyUsage} which is not valid for this operation.`);
  }
  return Buffer.from(key.symmetricKey, 'base64');
}

function requireSigning(key: StoredKey): void {
  if (key.keyUsage !== 'SIGN_VERIFY' || key.privateKeyPkcs8 === undefined) {
    throw new KmsWireError('InvalidKeyUsageException', `${keyArn(key)} key usage is ${key.keyUsage} which is not valid for this operation.`);
  }
}

function keyMetadata(key: StoredKey): Json {
  const md: Json = {
    AWSAccountId: LOCAL_KMS_ACCOUNT_ID,
    KeyId: key.keyId,
    Arn: keyArn(key),
    CreationDate: key.creationDate,
    Enabled: key.state === 'Enabled',
    Description: key.description,
    KeyUsage: key.keyUsage,
    KeyState: key.state,
    Origin: 'AWS_KMS',
    KeyManager: 'CUSTOMER',
    CustomerMasterKeySpec: key.keySpec,
    KeySpec: key.keySpec,
    MultiRegion: false,
  };
  if (key.deletionDate !== undefined) md['DeletionDate'] = key.deletionDate;
  if (key.keySpec === 'SYMMETRIC_DEFAULT') md['EncryptionAlgorithms'] = [SYMMETRIC_DEFAULT];
  else md['SigningAlgorithms'] = [ED25519_SHA_512];
  return md;
}

/**
 * As KMS does when a key's waiting period ends: the key, its material and every alias that
 * names it are deleted (then any use of it is NotFoundException, and the alias name is free).
 * Run before every operation, so a deletion is complete by the first request after its date.
 */
async function completeDueDeletions(store: KeyStore, now: number): Promise<void> {
  const due = [...store.keys.values()].filter((k) => k.state === 'PendingDeletion' && k.deletionDate !== undefined && k.deletionDate <= now);
  if (due.length === 0) return;
  for (const k of due) {
    store.keys.delete(k.keyId);
    for (let i = store.aliases.length - 1; i >= 0; i--) if (store.aliases[i]!.targetKeyId === k.keyId) store.aliases.splice(i, 1);
  }
  await store.persist();
}

// ---------------------------------------------------------------------------------------------
// Ciphertext blob (format in the module comment)
// ---------------------------------------------------------------------------------------------

/** Canonical, unambiguous encoding of an encryption context (module comment). */
export function canonicalEncryptionContext(context: Record<string, string>): Buffer {
  const pairs = Object.entries(context).map(([k, v]) => [Buffer.from(k, 'utf8'), Buffer.from(v, 'utf8')] as const);
  pairs.sort((a, b) => Buffer.compare(a[0], b[0]));
  const parts: Buffer[] = [u32be(pairs.length)];
  for (const [k, v] of pairs) parts.push(u32be(k.length), k, u32be(v.length), v);
  return Buffer.concat(parts);
}

function u32be(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function blobHeader(keyId: string): Buffer {
  const id = Buffer.from(keyId, 'ascii');
  return Buffer.concat([Buffer.from([BLOB_VERSION, id.length]), id]);
}

function sealBlob(keyId: string, keyMaterial: Buffer, plaintext: Buffer, context: Record<string, string>): Buffer {
  const header = blobHeader(keyId);
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', keyMaterial, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.concat([header, canonicalEncryptionContext(context)]));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([header, iv, ct, cipher.getAuthTag()]);
}

interface ParsedBlob {
  readonly keyId: string;
  readonly header: Buffer;
  readonly iv: Buffer;
  readonly ciphertext: Buffer;
  readonly tag: Buffer;
}

function parseBlob(blob: Buffer): ParsedBlob {
  const invalid = new KmsWireError('InvalidCiphertextException', 'The ciphertext is invalid.');
  if (blob.length < 2 || blob[0] !== BLOB_VERSION) throw invalid;
  const idLen = blob[1] ?? 0;
  const headerLen = 2 + idLen;
  if (idLen === 0 || blob.length < headerLen + IV_BYTES + TAG_BYTES) throw invalid;
  return {
    keyId: blob.subarray(2, headerLen).toString('ascii'),
    header: blob.subarray(0, headerLen),
    iv: blob.subarray(headerLen, headerLen + IV_BYTES),
    ciphertext: blob.subarray(headerLen + IV_BYTES, blob.length - TAG_BYTES),
    tag: blob.subarray(blob.length - TAG_BYTES),
  };
}

/** Decrypt's key checks, in AWS order: explicit KeyId must resolve and match the blob's key. */
function openBlob(
  store: KeyStore,
  region: string,
  blob: Buffer,
  context: Record<string, string>,
  keyIdInput: string | undefined,
): { key: StoredKey; plaintext: Buffer } {
  const parsed = parseBlob(blob);
  const requested = keyIdInput === undefined ? undefined : resolveKey(store, region, keyIdInput);
  const key = store.keys.get(parsed.keyId);
  if (requested !== undefined && requested.keyId !== parsed.keyId) {
    throw new KmsWireError('IncorrectKeyException', 'The key ID in the request does not identify a KMS key that can perform this operation.');
  }
  if (key === undefined || key.region !== region) {
    throw new KmsWireError('InvalidCiphertextException', 'The ciphertext is invalid.');
  }
  requireUsable(key);
  const material = requireSymmetric(key);
  try {
    const decipher = createDecipheriv('aes-256-gcm', material, parsed.iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.concat([parsed.header, canonicalEncryptionContext(context)]));
    decipher.setAuthTag(parsed.tag);
    return { key, plaintext: Buffer.concat([decipher.update(parsed.ciphertext), decipher.final()]) };
  } catch {
    throw new KmsWireError('InvalidCiphertextException', 'The ciphertext is invalid.');
  } finally {
    material.fill(0);
  }
}

function encryptUnder(key: StoredKey, plaintext: Buffer, context: Record<string, string>): Buffer {
  requireUsable(key);
  const material = requireSymmetric(key);
  try {
    return sealBlob(key.keyId, material, plaintext, context);
  } finally {
    material.fill(0);
  }
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

const b64 = (b: Buffer): string => b.toString('base64');

function dataKeyLength(input: Json): number {
  const spec = optString(input, 'KeySpec');
  const n = optInt(input, 'NumberOfBytes');
  if ((spec === undefined) === (n === undefined)) {
    throw new KmsWireError('ValidationException', 'Specify exactly one of KeySpec or NumberOfBytes');
  }
  if (n !== undefined) {
    if (n < 1 || n > MAX_RANDOM_BYTES) throw validation('numberOfBytes', `Member must be between 1 and ${MAX_RANDOM_BYTES}`);
    return n;
  }
  if (spec === 'AES_256') return 32;
  if (spec === 'AES_128') return 16;
  throw validation('keySpec', "Member must satisfy enum value set: [AES_256, AES_128]");
}

function checkSigningRequest(input: Json): { message: Buffer; algorithm: string } {
  const algorithm = reqString(input, 'SigningAlgorithm');
  const messageType = optString(input, 'MessageType') ?? 'RAW';
  const message = reqBlob(input, 'Message', MAX_MESSAGE_BYTES);
  if (algorithm === ED25519_PH_SHA_512) {
    throw new KmsWireError('UnsupportedOperationException', 'ED25519_PH_SHA_512 is not implemented by the local dev KMS endpoint');
  }
  if (algorithm !== ED25519_SHA_512) {
    throw new KmsWireError('InvalidKeyUsageException', `${algorithm} is not valid for this KMS key`);
  }
  if (messageType !== 'RAW') {
    throw new KmsWireError('ValidationException', 'ED25519_SHA_512 requires MessageType RAW');
  }
  return { message, algorithm };
}

function buildOperations(store: KeyStore, nowSeconds: () => number): Map<string, Operation> {
  const ops = new Map<string, Operation>();

  ops.set('CreateKey', async (input, { region }) => {
    const keySpec = optString(input, 'KeySpec') ?? optString(input, 'CustomerMasterKeySpec') ?? 'SYMMETRIC_DEFAULT';
    const keyUsage = optString(input, 'KeyUsage') ?? 'ENCRYPT_DECRYPT';
    const origin = optString(input, 'Origin') ?? 'AWS_KMS';
    const description = optString(input, 'Description') ?? '';
    if (description.length > MAX_DESCRIPTION_CHARS) throw validation('description', 'Member must have length <= 8192');
    if (origin !== 'AWS_KMS' || input['MultiRegion'] === true || input['CustomKeyStoreId'] !== undefined) {
      throw new KmsWireError('UnsupportedOperationException', 'only single-region AWS_KMS keys are supported by the local dev KMS endpoint');
    }
    const pair = `${keySpec}/${keyUsage}`;
    let key: StoredKey;
    const base = { keyId: randomUUID(), region, creationDate: nowSeconds(), description, state: 'Enabled' as const };
    if (pair === 'SYMMETRIC_DEFAULT/ENCRYPT_DECRYPT') {
      key = { ...base, keySpec: keySpec as KeySpec, keyUsage: keyUsage as KeyUsage, symmetricKey: b64(randomBytes(SYMMETRIC_KEY_BYTES)) };
    } else if (pair === 'ECC_NIST_EDWARDS25519/SIGN_VERIFY') {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      key = {
        ...base,
        keySpec: keySpec as KeySpec,
        keyUsage: keyUsage as KeyUsage,
        privateKeyPkcs8: b64(privateKey.export({ format: 'der', type: 'pkcs8' })),
        publicKeySpki: b64(publicKey.export({ format: 'der', type: 'spki' })),
      };
    } else if (keySpec === 'SYMMETRIC_DEFAULT' || keySpec === 'ECC_NIST_EDWARDS25519') {
      throw new KmsWireError('ValidationException', `KeyUsage ${keyUsage} is not compatible with KeySpec ${keySpec}`);
    } else {
      throw new KmsWireError('UnsupportedOperationException', `KeySpec ${keySpec} is not implemented by the local dev KMS endpoint`);
    }
    store.keys.set(key.keyId, key);
    await store.persist();
    return { KeyMetadata: keyMetadata(key) };
  });

  ops.set('DescribeKey', (input, { region }) => ({
    KeyMetadata: keyMetadata(resolveKey(store, region, reqString(input, 'KeyId'))),
  }));

  ops.set('CreateAlias', async (input, { region }) => {
    const aliasName = reqString(input, 'AliasName');
    const target = reqString(input, 'TargetKeyId');
    if (aliasName.length > MAX_ALIAS_CHARS || !/^alias\/[a-zA-Z0-9/_-]+$/.test(aliasName)) {
      throw validation('aliasName', "Member must satisfy regular expression pattern: ^alias/[a-zA-Z0-9/_-]+$");
    }
    if (aliasName.startsWith('alias/aws/')) {
      throw new KmsWireError('NotAuthorizedException', 'alias/aws/ is reserved for AWS managed keys');
    }
    if (target.startsWith('alias/') || /:alias\//.test(target)) {
      throw new KmsWireError('ValidationException', 'TargetKeyId must be a key ID or key ARN');
    }
    const key = resolveKey(store, region, target);
    if (key.state === 'PendingDeletion') throw new KmsWireError('KMSInvalidStateException', `${keyArn(key)} is pending deletion.`);
    if (store.aliases.some((a) => a.region === region && a.aliasName === aliasName)) {
      throw new KmsWireError('AlreadyExistsException', `An alias with the name arn:aws:kms:${region}:${LOCAL_KMS_ACCOUNT_ID}:${aliasName} already exists`);
    }
    const now = nowSeconds();
    store.aliases.push({ region, aliasName, targetKeyId: key.keyId, creationDate: now, lastUpdatedDate: now });
    await store.persist();
    return {};
  });

  ops.set('ListAliases', (input, { region }) => {
    const keyIdInput = optString(input, 'KeyId');
    const only = keyIdInput === undefined ? undefined : resolveKey(store, region, keyIdInput).keyId;
    const aliases = store.aliases
      .filter((a) => a.region === region && (only === undefined || a.targetKeyId === only))
      .map((a) => ({
        AliasName: a.aliasName,
        AliasArn: aliasArn(a),
        TargetKeyId: a.targetKeyId,
        CreationDate: a.creationDate,
        LastUpdatedDate: a.lastUpdatedDate,
      }));
    return { Aliases: aliases, Truncated: false };
  });

  ops.set('DisableKey', async (input, { region }) => {
    const key = resolveKey(store, region, reqString(input, 'KeyId'));
    if (key.state === 'PendingDeletion') throw new KmsWireError('KMSInvalidStateException', `${keyArn(key)} is pending deletion.`);
    key.state = 'Disabled';
    await store.persist();
    return {};
  });

  ops.set('EnableKey', async (input, { region }) => {
    const key = resolveKey(store, region, reqString(input, 'KeyId'));
    if (key.state === 'PendingDeletion') throw new KmsWireError('KMSInvalidStateException', `${keyArn(key)} is pending deletion.`);
    key.state = 'Enabled';
    await store.persist();
    return {};
  });

  ops.set('ScheduleKeyDeletion', async (input, { region }) => {
    const key = resolveKey(store, region, reqString(input, 'KeyId'));
    const days = optInt(input, 'PendingWindowInDays') ?? DEFAULT_PENDING_WINDOW_DAYS;
    if (days < 7 || days > 30) throw validation('pendingWindowInDays', 'Member must be between 7 and 30');
    if (key.state === 'PendingDeletion') throw new KmsWireError('KMSInvalidStateException', `${keyArn(key)} is pending deletion.`);
    key.state = 'PendingDeletion';
    key.deletionDate = nowSeconds() + days * 86_400;
    await store.persist();
    return { KeyId: keyArn(key), DeletionDate: key.deletionDate, KeyState: key.state, PendingWindowInDays: days };
  });

  ops.set('CancelKeyDeletion', async (input, { region }) => {
    const key = resolveKey(store, region, reqString(input, 'KeyId'));
    if (key.state !== 'PendingDeletion') throw new KmsWireError('KMSInvalidStateException', `${keyArn(key)} is not pending deletion.`);
    key.state = 'Disabled';
    delete key.deletionDate;
    await store.persist();
    return { KeyId: keyArn(key) };
  });

  ops.set('GenerateRandom', (input) => {
    const n = optInt(input, 'NumberOfBytes');
    if (n === undefined || n < 1 || n > MAX_RANDOM_BYTES) throw validation('numberOfBytes', `Member must be between 1 and ${MAX_RANDOM_BYTES}`);
    return { Plaintext: b64(randomBytes(n)) };
  });

  const generateDataKey = (withPlaintext: boolean): Operation => (input, { region }) => {
    const key = resolveKey(store, region, reqString(input, 'KeyId'));
    const length = dataKeyLength(input);
    const context = optContext(input, 'EncryptionContext');
    const plaintext = randomBytes(length);
    try {
      const blob = encryptUnder(key, plaintext, context);
      return withPlaintext
        ? { CiphertextBlob: b64(blob), Plaintext: b64(plaintext), KeyId: keyArn(key) }
        : { CiphertextBlob: b64(blob), KeyId: keyArn(key) };
    } finally {
      plaintext.fill(0);
    }
  };
  ops.set('GenerateDataKey', generateDataKey(true));
  ops.set('GenerateDataKeyWithoutPlaintext', generateDataKey(false));

  ops.set('Encrypt', (input, { region }) => {
    const key = resolveKey(store, region, reqString(input, 'KeyId'));
    const plaintext = reqBlob(input, 'Plaintext', MAX_PLAINTEXT_BYTES);
    const context = optContext(input, 'EncryptionContext');
    const alg = checkEncryptionAlgorithm(input, 'EncryptionAlgorithm');
    try {
      return { CiphertextBlob: b64(encryptUnder(key, plaintext, context)), KeyId: keyArn(key), EncryptionAlgorithm: alg };
    } finally {
      plaintext.fill(0);
    }
  });

  ops.set('Decrypt', (input, { region }) => {
    const blob = reqBlob(input, 'CiphertextBlob', MAX_CIPHERTEXT_BYTES);
    const context = optContext(input, 'EncryptionContext');
    const alg = checkEncryptionAlgorithm(input, 'EncryptionAlgorithm');
    const { key, plaintext } = openBlob(store, region, blob, context, optString(input, 'KeyId'));
    try {
      return { KeyId: keyArn(key), Plaintext: b64(plaintext), EncryptionAlgorithm: alg };
    } finally {
      plaintext.fill(0);
    }
  });

  ops.set('ReEncrypt', (input, { region }) => {
    const blob = reqBlob(input, 'CiphertextBlob', MAX_CIPHERTEXT_BYTES);
    const sourceContext = optContext(input, 'SourceEncryptionContext');
    const destContext = optContext(input, 'DestinationEncryptionContext');
    const sourceAlg = checkEncryptionAlgorithm(input, 'SourceEncryptionAlgorithm');
    const destAlg = checkEncryptionAlgorithm(input, 'DestinationEncryptionAlgorithm');
    const dest = resolveKey(store, region, reqString(input, 'DestinationKeyId'));
    const { key: source, plaintext } = openBlob(store, region, blob, sourceContext, optString(input, 'SourceKeyId'));
    try {
      return {
        CiphertextBlob: b64(encryptUnder(dest, plaintext, destContext)),
        SourceKeyId: keyArn(source),
        KeyId: keyArn(dest),
        SourceEncryptionAlgorithm: sourceAlg,
        DestinationEncryptionAlgorithm: destAlg,
      };
    } finally {
      plaintext.fill(0);
    }
  });

  ops.set('Sign', (input, { region }) => {
    const key = resolveKey(store, region, reqString(input, 'KeyId'));
    requireUsable(key);
    requireSigning(key);
    const { message, algorithm } = checkSigningRequest(input);
    const privateKey = createPrivateKey({ key: Buffer.from(key.privateKeyPkcs8 ?? '', 'base64'), format: 'der', type: 'pkcs8' });
    // RFC 8032 §5.1.6: pure Ed25519 over the raw message (node:crypto with algorithm null).
    return { KeyId: keyArn(key), Signature: b64(edSign(null, message, privateKey)), SigningAlgorithm: algorithm };
  });

  ops.set('Verify', (input, { region }) => {
    const key = resolveKey(store, region, reqString(input, 'KeyId'));
    requireUsable(key);
    requireSigning(key);
    const { message, algorithm } = checkSigningRequest(input);
    const signature = reqBlob(input, 'Signature', MAX_MESSAGE_BYTES);
    const publicKey = createPublicKey({ key: Buffer.from(key.publicKeySpki ?? '', 'base64'), format: 'der', type: 'spki' });
    // RFC 8032 §5.1.7; KMS reports an invalid signature as KMSInvalidSignatureException.
    if (!edVerify(null, message, publicKey, signature)) {
      throw new KmsWireError('KMSInvalidSignatureException', 'The signature is not valid.');
    }
    return { KeyId: keyArn(key), SignatureValid: true, SigningAlgorithm: algorithm };
  });

  ops.set('GetPublicKey', (input, { region }) => {
    const key = resolveKey(store, region, reqString(input, 'KeyId'));
    requireUsable(key);
    if (key.publicKeySpki === undefined) {
      throw new KmsWireError('UnsupportedOperationException', `${keyArn(key)} is a symmetric key and has no public key.`);
    }
    return {
      KeyId: keyArn(key),
      PublicKey: key.publicKeySpki,
      CustomerMasterKeySpec: key.keySpec,
      KeySpec: key.keySpec,
      KeyUsage: key.keyUsage,
      SigningAlgorithms: [ED25519_SHA_512],
    };
  });

  return ops;
}
