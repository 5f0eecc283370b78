/**
 * Realistic examples for the OpenAPI document: one story told through every route. Checkout
 * submits order `ord-2026-004817` for processor `acme` (a Visa test card), it is entry 1042 of
 * the log; acme releases it (entry 1057), checkout forwards it to acme's `payments` destination
 * (entries 1061, 1062); an auditor reads entries and proofs; an admin manages processors and keys.
 *
 * Contract: examples only. Card and account numbers are public test numbers and appear in
 * request examples and in the release answer (the plaintext by contract) only; every other
 * answer shows them masked. Each example validates against its own schema, and the request
 * examples pass the services' own validation (test/openapi-examples.test.ts). The leaves are
 * real leaf-format-v3 encodings (of envelopes with deterministic bytes), their leaf hashes real
 * RFC 9162 hashes; other hashes, keys and signatures are deterministic bytes of the right length.
 */
import { createHash } from 'node:crypto';
import { encodeLeaf, transactionLeaf } from '../log/leaf.js';
import type { Examples } from './route-spec.js';
import { PUBLIC_TEST_PAN } from '../validation/test-card.js';

/** `length` deterministic bytes derived from `label`, as base64 (or base64url). */
export function exampleBytes(label: string, length = 32, encoding: 'base64' | 'base64url' = 'base64'): string {
  const parts: Buffer[] = [];
  for (let i = 0, n = 0; n < length; i++, n += 32) parts.push(createHash('sha256').update(`${label}/${i}`).digest());
  return Buffer.concat(parts).subarray(0, length).toString(encoding);
}
const hex = (label: string, length = 32): string => Buffer.from(exampleBytes(label, length), 'base64').toString('hex');

export const EXAMPLE = {
  transactionId: 'ord-2026-004817',
  processor: 'acme',
  origin: 'paylog.example.com/log',
  /** A card that is valid for a few more years whenever the document is generated. */
  expiryYear: new Date().getUTCFullYear() + 3,
  logIndex: 1042,
  treeSize: 1043,
  createdAt: '2026-12-07T09:41:27.512Z',
  checkoutFingerprint: `sha256:${hex('checkout certificate')}`,
  processorFingerprint: `sha256:${hex('acme certificate')}`,
  auditorFingerprint: `sha256:${hex('auditor certificate')}`,
  adminFingerprint: `sha256:${hex('admin certificate')}`,
  kid: 'paylog-cse-2026-12',
  kmsKeyArn: 'arn:aws:kms:eu-west-1:111122223333:key/1f4b2c9e-7d3a-4e8b-9c61-2a5d8f0e3b47',
  hashes: (label: string, n: number): string[] => Array.from({ length: n }, (_, i) => exampleBytes(`${label} ${i}`)),
} as const;

/** A C2SP signed note as paylog serves it: origin, size, root hash, one Ed25519 signature line. */
export function exampleCheckpoint(size: number, cosigners: readonly string[] = []): string {
  const sig = (name: string, n: number) => `\u2014 ${name} ${exampleBytes(`${name} signature ${size}`, n)}\n`;
  return `${EXAMPLE.origin}\n${size}\n${exampleBytes(`root ${size}`)}\n\n${sig(EXAMPLE.origin, 68)}${cosigners.map((w) => sig(w, 76)).join('')}`;
}

const card = { type: 'card', pan: PUBLIC_TEST_PAN, expiryMonth: 9, expiryYear: EXAMPLE.expiryYear, holderName: 'Jane Q Customer' };
const usBank = { type: 'us_bank_account', accountNumber: '000123456789', routingNumber: '021000021', accountType: 'checking', holderName: 'Jane Q Customer' };
const iban = { type: 'iban', iban: 'DE89370400440532013000', bic: 'COBADEFFXXX', holderName: 'Max Mustermann' };

/** What the browser's JWE protected header holds (src/cse/jwe.ts), base64url-encoded. */
const jweHeader = Buffer.from(
  JSON.stringify({
    alg: 'ECDH-ES',
    enc: 'A256GCM',
    kid: EXAMPLE.kid,
    epk: { kty: 'EC', crv: 'P-256', x: exampleBytes('epk x', 32, 'base64url'), y: exampleBytes('epk y', 32, 'base64url') },
    transactionId: 'ord-2026-004820',
    processor: EXAMPLE.processor,
    iat: 1796629287,
  }),
).toString('base64url');
const jwe = `${jweHeader}..${exampleBytes('iv', 12, 'base64url')}.${exampleBytes('ciphertext', 131, 'base64url')}.${exampleBytes('tag', 16, 'base64url')}`;

