/**
 * zod schemas of what the routes answer, and of their path and query parameters, for the
 * OpenAPI document (`openapi.ts`) and for the tests that check real answers against them.
 * Request bodies are NOT defined here: the routes document the very schemas the services
 * validate with (`validation/transaction.ts`, `services/release.ts`, `services/admin.ts`).
 */
import { z } from 'zod';
import { paymentMethodSchema, transactionRequestSchema } from '../validation/transaction.js';
import { PROCESSOR_STATUSES } from '../auth/processors.js';
import { RELEASE_PURPOSES } from '../services/release.js';

const base64 = (what: string) => z.base64().describe(what);
const logIndex = z.int().min(0).describe('0-based index of an entry in the Merkle log');
const isoTime = z.iso.datetime().describe('RFC 3339 UTC time');

/** Query parameter holding a non-negative decimal integer (see `parseIndexParam`). */
const indexParam = (description: string) => z.int().min(0).max(Number.MAX_SAFE_INTEGER).describe(description);

export const transactionIdParams = z.object({
  transactionId: transactionRequestSchema.shape.transactionId.describe('the transactionId given at submission'),
});
export const processorNameParams = z.object({
  name: transactionRequestSchema.shape.processor.describe('processor name, e.g. acme'),
});

export const maskedPaymentMethodSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('card'),
    brand: z.string().describe('card brand id (visa, mastercard, american-express, …) or unknown; derived from the BIN, which is never served'),
    last4: z.string().regex(/^\d{4}$/),
    expiryMonth: z.int().min(1).max(12),
    expiryYear: z.int(),
  }),
  z.object({
    type: z.literal('us_bank_account'),
    routingNumber: z.string().regex(/^\d{9}$/),
    last4: z.string().regex(/^\d{0,4}$/),
    accountType: z.enum(['checking', 'savings']),
  }),
  z.object({
    type: z.literal('iban'),
    country: z.string().regex(/^[A-Z]{2}$/),
    last4: z.string(),
    bic: z.string().optional(),
  }),
]).describe(
  'The payment method masked, the same for every principal: a card is brand, last four and expiry (no BIN); never the full card or account number, never the holder name',
);

export const receiptSchema = z.object({
  transactionId: z.string(),
  logIndex,
  leafHash: base64('RFC 9162 leaf hash (SHA-256 of 0x00 || leaf), base64'),
  paymentMethod: maskedPaymentMethodSchema,
  createdAt: isoTime,
});

export const transactionViewSchema = receiptSchema.extend({
  processor: z.string(),
  amount: z.object({ value: z.int().positive(), currency: z.string() }),
  fingerprint: z
    .string()
    .optional()
    .describe('served to the assigned processor only (never to checkout): keyed fingerprint `fp2_…` of the payment method, the same for the same card among this processor\'s transactions; absent for records stored before it existed'),
  metadata: z.record(z.string(), z.string()).nullable(),
  leaf: base64('the transaction\'s log leaf bytes: every value above is decoded from it')
    .optional()
    .describe('the transaction\'s log leaf bytes (base64): every value above is decoded from it; not served to checkout for leafFormat 2 (those leaves hold the BIN)'),
  clientSideEncryption: z.object({ kid: z.string() }).optional().describe('present when the browser encrypted the payment method (JWE key id)'),
  leafFormat: z.int().optional().describe('leaf format of `leaf`'),
  proof: z
    .object({
      treeSize: z.int().min(1),
      hashes: z.array(base64('hash')).describe('RFC 9162 audit path'),
      checkpoint: z.string().describe('signed checkpoint note covering treeSize'),
    })
    .optional()
    .describe('present once a signed checkpoint covers the entry'),
});

export const releaseResultSchema = z.object({
  transactionId: z.string(),
  processor: z.string(),
  amount: z.object({ value: z.int().positive(), currency: z.string() }),
  paymentMethod: paymentMethodSchema.describe('The plaintext payment method, exactly as submitted (IBAN in electronic format)'),
  accessLogIndex: logIndex.describe('the log entry that records this release, committed before this answer'),
});

export const accessesQuery = z.object({
  after: indexParam('cursor: the `next` of the previous page').optional(),
  limit: indexParam('page size, 1..1000 (default 1000)').optional(),
});

const accessViewSchema = z.object({
  logIndex,
  transactionId: z.string(),
  action: z.string(),
  principal: z.object({ role: z.string(), name: z.string(), certificateFingerprint: z.string() }),
  purpose: z.enum(RELEASE_PURPOSES).nullable(),
  reference: z.string().nullable(),
  outcome: z.enum(['granted', 'denied']),
  reason: z.string().nullable().describe('for a denied attempt: the error code it was refused with'),
  sourceAddress: z.string(),
  time: isoTime,
});

export const accessesSchema = z.object({
  accesses: z.array(accessViewSchema),
  next: logIndex.optional().describe('present when there are more: pass it as ?after='),
});

