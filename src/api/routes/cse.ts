/** Routes: GET /v1/cse/jwks.json (any client certificate): the key browsers encrypt card data to. */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { CseKeyStore } from '../../cse/keys.js';
import { requirePrincipal } from '../request-context.js';
import { defineRoute } from '../route-spec.js';
import { CSE_JWKS_EXAMPLES } from '../examples.js';

/** RFC 7517 JWK Set of the client-side encryption public keys (ECDH-ES on P-256, A256GCM). */
const cseJwksSchema = z.object({
  keys: z.array(z.looseObject({ kty: z.literal('EC'), crv: z.literal('P-256'), kid: z.string(), x: z.string(), y: z.string() })),
});

export function registerCseRoutes(app: FastifyInstance, deps: { cseKeys: CseKeyStore }): void {
  defineRoute(
    app,
    {
      method: 'GET',
      url: '/v1/cse/jwks.json',
      operationId: 'getCseJwks',
      tag: 'client-side encryption',
      access: 'mtls',
      who: 'any certificate (the checkout backend renders it into its payment page)',
      summary: 'The JWK Set browsers encrypt payment methods to (JWE ECDH-ES, A256GCM)',
      responses: { 200: { description: 'JWK Set (application/jwk-set+json)', schema: cseJwksSchema, contentType: 'application/jwk-set+json', name: 'CseJwks', examples: CSE_JWKS_EXAMPLES } },
      errors: ['LOG_UNAVAILABLE', 'KMS_UNAVAILABLE'],
    },
    async (req, reply) => {
      requirePrincipal(req); // any verified, unrevoked client certificate
      // Like every /v1 answer it is `no-store`; a checkout backend may keep it in memory for a few
      // minutes (a retired key keeps decrypting for PAYLOG_CSE_KEY_OVERLAP_S after rotation).
      return reply.type('application/jwk-set+json').send(await deps.cseKeys.jwks());
    },
  );
}