export const TRANSACTION_REQUEST_EXAMPLES: Examples = {
  card: {
    summary: 'Card (Visa test number) with its security code, held until the first authorization',
    value: {
      transactionId: EXAMPLE.transactionId,
      processor: EXAMPLE.processor,
      amount: { value: 2599, currency: 'USD' },
      paymentMethod: { ...card, cvc: '737' },
      metadata: { invoice: 'INV-2026-0042', channel: 'web' },
    },
  },
  usBankAccount: {
    summary: 'US bank account (ACH debit)',
    value: { transactionId: 'ord-2026-004818', processor: EXAMPLE.processor, amount: { value: 125000, currency: 'USD' }, paymentMethod: usBank },
  },
  iban: {
    summary: 'IBAN (SEPA direct debit)',
    value: {
      transactionId: 'ord-2026-004819',
      processor: EXAMPLE.processor,
      amount: { value: 14900, currency: 'EUR' },
      paymentMethod: iban,
      metadata: { mandate: 'MNDT-2026-1187' },
    },
  },
  encrypted: {
    summary: 'Card encrypted in the browser (JWE to a key of GET /v1/cse/jwks.json)',
    value: { transactionId: 'ord-2026-004820', processor: EXAMPLE.processor, amount: { value: 4200, currency: 'GBP' }, paymentMethod: { type: 'encrypted', jwe } },
  },
};

const maskedCard = { type: 'card', brand: 'visa', last4: '1111', expiryMonth: 9, expiryYear: EXAMPLE.expiryYear } as const;
const maskedUsBank = { type: 'us_bank_account', routingNumber: '021000021', last4: '6789', accountType: 'checking' } as const;
const maskedIban = { type: 'iban', country: 'DE', last4: '3000', bic: 'COBADEFFXXX' } as const;

/** The leaf-format-v3 transaction leaf paylog would write for this submission (envelope v2, an epoch key). */
function exampleLeaf(transactionId: string, amount: { value: number; currency: string }, paymentMethod: typeof maskedCard | typeof maskedUsBank | typeof maskedIban, metadata: Record<string, string> | null): Buffer {
  const bytes = (label: string, n: number) => Buffer.from(exampleBytes(`${transactionId} ${label}`, n), 'base64');
  return encodeLeaf(
    transactionLeaf({
      time: new Date(EXAMPLE.createdAt),
      transactionId,
      processor: EXAMPLE.processor,
      amount,
      paymentMethod,
      metadata,
      envelope: {
        version: 2,
        key: { epochId: 'acme/2026-12' },
        salt: bytes('salt', 32),
        iv: bytes('iv', 12),
        ciphertext: bytes('ciphertext', 96),
        tag: bytes('tag', 16),
        keyCommitment: bytes('commitment', 32),
        wrappedKeySha256: bytes('wrapped key', 32),
        epochPublicKeySha256: Buffer.from(exampleBytes('epoch public key acme/2026-12'), 'base64'),
      },
    }),
  );
}

/** Entries 1042-1044 of the story: the card, US bank account and IBAN submissions. */
export const EXAMPLE_LEAVES: Readonly<Record<number, Buffer>> = {
  1042: exampleLeaf(EXAMPLE.transactionId, { value: 2599, currency: 'USD' }, maskedCard, { invoice: 'INV-2026-0042', channel: 'web' }),
  1043: exampleLeaf('ord-2026-004818', { value: 125000, currency: 'USD' }, maskedUsBank, null),
  1044: exampleLeaf('ord-2026-004819', { value: 14900, currency: 'EUR' }, maskedIban, { mandate: 'MNDT-2026-1187' }),
};
/** RFC 9162 leaf hash: SHA-256(0x00 || leaf), base64. */
const leafHash = (index: number) => createHash('sha256').update(Buffer.from([0])).update(EXAMPLE_LEAVES[index]!).digest('base64');

const receipt = (transactionId: string, logIndex: number, paymentMethod: unknown) => ({
  transactionId,
  logIndex,
  leafHash: leafHash(logIndex),
  paymentMethod,
  createdAt: EXAMPLE.createdAt,
});

export const RECEIPT_EXAMPLES: Examples = {
  card: { summary: 'Card: brand, last four and expiry only', value: receipt(EXAMPLE.transactionId, EXAMPLE.logIndex, maskedCard) },
  usBankAccount: {
    summary: 'US bank account: routing number, last four, account type',
    value: receipt('ord-2026-004818', 1043, maskedUsBank),
  },
  iban: { summary: 'IBAN: country, last four, BIC', value: receipt('ord-2026-004819', 1044, maskedIban) },
};