const processorSchema = z.object({ name: z.string(), status: z.enum(PROCESSOR_STATUSES), principalUri: z.string() });
export const processorsSchema = z.object({ processors: z.array(processorSchema) });
export const processorUpdateResultSchema = z.object({ name: z.string(), status: z.enum(PROCESSOR_STATUSES) });
export const revocationResultSchema = z.object({
  revoked: z.object({ fingerprint: z.string().optional(), serial: z.string().optional() }),
});

export const checkpointQuery = z.object({ size: indexParam('an earlier tree size; default the latest checkpoint').optional() });
export const checkpointSchema = z.string().describe('C2SP tlog-checkpoint signed note (text/plain)');

const publishedKey = z.object({
  vkey: z.string().describe('signed-note verifier key: <name>+<key id hex>+<base64 0x01||Ed25519 key>'),
  keyId: z.string(),
  pem: z.string().describe('the same Ed25519 public key as PEM SubjectPublicKeyInfo'),
});
export const logKeySchema = z.object({
  origin: z.string(),
  keys: z.array(publishedKey),
  vkey: z.string().optional().describe('the first key (compatibility)'),
  pem: z.string().optional(),
});

export const entriesQuery = z.object({
  start: indexParam('first index'),
  end: indexParam('one past the last index; at most 1000 entries are returned per page'),
});
export const entriesSchema = z.object({
  start: logIndex,
  end: z.int().min(0),
  treeSize: z.int().min(0),
  entries: z.array(
    z.object({
      index: logIndex,
      leaf: base64('the leaf bytes (format 1: canonical JSON; 2 and 3: deterministic CBOR); never card data'),
      ciphertextSha256: base64('digest of the stored envelope, to compare with the commitment in the leaf').optional(),
    }),
  ),
});

export const inclusionQuery = z.object({
  index: indexParam('the entry; or give transactionId').optional(),
  transactionId: transactionRequestSchema.shape.transactionId.optional().describe('the transaction entry of this transaction (instead of index)'),
  treeSize: indexParam('tree size of the proof; default the latest checkpoint').optional(),
});
export const inclusionSchema = z.object({
  index: logIndex,
  treeSize: z.int().min(1),
  hashes: z.array(base64('hash')).describe('RFC 9162 §2.1.3.1 audit path, leaf to root'),
  leaf: base64('the leaf bytes'),
});

export const consistencyQuery = z.object({ from: indexParam('smaller tree size'), to: indexParam('larger tree size') });
export const consistencySchema = z.object({ from: z.int().min(0), to: z.int().min(0), hashes: z.array(base64('hash')) });

export const healthSchema = z.object({ status: z.literal('ok') });
export const readinessSchema = z.object({
  status: z.enum(['ready', 'not ready']),
  checks: z.record(z.string(), z.boolean()),
  /**
   * Reported, not required: with witnesses configured, how far witnessing lags; with
   * PAYLOG_WORKERS > 1, `workers {listening, configured}`. Required: while the checkpoint signer
   * refuses to sign the stored tree, `signing {refused, reason, signedSize, headSize, message,
   * since}` and the answer is 503 (SECURITY.md "Never a signed fork").
   */
  details: z.record(z.string(), z.unknown()).optional(),
});
export const textSchema = z.string();

/** Key lifecycle (admin). The status and retention report are documented as open objects. */
export const keyStatusSchema = z.record(z.string(), z.unknown()).describe('epochs, keyPeriods, v1DataKeys, retention, cachedEpochPrivateKeys, kmsRequests');
export const keyRotateResultSchema = z.object({ epochs: z.array(z.string()) });
export const rewrapResultSchema = z.object({
  rewrapped: z.int().min(0),
  kind: z.enum(['epoch', 'v1']).nullable(),
  remaining: z.int().min(0),
  done: z.boolean(),
  run: z.string().describe('the rewrap run: send it back with `after` for the next batch, or alone to resume a killed run'),
  periodKeys: z.literal('new').optional(),
  to: z.string().nullable().describe('envelope-v1 target key (ARN), or null'),
  after: z.string().nullable().describe('cursor of this pass, for the next batch'),
  skipped: z
    .object({ count: z.int().min(0), epochIds: z.array(z.string()), transactionIds: z.array(z.string()) })
    .describe('rows left as they were because they cannot be rewrapped (e.g. a garbage wrapped key, or a KMS context that does not match); each is also an error log line'),
});
export const retentionReportSchema = z.record(z.string(), z.unknown()).describe('policy, asOf, cutoff, dryRun, periods, epochs, v1Records, logIndex, cseKeys (client-side encryption keys destroyed: kid, periodStart, periodEnd, kmsKeyId, scheduledDeletion)');
export const shredResultSchema = z.object({ transactionId: z.string(), shredded: z.literal(true), logIndex: z.int().min(0) });
