/** Routes: GET /v1/cse/jwks.json (any client certificate): the key browsers encrypt card data to. */
import type { FastifyInstance } from 'fastify';
import type { CseKeyStore } from '../../cse/keys.js';
import { requirePrincipal } from '../server.js';

export function registerCseRoutes(app: FastifyInstance, deps: { cseKeys: CseKeyStore }): void {
  app.get('/v1/cse/jwks.json', async (req, reply) => {
    requirePrincipal(req); // any verified, unrevoked client certificate
    // Like every /v1 answer it is `no-store`; a checkout backend may keep it in memory for a few
    // minutes (a retired key keeps decrypting for PAYLOG_CSE_KEY_OVERLAP_S after rotation).
    return reply.type('application/jwk-set+json').send(await deps.cseKeys.jwks());
  });
}
