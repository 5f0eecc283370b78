/**
 * Realistic examples of the log routes (checkpoints, keys, entries, proofs, tiles) and the
 * operational routes, continuing the story of `examples.ts` (the log holds 1043 entries).
 */
import { DOCS_HTML } from './docs.js';
import { EXAMPLE, EXAMPLE_LEAVES, exampleBytes, exampleCheckpoint } from './examples.js';
import type { Examples } from './route-spec.js';

const one = (summary: string, value: unknown): Examples => ({ example: { summary, value } });

/** Ed25519 SubjectPublicKeyInfo prefix (RFC 8410): the PEM of a 32-byte public key. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
function publishedKey(label: string) {
  const raw = Buffer.from(exampleBytes(label), 'base64');
  const keyId = Buffer.from(exampleBytes(`${label} key id`, 4), 'base64').toString('hex');
  const der = Buffer.concat([ED25519_SPKI_PREFIX, raw]).toString('base64');
  return {
    vkey: `${EXAMPLE.origin}+${keyId}+${Buffer.concat([Buffer.from([1]), raw]).toString('base64')}`,
    keyId,
    pem: `-----BEGIN PUBLIC KEY-----\n${der}\n-----END PUBLIC KEY-----\n`,
  };
}

export const CHECKPOINT_EXAMPLES: Examples = one('Signed note covering 1043 entries', exampleCheckpoint(1043));
export const TILES_CHECKPOINT_EXAMPLES: Examples = one(
  'Signed note with two witness cosignatures (PAYLOG_WITNESSES set)',
  exampleCheckpoint(1043, ['witness.example.org/w1', 'witness.example.net/armored']),
);

const current = publishedKey('signing key 2026');
const previous = publishedKey('signing key 2025');
export const LOG_KEY_EXAMPLES: Examples = one('The current signing key and the previous one (still verifying older checkpoints)', {
  origin: EXAMPLE.origin,
  keys: [current, previous],
  vkey: current.vkey,
  pem: current.pem,
});

export const ENTRIES_EXAMPLES: Examples = one('Three transaction entries (card, US bank account, IBAN): leaf format v3, masked data and the envelope commitment only', {
  start: 1042,
  end: 1045,
  treeSize: 1063,
  entries: [1042, 1043, 1044].map((index) => ({ index, leaf: EXAMPLE_LEAVES[index]!.toString('base64') })),
});

export const INCLUSION_EXAMPLES: Examples = one('Entry 1042 in the tree of size 1043', {
  index: EXAMPLE.logIndex,
  treeSize: EXAMPLE.treeSize,
  hashes: EXAMPLE.hashes('audit path 1042', 11),
  leaf: EXAMPLE_LEAVES[1042]!.toString('base64'),
});

export const CONSISTENCY_EXAMPLES: Examples = one('From tree size 1000 to 1043', { from: 1000, to: 1043, hashes: EXAMPLE.hashes('consistency 1000 1043', 9) });

export const HEALTH_EXAMPLES: Examples = one('Alive', { status: 'ok' });
export const READY_EXAMPLES: Examples = {
  ready: { summary: 'Ready (two workers listening)', value: { status: 'ready', checks: { database: true, kms: true }, details: { workers: { listening: 2, configured: 2 } } } },
};
export const NOT_READY_EXAMPLES: Examples = {
  kms: { summary: 'KMS does not answer', value: { status: 'not ready', checks: { database: true, kms: false } } },
  signing: {
    summary: 'The checkpoint signer refuses to sign the stored tree',
    value: {
      status: 'not ready',
      checks: { database: true, kms: true },
      details: {
        signing: {
          refused: true,
          reason: 'behind',
          signedSize: 1043,
          headSize: 1041,
          message: 'refusing to sign: tree size 1041 is smaller than signed size 1043',
          since: '2026-12-07T10:02:11.000Z',
        },
      },
    },
  },
};

export const METRICS_EXAMPLES: Examples = one(
  'A few of the series (docs/operations.md lists them all)',
  [
    '# HELP paylog_log_size Entries in the log (tree size)',
    '# TYPE paylog_log_size gauge',
    'paylog_log_size 1043',
    '# HELP paylog_http_requests_total HTTP requests by method, route pattern and status',
    '# TYPE paylog_http_requests_total counter',
    'paylog_http_requests_total{method="POST",route="/v1/transactions",status="201"} 1021',
    'paylog_http_requests_total{method="POST",route="/v1/transactions/:transactionId/release",status="200"} 14',
    '# HELP paylog_checkpoint_age_seconds Seconds since this instance last signed, or found current, the checkpoint that covers the log (absent before the first)',
    '# TYPE paylog_checkpoint_age_seconds gauge',
    'paylog_checkpoint_age_seconds 0.8',
    '',
  ].join('\n'),
);

export const OPENAPI_EXAMPLES: Examples = one('This document (abridged)', {
  openapi: '3.1.0',
  info: { title: 'paylog', version: '1' },
  paths: { '/v1/transactions': { post: { operationId: 'submitTransaction' } } },
});
export const DOCS_EXAMPLES: Examples = one('The page', DOCS_HTML);
