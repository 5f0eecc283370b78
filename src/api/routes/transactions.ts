/** Routes: POST /v1/transactions, GET /v1/transactions/{transactionId}. */
import type { FastifyInstance } from 'fastify';
import type { TransactionService } from '../../services/transactions.js';
import { deferredRevocation, requirePrincipal } from '../request-context.js';
import { defineRoute } from '../route-spec.js';
import { z } from 'zod';
import { encryptedTransactionRequestSchema, transactionRequestSchema } from '../../validation/transaction.js';
import { FIELD_EXPECTATIONS } from '../../validation/messages.js';
import { DEFAULT_PROBE_LIMIT_PER_HOUR } from '../../services/probe-limit.js';
import { receiptSchema, transactionIdParams, transactionViewSchema } from '../schemas.js';
import { RECEIPT_EXAMPLES, TRANSACTION_REQUEST_EXAMPLES, TRANSACTION_VIEW_EXAMPLES } from '../examples.js';

export function registerTransactionRoutes(app: FastifyInstance, deps: { transactions: TransactionService }): void {
  defineRoute(
    app,
    {
      method: 'POST',
      url: '/v1/transactions',
      operationId: 'submitTransaction',
      tag: 'transactions',
      access: 'mtls',
      who: 'checkout',
      summary: 'Submit one transaction; transactionId is the idempotency key',
      description:
        'Validated (card data, expiry, currency, processor), encrypted under a fresh data key and committed to the log before the answer. ' +
        'Idempotency: a replay of a transactionId whose served fields (processor, amount, masked payment method — brand, last four, expiry, or the bank equivalents — and metadata) equal the original\'s answers 200 with the original receipt, whatever the hidden digits or holder name (the answer never depends on anything the caller is not served); a replay that differs in a served field is 409 IDEMPOTENCY_CONFLICT. ' +
        `Probe limit: more than PAYLOG_PROBE_LIMIT_PER_HOUR (default ${DEFAULT_PROBE_LIMIT_PER_HOUR}) new transactions whose payment methods have the same served details from one principal in one clock hour are refused with 429 PROBE_LIMIT_EXCEEDED and Retry-After (the end of the hour); replays are never refused by it.`,
      body: {
        // Plain, or with paymentMethod { type: "encrypted", jwe } from the browser (client-side encryption).
        schema: z.union([transactionRequestSchema, encryptedTransactionRequestSchema]),
        oneOf: [
          { name: 'TransactionRequest', schema: transactionRequestSchema },
          { name: 'EncryptedTransactionRequest', schema: encryptedTransactionRequestSchema },
        ],
        fieldDescriptions: FIELD_EXPECTATIONS,
        examples: TRANSACTION_REQUEST_EXAMPLES,
      },
      responses: {
        201: { description: 'Committed to the log', schema: receiptSchema, name: 'TransactionReceipt', examples: RECEIPT_EXAMPLES },
        200: {
          description: 'Replay of an earlier submission (same served fields): the original receipt',
          schema: receiptSchema,
          name: 'TransactionReceipt',
          examples: { card: RECEIPT_EXAMPLES.card! },
        },
      },
      errors: [
        'VALIDATION_FAILED', 'SENSITIVE_AUTHENTICATION_DATA', 'INVALID_CARD_NUMBER', 'CARD_EXPIRED', 'INVALID_ROUTING_NUMBER',
        'INVALID_IBAN', 'UNSUPPORTED_CURRENCY', 'UNKNOWN_PROCESSOR', 'CSE_KEY_UNKNOWN', 'CSE_DECRYPT_FAILED', 'CSE_BINDING_MISMATCH', 'CSE_EXPIRED',
        'IDEMPOTENCY_CONFLICT', 'PROBE_LIMIT_EXCEEDED', 'FORBIDDEN', 'LOG_UNAVAILABLE', 'KMS_UNAVAILABLE',
      ],
      revocation: 'at-commit',
    },
    async (req, reply) => {
      const principal = requirePrincipal(req);
      const { created, receipt } = await deferredRevocation(req, (revocation) => deps.transactions.submit(principal, req.body, { revocation }));
      return reply.status(created ? 201 : 200).send(receipt);
    },
  );

  defineRoute(
    app,
    {
      method: 'GET',
      url: '/v1/transactions/:transactionId',
      operationId: 'getTransaction',
      tag: 'transactions',
      access: 'mtls',
      who: 'checkout, the assigned processor, auditor',
      summary: 'Masked metadata and log position of a transaction (never plaintext)',
      params: transactionIdParams,
      responses: { 200: { description: 'Masked view', schema: transactionViewSchema, name: 'TransactionView', examples: TRANSACTION_VIEW_EXAMPLES } },
      errors: ['FORBIDDEN', 'NOT_FOUND', 'INTEGRITY_FAILURE', 'LOG_UNAVAILABLE'],
    },
    async (req) => await deps.transactions.get(requirePrincipal(req), (req.params as { transactionId: string }).transactionId),
  );
}
