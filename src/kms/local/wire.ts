/**
 * Local dev KMS endpoint — the AWS JSON 1.1 wire protocol (DEV-ONLY).
 *
 * The endpoint speaks the AWS JSON 1.1 protocol exactly as the SDK expects it:
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
 *
 * Contract: this module owns every byte on the wire (status, headers, error bodies, input
 * validation messages). It MUST NOT know a key or an operation's meaning: operations are looked
 * up by name in the map the caller passes (./operations/index.ts).
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Region used when a request's SigV4 credential scope cannot be read. */
const FALLBACK_REGION = 'us-east-1';
const MAX_REQUEST_BYTES = 1024 * 1024;
const JSON_11 = 'application/x-amz-json-1.1';
const TARGET_PREFIX = 'TrentService.';

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
export class KmsWireError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

export type Json = Record<string, unknown>;
interface RequestContext {
  readonly region: string;
}
export type Operation = (input: Json, ctx: RequestContext) => Promise<Json> | Json;

/** The operation an `X-Amz-Target: TrentService.<Op>` header names ('?' for anything else). */
export function operationNameOf(target: string | string[] | undefined): string {
  return typeof target === 'string' && target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : '?';
}

export async function handleRequest(
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

export function validation(member: string, constraint: string): KmsWireError {
  return new KmsWireError('ValidationException', `1 validation error detected: Value at '${member}' failed to satisfy constraint: ${constraint}`);
}

export function optString(input: Json, name: string): string | undefined {
  const v = input[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw validation(name, 'Member must be a string');
  return v;
}

export function reqString(input: Json, name: string): string {
  const v = optString(input, name);
  if (v === undefined || v.length === 0) throw validation(name, 'Member must not be null or empty');
  return v;
}

export function optInt(input: Json, name: string): number | undefined {
  const v = input[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw validation(name, 'Member must be an integer');
  return v;
}

export function reqBlob(input: Json, name: string, maxBytes: number): Buffer {
  const v = input[name];
  if (typeof v !== 'string' || v.length === 0) throw validation(name, 'Member must not be null or empty');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(v)) throw new KmsWireError('SerializationException', `${name} is not base64`);
  const b = Buffer.from(v, 'base64');
  if (b.length < 1 || b.length > maxBytes) {
    throw validation(name, `Member must have length between 1 and ${maxBytes}`);
  }
  return b;
}

export function optContext(input: Json, name: string): Record<string, string> {
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
