/**
 * The request bodies of the key lifecycle's admin operations (routes and `npm run keys` /
 * `npm run retention`): rotate, rewrap, retention, shred.
 *
 * Contracts:
 * - Every body is a strict object: an unknown field, a wrong type or an out-of-range value is
 *   VALIDATION_FAILED with a message saying what was expected; the body itself is never echoed.
 * - Free text (reasons) is at most 200 characters of letters, digits, spaces and `._:,()-`.
 * - Pure: no I/O.
 */
import { z } from 'zod';
import { PaylogError } from '../errors.js';
import { PRINCIPAL_NAME_PATTERN } from '../validation/identifiers.js';

export const DEFAULT_REWRAP_BATCH = 100;
const MAX_REWRAP_BATCH = 1000;

export const REWRAP_REQUEST_EXPECTED =
  '{ "periodKeys": "new" (every live epoch key under a new KMS key of its own period) and/or "to": KMS key id (envelope-v1 data keys only), "run"?: uuid, "after"?: cursor from the previous batch, "batchSize"?: 1..1000 }';

export const rewrapRequestSchema = z
  .strictObject({
    periodKeys: z.literal('new').optional(),
    to: z.string().min(1).max(2048).optional(),
    run: z.uuid().optional(),
    after: z
      .string()
      .max(300)
      .regex(/^(epoch|v1):.+$/)
      .optional(),
    batchSize: z.number().int().min(1).max(MAX_REWRAP_BATCH).optional(),
  })
  .refine((r) => r.periodKeys !== undefined || r.to !== undefined, { message: 'periodKeys or to' });
export const rotateRequestSchema = z.strictObject({
  processor: z.string().regex(PRINCIPAL_NAME_PATTERN).optional(),
  reason: z.string().max(200).regex(/^[\p{L}\p{N} ._:,()-]*$/u).optional(),
});
export const retentionRequestSchema = z.strictObject({
  dryRun: z.boolean().optional(),
  asOf: z.iso.datetime({ offset: true }).optional(),
});
export const shredRequestSchema = z.strictObject({
  reason: z.string().min(1).max(200).regex(/^[\p{L}\p{N} ._:,()-]*$/u),
});

/** Parses an admin request body (absent = `{}`); VALIDATION_FAILED naming what was `expected`. */
export function parseKeyRequest<T>(schema: z.ZodType<T>, raw: unknown, expected: string): T {
  const r = schema.safeParse(raw ?? {});
  if (!r.success) throw new PaylogError('VALIDATION_FAILED', `expected ${expected}`);
  return r.data;
}
