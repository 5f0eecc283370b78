/** Routes: /v1/log/* (contract: checkpoint, key, entries, inclusion and consistency proofs). */
import type { FastifyInstance } from 'fastify';
import { parseIndexParam, type LogReadService } from '../../services/log-read.js';
import { requirePrincipal } from '../server.js';
import { PaylogError } from '../../errors.js';
import { isTransactionId, TRANSACTION_ID_MAX } from '../../validation/identifiers.js';

type Q = { Querystring: Record<string, string | string[] | undefined> };

function transactionIdParam(v: unknown): string | undefined {
  if (v === undefined) return undefined;
  if (!isTransactionId(v)) {
    throw new PaylogError(
      'VALIDATION_FAILED',
      `query parameter transactionId must be given once: 1-${TRANSACTION_ID_MAX} of A-Z a-z 0-9 . _ : - (starting with a letter or digit)`,
    );
  }
  return v;
}

export function registerLogRoutes(app: FastifyInstance, deps: { log: LogReadService }): void {
  app.get<Q>('/v1/log/checkpoint', async (req, reply) => {
    const note = await deps.log.checkpoint(requirePrincipal(req), parseIndexParam('size', req.query.size));
    return reply.type('text/plain; charset=utf-8').send(note);
  });
  app.get('/v1/log/key', async (req) => deps.log.key(requirePrincipal(req)));
  app.get<Q>('/v1/log/entries', async (req) =>
    deps.log.entries(requirePrincipal(req), parseIndexParam('start', req.query.start), parseIndexParam('end', req.query.end)),
  );
  app.get<Q>('/v1/log/proof/inclusion', async (req) => {
    const q = req.query;
    const index = parseIndexParam('index', q.index);
    const treeSize = parseIndexParam('treeSize', q.treeSize);
    const transactionId = transactionIdParam(q.transactionId);
    return await deps.log.inclusion(requirePrincipal(req), {
      ...(index !== undefined ? { index } : {}),
      ...(transactionId !== undefined ? { transactionId } : {}),
      ...(treeSize !== undefined ? { treeSize } : {}),
    });
  });
  app.get<Q>('/v1/log/proof/consistency', async (req) =>
    deps.log.consistency(requirePrincipal(req), parseIndexParam('from', req.query.from), parseIndexParam('to', req.query.to)),
  );
}
