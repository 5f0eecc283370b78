/** Routes: /v1/log/* (contract: checkpoint, key, entries, inclusion and consistency proofs). */
import type { FastifyInstance } from 'fastify';
import { parseIndexParam, type LogReadService } from '../../services/log-read.js';
import { requirePrincipal } from '../request-context.js';
import { PaylogError } from '../../errors.js';
import type { TilesService } from '../../services/tiles.js';
import { z } from 'zod';
import { defineRoute } from '../route-spec.js';
import {
  checkpointQuery,
  checkpointSchema,
  consistencyQuery,
  consistencySchema,
  entriesQuery,
  entriesSchema,
  inclusionQuery,
  inclusionSchema,
  logKeySchema,
  textSchema,
} from '../schemas.js';
import { isTransactionId, TRANSACTION_ID_MAX } from '../../validation/identifiers.js';
import { acceptsGzip, GzipCache } from '../content-coding.js';
import * as ex from '../examples-log.js';

type Query = Record<string, string | string[] | undefined>;

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
  defineRoute(
    app,
    {
      method: 'GET',
      url: '/v1/log/checkpoint',
      operationId: 'getCheckpoint',
      tag: 'log',
      access: 'mtls',
      who: 'any certificate',
      summary: 'Latest signed checkpoint (C2SP signed note); ?size= for an earlier one',
      query: checkpointQuery,
      responses: { 200: { description: 'The checkpoint note', schema: checkpointSchema, contentType: 'text/plain', examples: ex.CHECKPOINT_EXAMPLES } },
      errors: ['VALIDATION_FAILED', 'NOT_FOUND', 'LOG_UNAVAILABLE'],
      errorExamples: { NOT_FOUND: { message: 'no checkpoint for that tree size' }, VALIDATION_FAILED: { message: 'query parameter size must be a non-negative decimal integer' } },
    },
    async (req, reply) => {
      const note = await deps.log.checkpoint(requirePrincipal(req), parseIndexParam('size', (req.query as Query).size));
      return reply.type('text/plain; charset=utf-8').send(note);
    },
  );
  defineRoute(
    app,
    {
      method: 'GET',
      url: '/v1/log/key',
      operationId: 'getLogKey',
      tag: 'log',
      access: 'mtls',
      who: 'any certificate',
      summary: 'Checkpoint verifier key(s): signed-note vkey and PEM',
      responses: { 200: { description: 'The verifier keys', schema: logKeySchema, name: 'LogKeys', examples: ex.LOG_KEY_EXAMPLES } },
      errors: [],
    },
    async (req) => deps.log.key(requirePrincipal(req)),
  );
  defineRoute(
    app,
    {
      method: 'GET',
      url: '/v1/log/entries',
      operationId: 'getEntries',
      tag: 'log',
      access: 'mtls',
      who: 'auditor',
      summary: 'Log entries [start, end), at most 1000 per page',
      query: entriesQuery,
      responses: { 200: { description: 'Entries (fewer than asked when capped by the page size or the tree size)', schema: entriesSchema, name: 'Entries', examples: ex.ENTRIES_EXAMPLES } },
      errors: ['VALIDATION_FAILED', 'FORBIDDEN', 'LOG_UNAVAILABLE'],
      errorExamples: { VALIDATION_FAILED: { message: 'end must not be smaller than start' } },
    },
    async (req) => {
      const q = req.query as Query;
      return deps.log.entries(requirePrincipal(req), parseIndexParam('start', q.start), parseIndexParam('end', q.end));
    },
  );
  defineRoute(
    app,
    {
      method: 'GET',
      url: '/v1/log/proof/inclusion',
      operationId: 'getInclusionProof',
      tag: 'log',
      access: 'mtls',
      who: 'auditor; a processor for entries of its own transactions',
      summary: 'RFC 9162 §2.1.3 inclusion proof, by index or by transactionId',
      query: inclusionQuery,
      responses: { 200: { description: 'The proof and the leaf bytes', schema: inclusionSchema, name: 'InclusionProof', examples: ex.INCLUSION_EXAMPLES } },
      errors: ['VALIDATION_FAILED', 'FORBIDDEN', 'NOT_FOUND', 'LOG_UNAVAILABLE'],
      errorExamples: { VALIDATION_FAILED: { message: 'index or transactionId is required' } },
    },
    async (req) => {
      const q = req.query as Query;
      const index = parseIndexParam('index', q.index);
      const treeSize = parseIndexParam('treeSize', q.treeSize);
      const transactionId = transactionIdParam(q.transactionId);
      return await deps.log.inclusion(requirePrincipal(req), {
        ...(index !== undefined ? { index } : {}),
        ...(transactionId !== undefined ? { transactionId } : {}),
        ...(treeSize !== undefined ? { treeSize } : {}),
      });
    },
  );
  defineRoute(
    app,
    {
      method: 'GET',
      url: '/v1/log/proof/consistency',
      operationId: 'getConsistencyProof',
      tag: 'log',
      access: 'mtls',
      who: 'auditor',
      summary: 'RFC 9162 §2.1.4 consistency proof between two tree sizes',
      query: consistencyQuery,
      responses: { 200: { description: 'The proof', schema: consistencySchema, name: 'ConsistencyProof', examples: ex.CONSISTENCY_EXAMPLES } },
      errors: ['VALIDATION_FAILED', 'FORBIDDEN', 'LOG_UNAVAILABLE'],
      errorExamples: { VALIDATION_FAILED: { message: 'to is larger than the log' } },
    },
    async (req) => {
      const q = req.query as Query;
      return deps.log.consistency(requirePrincipal(req), parseIndexParam('from', q.from), parseIndexParam('to', q.to));
    },
  );
}

