/** Admin routes of the key lifecycle (issue 9): status, rotate, rewrap, retention, shred. */
import type { FastifyInstance } from 'fastify';
import type { KeyLifecycleService } from '../../services/key-lifecycle.js';
import { retentionRequestSchema, rewrapRequestSchema, rotateRequestSchema, shredRequestSchema } from '../../services/key-requests.js';
import { requirePrincipal } from '../request-context.js';
import { defineRoute } from '../route-spec.js';
import { keyRotateResultSchema, keyStatusSchema, retentionReportSchema, rewrapResultSchema, shredResultSchema, transactionIdParams } from '../schemas.js';
import * as ex from '../examples-admin.js';

export function registerKeyRoutes(app: FastifyInstance, deps: { keys: KeyLifecycleService }): void {
  defineRoute(
    app,
    {
      method: 'GET',
      url: '/v1/admin/keys',
      operationId: 'keyStatus',
      tag: 'keys',
      access: 'mtls',
      who: 'admin',
      summary: 'Key epochs with state and record counts, key periods, envelope-v1 data keys, and KMS requests so far (this process)',
      responses: { 200: { description: 'Key lifecycle status', schema: keyStatusSchema, name: 'KeyStatus', examples: ex.KEY_STATUS_EXAMPLES } },
      errors: ['FORBIDDEN', 'LOG_UNAVAILABLE'],
    },
    async (req) => await deps.keys.status(requirePrincipal(req)),
  );
  defineRoute(
    app,
    {
      method: 'POST',
      url: '/v1/admin/keys/rotate',
      operationId: 'rotateKeys',
      tag: 'keys',
      access: 'mtls',
      who: 'admin',
      summary: 'Start new key epochs now for one processor or every active processor',
      body: { schema: rotateRequestSchema, name: 'RotateRequest', examples: ex.ROTATE_REQUEST_EXAMPLES },
      responses: { 200: { description: 'The new epoch ids', schema: keyRotateResultSchema, name: 'RotateResult', examples: ex.ROTATE_RESULT_EXAMPLES } },
      errors: ['VALIDATION_FAILED', 'FORBIDDEN', 'LOG_UNAVAILABLE', 'KMS_UNAVAILABLE'],
    },
    async (req) => await deps.keys.rotate(requirePrincipal(req), req.body),
  );
  defineRoute(
    app,
    {
      method: 'POST',
      url: '/v1/admin/keys/rewrap',
      operationId: 'rewrapKeys',
      tag: 'keys',
      access: 'mtls',
      who: 'admin',
      summary: 'Rewrap one batch of wrapped keys under new KMS keys (ReEncrypt inside KMS)',
      description:
        'With `periodKeys: "new"` each live epoch key under a new KMS key of its own key period; with `to` envelope-v1 data keys under that key. Call again with `run` and `after` until `done`; rows that cannot be rewrapped are skipped and listed.',
      body: { schema: rewrapRequestSchema, name: 'RewrapRequest', examples: ex.REWRAP_REQUEST_EXAMPLES },
      responses: { 200: { description: 'One batch rewrapped', schema: rewrapResultSchema, name: 'RewrapResult', examples: ex.REWRAP_RESULT_EXAMPLES } },
      errors: ['VALIDATION_FAILED', 'FORBIDDEN', 'INTEGRITY_FAILURE', 'LOG_UNAVAILABLE', 'KMS_UNAVAILABLE'],
    },
    async (req) => await deps.keys.rewrapBatch(requirePrincipal(req), req.body),
  );
  defineRoute(
    app,
    {
      method: 'POST',
      url: '/v1/admin/retention/apply',
      operationId: 'applyRetention',
      tag: 'keys',
      access: 'mtls',
      who: 'admin',
      summary: 'Apply the retention policy by crypto-shredding key periods that ended before the cutoff (dryRun reports only)',
      body: { schema: retentionRequestSchema, name: 'RetentionRequest', examples: ex.RETENTION_REQUEST_EXAMPLES },
      responses: { 200: { description: 'Retention report', schema: retentionReportSchema, name: 'RetentionReport', examples: ex.RETENTION_REPORT_EXAMPLES } },
      errors: ['VALIDATION_FAILED', 'FORBIDDEN', 'INTEGRITY_FAILURE', 'LOG_UNAVAILABLE', 'KMS_UNAVAILABLE'],
    },
    async (req) => await deps.keys.applyRetention(requirePrincipal(req), req.body),
  );
  defineRoute(
    app,
    {
      method: 'POST',
      url: '/v1/admin/transactions/:transactionId/shred',
      operationId: 'shredTransaction',
      tag: 'keys',
      access: 'mtls',
      who: 'admin',
      summary: "Shred one transaction early: its wrapped data key is destroyed in the live database",
      params: transactionIdParams,
      body: { schema: shredRequestSchema, name: 'ShredRequest', examples: ex.SHRED_REQUEST_EXAMPLES },
      responses: { 200: { description: 'Shredded', schema: shredResultSchema, name: 'ShredResult', examples: ex.SHRED_RESULT_EXAMPLES } },
      errors: ['VALIDATION_FAILED', 'FORBIDDEN', 'NOT_FOUND', 'INTEGRITY_FAILURE', 'LOG_UNAVAILABLE'],
    },
    async (req) => await deps.keys.shredTransaction(requirePrincipal(req), (req.params as { transactionId: string }).transactionId, req.body),
  );
}