export const TRANSACTION_VIEW_EXAMPLES: Examples = {
  processor: {
    summary: 'As the assigned processor sees it (with its fingerprint of the card)',
    value: {
      ...receipt(EXAMPLE.transactionId, EXAMPLE.logIndex, maskedCard),
      processor: EXAMPLE.processor,
      amount: { value: 2599, currency: 'USD' },
      fingerprint: `fp2_${exampleBytes('fingerprint', 16, 'base64url')}`,
      metadata: { invoice: 'INV-2026-0042', channel: 'web' },
      leaf: EXAMPLE_LEAVES[1042]!.toString('base64'),
      leafFormat: 3,
      proof: { treeSize: 1043, hashes: EXAMPLE.hashes('audit path 1042', 11), checkpoint: exampleCheckpoint(1043) },
    },
  },
  checkout: {
    summary: 'As checkout sees it, before a checkpoint covers the entry',
    value: {
      ...receipt('ord-2026-004819', 1044, maskedIban),
      processor: EXAMPLE.processor,
      amount: { value: 14900, currency: 'EUR' },
      metadata: { mandate: 'MNDT-2026-1187' },
      leaf: EXAMPLE_LEAVES[1044]!.toString('base64'),
      leafFormat: 3,
    },
  },
};

export const RELEASE_REQUEST_EXAMPLES: Examples = {
  authorize: { summary: 'Authorize (also takes the held card security code, once)', value: { purpose: 'authorize', reference: 'auth-2026-77812' } },
  refund: { summary: 'Refund', value: { purpose: 'refund', reference: 'RF-2026-0193' } },
};

export const RELEASE_RESULT_EXAMPLES: Examples = {
  card: {
    summary: 'The plaintext card (by contract the one answer with card data), with the held security code',
    value: {
      transactionId: EXAMPLE.transactionId,
      processor: EXAMPLE.processor,
      amount: { value: 2599, currency: 'USD' },
      paymentMethod: { ...card, cvc: '737' },
      accessLogIndex: 1057,
    },
  },
  iban: {
    summary: 'The plaintext IBAN (electronic format)',
    value: { transactionId: 'ord-2026-004819', processor: EXAMPLE.processor, amount: { value: 14900, currency: 'EUR' }, paymentMethod: iban, accessLogIndex: 1058 },
  },
};

const access = (logIndex: number, over: Record<string, unknown>) => ({
  logIndex,
  transactionId: EXAMPLE.transactionId,
  action: 'release',
  principal: { role: 'processor', name: EXAMPLE.processor, certificateFingerprint: EXAMPLE.processorFingerprint },
  purpose: 'authorize',
  reference: 'auth-2026-77812',
  outcome: 'granted',
  reason: null,
  sourceAddress: '10.20.4.17',
  time: '2026-12-07T09:41:29.030Z',
  ...over,
});

export const ACCESSES_EXAMPLES: Examples = {
  page: {
    summary: 'A granted release and a refused one (another processor), with the next page',
    value: {
      accesses: [
        access(1057, {}),
        access(1059, {
          principal: { role: 'processor', name: 'globex', certificateFingerprint: `sha256:${hex('globex certificate')}` },
          purpose: 'capture',
          reference: null,
          outcome: 'denied',
          reason: 'NOT_FOUND',
          sourceAddress: '10.20.9.3',
          time: '2026-12-07T09:44:02.118Z',
        }),
      ],
      next: 1059,
    },
  },
};

export const CSE_JWKS_EXAMPLES: Examples = {
  jwks: {
    summary: "This month's key and last month's (still accepted during the overlap)",
    value: {
      keys: [
        { kty: 'EC', crv: 'P-256', kid: EXAMPLE.kid, x: exampleBytes('cse x 12', 32, 'base64url'), y: exampleBytes('cse y 12', 32, 'base64url'), use: 'enc', alg: 'ECDH-ES' },
        { kty: 'EC', crv: 'P-256', kid: 'paylog-cse-2026-11', x: exampleBytes('cse x 11', 32, 'base64url'), y: exampleBytes('cse y 11', 32, 'base64url'), use: 'enc', alg: 'ECDH-ES' },
      ],
    },
  },
};

/** Examples of path and query parameters, by name (a route may override one). */
export const PARAMETER_EXAMPLES: Readonly<Record<string, unknown>> = {
  transactionId: EXAMPLE.transactionId,
  name: EXAMPLE.processor,
  destination: 'payments',
  after: 1057,
  limit: 100,
  size: 1043,
  start: 1024,
  end: 1043,
  index: EXAMPLE.logIndex,
  treeSize: EXAMPLE.treeSize,
  from: 1000,
  to: 1043,
  '*': '0/004',
  asset: 'swagger-ui.css',
  'Idempotency-Key': 'fwd-ord-2026-004817-auth-1',
};