/** Routes: /v1/log/tiles/* (C2SP tlog-tiles: checkpoint, hash tiles, entry bundles; auditors). */
export function registerTileRoutes(app: FastifyInstance, deps: { tiles: TilesService }): void {
  const tiles = { tag: 'log', access: 'mtls', who: 'auditor' } as const;
  const gzipped = new GzipCache();
  defineRoute(
    app,
    {
      ...tiles,
      method: 'GET',
      url: '/v1/log/tiles/checkpoint',
      operationId: 'tilesCheckpoint',
      summary: 'C2SP tlog-tiles checkpoint: the newest signed checkpoint (witnessed, with cosignatures, when PAYLOG_WITNESSES is set)',
      responses: { 200: { description: 'Signed note', schema: checkpointSchema, contentType: 'text/plain', examples: ex.TILES_CHECKPOINT_EXAMPLES } },
      errors: ['FORBIDDEN', 'NOT_FOUND', 'LOG_UNAVAILABLE'],
      errorExamples: {
        NOT_FOUND: { message: 'no checkpoint has been signed yet' },
        LOG_UNAVAILABLE: { message: 'no checkpoint has reached the witness quorum yet; retry later' },
      },
    },
    async (req, reply) => {
      const note = await deps.tiles.checkpoint(requirePrincipal(req));
      return reply.type('text/plain; charset=utf-8').send(note);
    },
  );
  defineRoute(
    app,
    {
      ...tiles,
      method: 'GET',
      url: '/v1/log/tiles/tile/*',
      operationId: 'tile',
      summary: 'C2SP tlog-tiles hash tile or entry bundle',
      description:
        'Hash tile `<L>/<N>[.p/<W>]` or entry bundle `entries/<N>[.p/<W>]` (height 8); full tiles are immutable; entry bundles are gzip-encoded when Accept-Encoding allows gzip.',
      params: z.object({ '*': z.string().describe('tile path after `tile/`, e.g. `0/x001/234` or `entries/000.p/7`') }),
      responses: { 200: { description: 'Tile bytes', schema: textSchema, contentType: 'application/octet-stream' } },
      errors: ['FORBIDDEN', 'NOT_FOUND', 'INTEGRITY_FAILURE', 'LOG_UNAVAILABLE'],
      errorExamples: {
        NOT_FOUND: { message: 'no such tile in a signed tree' },
        INTEGRITY_FAILURE: { message: 'stored Merkle nodes for this tile are incomplete' },
      },
    },
    async (req, reply) => {
      const path = `tile/${(req.params as { '*': string })['*']}`;
      const t = await deps.tiles.tile(requirePrincipal(req), path);
      reply.type('application/octet-stream').header('cache-control', t.cacheControl);
      if (!t.entryBundle) return reply.send(t.bytes);
      // tlog-tiles §Log entries: compressed at the HTTP layer, negotiated (src/api/content-coding.ts).
      reply.header('vary', 'accept-encoding');
      if (!acceptsGzip(req.headers['accept-encoding'])) return reply.send(t.bytes);
      return reply.header('content-encoding', 'gzip').send(await gzipped.gzip(t.bytes, t.full ? path : undefined));
    },
  );
}
