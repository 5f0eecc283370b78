/** Routes: POST /v1/transactions, GET /v1/transactions/{transactionId}. */
import type { FastifyInstance } from 'fastify';
import type { TransactionService } from '../../services/transactions.js';
import { requirePrincipal } from '../server.js';

export function registerTransactionRoutes(app: FastifyInstance, deps: { transactions: TransactionService }): void {
  app.post('/v1/transactions', async (req, reply) => {
    const { created, receipt } = await deps.transactions.submit(requirePrincipal(req), req.body);
    return reply.status(created ? 201 : 200).send(receipt);
  });

  app.get<{ Params: { transactionId: string } }>('/v1/transactions/:transactionId', async (req) => {
    return await deps.transactions.get(requirePrincipal(req), req.params.transactionId);
  });
}
