/** Admin operations: processor registry and certificate revocation (PCI DSS 7.2.4/8.2.6). */
import { z } from 'zod';
import { PaylogError } from '../errors.js';
import { authorize } from '../auth/policy.js';
import type { Principal } from '../auth/principal.js';
import { PROCESSOR_STATUSES, type ProcessorRegistry } from '../auth/processors.js';
import type { RevocationList } from '../auth/revocations.js';
import { normalizeSerialHex } from '../pki/identity.js';
import { isProcessorName } from '../validation/identifiers.js';

export const revocationRequestSchema = z
  .strictObject({
    fingerprint: z.string().regex(/^sha256:[0-9a-f]{64}$/).optional(),
    serial: z.string().regex(/^[0-9a-fA-F]{1,64}$/).optional(),
    reason: z.string().max(200).regex(/^[\p{L}\p{N} ._:,()-]*$/u).optional(),
  })
  .refine((r) => r.fingerprint !== undefined || r.serial !== undefined, { message: 'fingerprint or serial required' });

export const processorUpdateSchema = z.strictObject({ status: z.enum(PROCESSOR_STATUSES) });

function invalid(what: string): PaylogError {
  return new PaylogError('VALIDATION_FAILED', `invalid ${what}`);
}

export class AdminService {
  constructor(
    private readonly processors: ProcessorRegistry,
    private readonly revocations: RevocationList,
  ) {}

  async revoke(principal: Principal, raw: unknown): Promise<{ fingerprint?: string; serial?: string }> {
    authorize(principal, 'admin:revoke');
    const r = revocationRequestSchema.safeParse(raw);
    if (!r.success) throw invalid('revocation: give "fingerprint" (sha256:<64 hex>) and/or "serial" (hex)');
    const serial = r.data.serial ? normalizeSerialHex(r.data.serial) : undefined;
    await this.revocations.revoke({
      ...(r.data.fingerprint ? { fingerprint: r.data.fingerprint } : {}),
      ...(serial ? { serial } : {}),
      ...(r.data.reason ? { reason: r.data.reason } : {}),
      revokedBy: `${principal.role}:${principal.name}`,
    });
    return { ...(r.data.fingerprint ? { fingerprint: r.data.fingerprint } : {}), ...(serial ? { serial } : {}) };
  }

  async listProcessors(principal: Principal) {
    authorize(principal, 'admin:processors');
    return await this.processors.list();
  }

  async setProcessor(principal: Principal, name: string, raw: unknown) {
    authorize(principal, 'admin:processors');
    if (!isProcessorName(name)) throw invalid('processor name: 1-63 lower-case letters, digits and -, starting with a letter or digit, e.g. acme');
    const r = processorUpdateSchema.safeParse(raw);
    if (!r.success) throw invalid('processor update: { "status": "active" | "disabled" }');
    await this.processors.upsert(name, r.data.status);
    return { name, status: r.data.status };
  }
}
