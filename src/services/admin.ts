/**
 * Admin operations: processor registry and certificate revocation (PCI DSS 7.2.4/8.2.6).
 *
 * Contract (PCI DSS 10.2.1.2, 10.2.2): every change — and every refused attempt whose action is
 * known — is an `admin_event` leaf of the Merkle log (who, what, when, from where, outcome).
 * The `granted` entry is committed BEFORE the change takes effect; if the log cannot take it,
 * nothing changes (LOG_UNAVAILABLE). A change that fails after its entry committed is followed
 * by a second entry with outcome `failed`.
 */
import { z } from 'zod';
import { PaylogError } from '../errors.js';
import { authorize } from '../auth/policy.js';
import type { Principal } from '../auth/principal.js';
import { PROCESSOR_STATUSES, type ProcessorRegistry } from '../auth/processors.js';
import type { RevocationList } from '../auth/revocations.js';
import { normalizeSerialHex } from '../pki/identity.js';
import { isProcessorName } from '../validation/identifiers.js';
import type { Appender } from '../log/appender.js';
import { adminEventLeaf, encodeLeaf, type AdminEventInput } from '../log/leaf.js';

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

type AdminTarget = Omit<AdminEventInput, 'time' | 'principal' | 'sourceAddress' | 'outcome' | 'reason'>;

export class AdminService {
  constructor(
    private readonly processors: ProcessorRegistry,
    private readonly revocations: RevocationList,
    private readonly appender?: Appender,
  ) {}

  /** Appends one admin event and resolves, with its log index, after its batch committed (-1: no log). */
  private async record(principal: Principal, sourceAddress: string, target: AdminTarget, outcome: AdminEventInput['outcome'], reason?: string): Promise<number> {
    if (!this.appender) return -1;
    const now = new Date();
    const leaf = encodeLeaf(adminEventLeaf({ ...target, time: now, principal, sourceAddress, outcome, reason }));
    const r = await this.appender.append({ kind: 'admin_event', leaf, createdAt: now });
    return 'logIndex' in r ? r.logIndex : -1;
  }

  /**
   * Authorizes, logs (denied or granted, committed first), applies, logs a failure. `apply` gets
   * the granted entry's log index (forward destinations record it beside the row).
   */
  async logged<T>(principal: Principal, sourceAddress: string, permission: Parameters<typeof authorize>[1], target: AdminTarget, apply: (grantedLogIndex: number) => Promise<T>): Promise<T> {
    try {
      authorize(principal, permission);
    } catch (e) {
      await this.record(principal, sourceAddress, target, 'denied', e instanceof PaylogError ? e.code : 'FORBIDDEN');
      throw e;
    }
    const granted = await this.record(principal, sourceAddress, target, 'granted');
    try {
      return await apply(granted);
    } catch (e) {
      await this.record(principal, sourceAddress, target, 'failed', e instanceof PaylogError ? e.code : 'INTERNAL').catch(() => undefined);
      throw e;
    }
  }

  async revoke(principal: Principal, raw: unknown, sourceAddress = ''): Promise<{ fingerprint?: string; serial?: string }> {
    const r = revocationRequestSchema.safeParse(raw);
    if (!r.success) {
      authorize(principal, 'admin:revoke');
      throw invalid('revocation: give "fingerprint" (sha256:<64 hex>) and/or "serial" (hex)');
    }
    const serial = r.data.serial ? normalizeSerialHex(r.data.serial) : undefined;
    const target: AdminTarget = {
      action: 'certificate_revoked',
      ...(r.data.fingerprint ? { certificateFingerprint: r.data.fingerprint } : {}),
      ...(serial ? { serial: serial.toLowerCase() } : {}),
      ...(r.data.reason ? { note: r.data.reason } : {}),
    };
    await this.logged(principal, sourceAddress, 'admin:revoke', target, () =>
      this.revocations.revoke({
        ...(r.data.fingerprint ? { fingerprint: r.data.fingerprint } : {}),
        ...(serial ? { serial } : {}),
        ...(r.data.reason ? { reason: r.data.reason } : {}),
        revokedBy: `${principal.role}:${principal.name}`,
      }),
    );
    return { ...(r.data.fingerprint ? { fingerprint: r.data.fingerprint } : {}), ...(serial ? { serial } : {}) };
  }

  async listProcessors(principal: Principal) {
    authorize(principal, 'admin:processors');
    return await this.processors.list();
  }

  async setProcessor(principal: Principal, name: string, raw: unknown, sourceAddress = '') {
    const r = processorUpdateSchema.safeParse(raw);
    if (!isProcessorName(name) || !r.success) {
      authorize(principal, 'admin:processors');
      if (!isProcessorName(name)) throw invalid('processor name: 1-63 lower-case letters, digits and -, starting with a letter or digit, e.g. acme');
      throw invalid('processor update: { "status": "active" | "disabled" }');
    }
    const current = await this.processors.status(name);
    const action = current === null ? 'processor_registered' : r.data.status === 'disabled' ? 'processor_disabled' : 'processor_enabled';
    await this.logged(principal, sourceAddress, 'admin:processors', { action, processor: name }, () => this.processors.upsert(name, r.data.status));
    return { name, status: r.data.status };
  }
}
