/**
 * Realistic examples of the admin routes (processors, revocations) and the key lifecycle
 * routes (status, rotate, rewrap, retention, shred), continuing the story of `examples.ts`.
 */
import { EXAMPLE } from './examples.js';
import type { Examples } from './route-spec.js';

const one = (summary: string, value: unknown): Examples => ({ example: { summary, value } });
const processorUri = (name: string) => `urn:paylog:principal:processor:${name}`;
const periodKeyArn = 'arn:aws:kms:eu-west-1:111122223333:key/8c2e61d0-4b7f-4a19-b3e5-90d7c1f2a6e4';

export const PROCESSORS_EXAMPLES: Examples = one('Two processors, one disabled', {
  processors: [
    { name: 'acme', status: 'active', principalUri: processorUri('acme') },
    { name: 'globex', status: 'disabled', principalUri: processorUri('globex') },
  ],
});
export const PROCESSOR_UPDATE_EXAMPLES: Examples = {
  register: { summary: 'Register (or re-enable) a processor', value: { status: 'active' } },
  disable: { summary: 'Disable: its certificates are refused from the next request', value: { status: 'disabled' } },
};
export const PROCESSOR_UPDATE_RESULT_EXAMPLES: Examples = one('Registered', { name: 'acme', status: 'active' });

export const REVOCATION_REQUEST_EXAMPLES: Examples = {
  fingerprint: { summary: 'By certificate fingerprint', value: { fingerprint: EXAMPLE.checkoutFingerprint, reason: 'key compromise (laptop lost), ticket SEC-2026-118' } },
  serial: { summary: 'By serial number', value: { serial: '5f3a9c0012d4e7b1', reason: 'superseded' } },
};
export const REVOCATION_RESULT_EXAMPLES: Examples = one('Revoked', { revoked: { fingerprint: EXAMPLE.checkoutFingerprint } });

export const KEY_STATUS_EXAMPLES: Examples = one('One processor, monthly key epochs', {
  epochs: [
    {
      epochId: 'acme/2026-11',
      processor: 'acme',
      granularity: 'month',
      periodStart: '2026-11-01T00:00:00.000Z',
      periodEnd: '2026-12-01T00:00:00.000Z',
      generation: 1,
      state: 'retired',
      kmsKeyId: periodKeyArn,
      records: 18211,
      createdAt: '2026-11-01T00:00:03.114Z',
    },
    {
      epochId: 'acme/2026-12',
      processor: 'acme',
      granularity: 'month',
      periodStart: '2026-12-01T00:00:00.000Z',
      periodEnd: '2027-01-01T00:00:00.000Z',
      generation: 1,
      state: 'active',
      kmsKeyId: EXAMPLE.kmsKeyArn,
      records: 1021,
      createdAt: '2026-12-01T00:00:02.871Z',
    },
  ],
  keyPeriods: [
    {
      granularity: 'month',
      periodStart: '2026-12-01T00:00:00.000Z',
      periodEnd: '2027-01-01T00:00:00.000Z',
      kmsKeyId: EXAMPLE.kmsKeyArn,
      kmsKeyIds: [EXAMPLE.kmsKeyArn],
      state: 'active',
      deletionDate: null,
    },
  ],
  v1DataKeys: [],
  retention: 'P13M',
  cachedEpochPrivateKeys: 1,
  kmsRequests: { GenerateDataKey: 1, Decrypt: 3, Encrypt: 2, Sign: 96, DescribeKey: 14 },
});

export const ROTATE_REQUEST_EXAMPLES: Examples = {
  one: { summary: 'One processor', value: { processor: 'acme', reason: 'suspected exposure of a processor host' } },
  all: { summary: 'Every active processor', value: {} },
};
export const ROTATE_RESULT_EXAMPLES: Examples = one('A second generation of this month’s epoch', { epochs: ['acme/2026-12/2'] });

export const REWRAP_REQUEST_EXAMPLES: Examples = {
  start: { summary: 'Start: every live epoch key under a new KMS key of its own period', value: { periodKeys: 'new', batchSize: 100 } },
  next: {
    summary: 'Next batch of the same run',
    value: { periodKeys: 'new', run: '6f1c2a4e-93b7-4d0a-8e25-1b7f3c9d5a60', after: 'epoch:acme/2026-11', batchSize: 100 },
  },
  v1: { summary: 'Envelope-v1 data keys under another KMS key', value: { to: EXAMPLE.kmsKeyArn } },
};
export const REWRAP_RESULT_EXAMPLES: Examples = one('The last batch of a run', {
  rewrapped: 2,
  kind: 'epoch',
  remaining: 0,
  done: true,
  run: '6f1c2a4e-93b7-4d0a-8e25-1b7f3c9d5a60',
  periodKeys: 'new',
  to: null,
  after: 'epoch:acme/2026-12',
  skipped: { count: 0, epochIds: [], transactionIds: [] },
});

export const RETENTION_REQUEST_EXAMPLES: Examples = {
  dryRun: { summary: 'Report what would be shredded', value: { dryRun: true } },
  apply: { summary: 'Shred now', value: {} },
};
export const RETENTION_REPORT_EXAMPLES: Examples = one('A dry run that finds one expired key period', {
  policy: 'PAYLOG_RETENTION=P13M',
  asOf: '2026-12-07T03:00:00.000Z',
  cutoff: '2025-11-07T03:00:00.000Z',
  dryRun: true,
  periods: [
    {
      granularity: 'month',
      periodStart: '2025-10-01T00:00:00.000Z',
      periodEnd: '2025-11-01T00:00:00.000Z',
      kmsKeyId: periodKeyArn,
      scheduledDeletion: null,
      kmsKeys: [{ kmsKeyId: periodKeyArn, action: 'schedule', deletionDate: null }],
    },
  ],
  epochs: [{ epochId: 'acme/2025-10', processor: 'acme', periodStart: '2025-10-01T00:00:00.000Z', periodEnd: '2025-11-01T00:00:00.000Z', records: 16877 }],
  v1Records: 0,
  logIndex: null,
});

export const SHRED_REQUEST_EXAMPLES: Examples = one('An erasure request', { reason: 'erasure request (GDPR Art. 17), ticket PRIV-2026-311' });
export const SHRED_RESULT_EXAMPLES: Examples = one('Shredded', { transactionId: 'ord-2026-004819', shredded: true, logIndex: 1071 });
