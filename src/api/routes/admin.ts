/** Routes: admin decisions (processor registrations, certificate revocations). */
import type { FastifyInstance } from 'fastify';
import { processorUpdateSchema, revocationRequestSchema, type AdminService } from '../../services/admin.js';
import { requirePrincipal } from '../request-context.js';
import { defineRoute } from '../route-spec.js';
import { processorNameParams, processorsSchema, processorUpdateResultSchema, revocationResultSchema } from '../schemas.js';
import {
  PROCESSOR_UPDATE_EXAMPLES,
  PROCESSOR_UPDATE_RESULT_EXAMPLES,
  PROCESSORS_EXAMPLES,
  REVOCATION_REQUEST_EXAMPLES,
  REVOCATION_RESULT_EXAMPLES,
} from '../examples-admin.js';

export function registerAdminRoutes(app: FastifyInstance, deps: { admin: AdminService }): void {
  defineRoute(
    app,
    {
      method: 'GET',
      url: '/v1/admin/processors',
      operationId: 'listProcessors',
      tag: 'admin',
      access: 'mtls',
      who: 'admin',
      summary: 'Registered processors',
      responses: { 200: { description: 'All processors, by name', schema: processorsSchema, examples: PROCESSORS_EXAMPLES } },
      errors: ['FORBIDDEN', 'LOG_UNAVAILABLE'],
    },
    async (req) => ({ processors: await deps.admin.listProcessors(requirePrincipal(req)) }),
  );
  defineRoute(
    app,
    {
      method: 'PUT',
      url: '/v1/admin/processors/:name',
      operationId: 'setProcessor',
      tag: 'admin',
      access: 'mtls',
      who: 'admin',
      summary: 'Register, disable or re-enable a processor',
      description: 'A processor certificate is accepted only while its processor is registered and active.',
      params: processorNameParams,
      body: { schema: processorUpdateSchema, name: 'ProcessorUpdate', examples: PROCESSOR_UPDATE_EXAMPLES },
      responses: { 200: { description: 'Updated', schema: processorUpdateResultSchema, examples: PROCESSOR_UPDATE_RESULT_EXAMPLES } },
      errors: ['VALIDATION_FAILED', 'FORBIDDEN', 'LOG_UNAVAILABLE'],
      errorExamples: { VALIDATION_FAILED: { message: 'invalid processor update: { "status": "active" | "disabled" }' } },
    },
    async (req) => await deps.admin.setProcessor(requirePrincipal(req), (req.params as { name: string }).name, req.body, req.ip),
  );
  defineRoute(
    app,
    {
      method: 'POST',
      url: '/v1/admin/revocations',
      operationId: 'revokeCertificate',
      tag: 'admin',
      access: 'mtls',
      who: 'admin',
      summary: 'Revoke a client certificate by SHA-256 fingerprint and/or serial; effective on the next request',
      body: { schema: revocationRequestSchema, name: 'RevocationRequest', examples: REVOCATION_REQUEST_EXAMPLES },
      responses: { 201: { description: 'Revoked', schema: revocationResultSchema, examples: REVOCATION_RESULT_EXAMPLES } },
      errors: ['VALIDATION_FAILED', 'FORBIDDEN', 'LOG_UNAVAILABLE'],
      errorExamples: { VALIDATION_FAILED: { message: 'invalid revocation: give "fingerprint" (sha256:<64 hex>) and/or "serial" (hex)' } },
    },
    async (req, reply) => reply.status(201).send({ revoked: await deps.admin.revoke(requirePrincipal(req), req.body, req.ip) }),
  );
}
