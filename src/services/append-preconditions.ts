/**
 * The payment-domain preconditions of log entries (registered with the appender at
 * construction: src/bootstrap/log.ts `new LogAppender(…, { preconditions: APPEND_PRECONDITIONS })`).
 *
 * Contract:
 * - This module owns what each check means and the SQL that reads it; the log core
 *   (src/log/append/) only splices that SQL into its one batch-state read under the append lock
 *   and refuses or denies entries whose check fails (src/log/append/preconditions.ts).
 * - Every check reads the rows it holds on FOR SHARE (its `held` CTE), so a disable,
 *   retirement, revocation or shred of them waits for the batch — except data_keys, which the
 *   runtime role cannot lock: every shred takes the append lock in the transaction of its UPDATE
 *   instead (src/services/key-shred.ts `commitShred`), so it commits either before the batch
 *   reads its state or after the batch has committed.
 * - Revocation at commit is decided HERE and only here for the log (`submitter_*`, decided before
 *   idempotency: a revoked certificate learns nothing, not even that its replay matched).
 * - MUST NOT change a reason string: services and tests match on them.
 */
import type { Precondition, PreconditionCheck } from '../log/appender.js';

/** Reasons a transaction entry is refused. */
export const REFUSAL = { principalRevoked: 'principal_revoked', processorInactive: 'processor_inactive', epochUnusable: 'epoch_unusable' } as const;
/** Reasons a granted access entry is replaced by its denied one. */
export const DENIAL = { epochShredded: 'epoch_shredded', dataKeyShredded: 'data_key_shredded' } as const;

const CHECK = {
  submitterFingerprint: 'submitter_fingerprint_not_revoked',
  submitterSerial: 'submitter_serial_not_revoked',
  processorActive: 'processor_active',
  epochEncrypts: 'epoch_encrypts',
  epochKeyMaterial: 'epoch_key_material',
  dataKeyMaterial: 'data_key_material',
} as const;

/** Every check an entry of this service may name, in the order the batch-state read lists them. */
export const APPEND_PRECONDITIONS: readonly PreconditionCheck[] = [
  {
    // The submitting client certificate is not in revoked_certificates, by fingerprint …
    id: CHECK.submitterFingerprint,
    reason: REFUSAL.principalRevoked,
    beforeReplay: true,
    failing: 'SELECT fingerprint FROM revoked_certificates WHERE fingerprint = ANY({keys})',
  },
  {
    // … or by serial.
    id: CHECK.submitterSerial,
    reason: REFUSAL.principalRevoked,
    beforeReplay: true,
    failing: 'SELECT serial FROM revoked_certificates WHERE serial IS NOT NULL AND serial = ANY({keys})',
  },
  {
    // This processor exists and is active.
    id: CHECK.processorActive,
    reason: REFUSAL.processorInactive,
    held: "SELECT name FROM processors WHERE name = ANY({keys}) AND status = 'active' FOR SHARE",
    failing: 'SELECT g.name FROM unnest({keys}) AS g(name) WHERE g.name NOT IN (SELECT name FROM {held})',
  },
  {
    // This key epoch exists and is neither retired nor shredded (it can still encrypt).
    id: CHECK.epochEncrypts,
    reason: REFUSAL.epochUnusable,
    held: 'SELECT epoch_id FROM key_epochs WHERE epoch_id = ANY({keys}) AND retired_at IS NULL AND shredded_at IS NULL FOR SHARE',
    failing: 'SELECT g.id FROM unnest({keys}) AS g(id) WHERE g.id NOT IN (SELECT epoch_id FROM {held})',
  },
  {
    // An envelope v2 record's epoch private key is not shredded.
    id: CHECK.epochKeyMaterial,
    reason: DENIAL.epochShredded,
    held: 'SELECT epoch_id FROM key_epochs WHERE epoch_id = ANY({keys}) AND shredded_at IS NULL AND wrapped_private_key IS NOT NULL FOR SHARE',
    failing: 'SELECT g.id FROM unnest({keys}) AS g(id) WHERE g.id NOT IN (SELECT epoch_id FROM {held})',
  },
  {
    // The record's data key is not shredded (nor missing). Not lockable: shreds take the append lock.
    id: CHECK.dataKeyMaterial,
    reason: DENIAL.dataKeyShredded,
    failing:
      'SELECT g.id FROM unnest({keys}) AS g(id) WHERE NOT EXISTS (SELECT 1 FROM transactions t JOIN data_keys d ON d.log_index = t.log_index WHERE t.transaction_id = g.id AND d.wrapped_key IS NOT NULL AND d.shredded_at IS NULL)',
  },
];

/**
 * What must still hold when a submission's transaction entry commits: the submitter is not
 * revoked (when given), the processor is active, the key epoch (envelope v2) still encrypts.
 */
export function submissionRequires(o: {
  principal?: { certificateFingerprint: string; serialHex: string };
  processor: string;
  epochId?: string;
}): Precondition[] {
  return [
    ...(o.principal
      ? [
          { check: CHECK.submitterFingerprint, key: o.principal.certificateFingerprint },
          { check: CHECK.submitterSerial, key: o.principal.serialHex },
        ]
      : []),
    { check: CHECK.processorActive, key: o.processor },
    ...(o.epochId !== undefined ? [{ check: CHECK.epochEncrypts, key: o.epochId }] : []),
  ];
}

/**
 * What a granted release's access entry requires not to be shredded when it commits (the
 * record's data_keys row and, for envelope v2, its key_epochs row), and the denied leaf logged
 * in its place otherwise.
 */
export function keyMaterialRequires(keyMaterial: { transactionId: string; epochId?: string }, otherwise: Buffer | (() => Buffer)): { checks: Precondition[]; otherwise: Buffer | (() => Buffer) } {
  return {
    checks: [
      ...(keyMaterial.epochId !== undefined ? [{ check: CHECK.epochKeyMaterial, key: keyMaterial.epochId }] : []),
      { check: CHECK.dataKeyMaterial, key: keyMaterial.transactionId },
    ],
    otherwise,
  };
}
