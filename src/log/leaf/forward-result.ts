/**
 * Forward result leaf, format v3 only (issue 18): what became of one forward whose access entry
 * (action `forward`) committed before any byte left. Appended after the destination answered or
 * failed, or when a retry finds the outcome can no longer be known.
 *
 * Contract: it names the access entry it closes (`access`, a log index) and holds counts, an
 * HTTP status and a stable error code only: never the request or response, nor any digest of
 * them (a digest of a filled request is a PAN oracle given BIN and last four).
 */
import { z } from 'zod';
import { id, msOf, msTime } from './fields.js';
import { LEAF_FORMAT_V3 } from './transaction.js';

export const FORWARD_OUTCOMES = ['completed', 'failed', 'refused', 'unknown'] as const;
export type ForwardOutcome = (typeof FORWARD_OUTCOMES)[number];

export const forwardResultLeafSchema = z.strictObject({
  v: z.literal(LEAF_FORMAT_V3),
  type: z.literal('forward_result'),
  time: msTime,
  transactionId: id,
  /** Log index of the forward's access entry. */
  access: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  outcome: z.enum(FORWARD_OUTCOMES),
  /** The destination's HTTP status (completed only). */
  status: z.number().int().min(100).max(599).optional(),
  /** Milliseconds from the access entry's commit to the answer or failure. */
  ms: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  /** How many values were masked in the answer. */
  masked: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  /** Stable error code (failed, refused, unknown). */
  error: z.string().max(64).optional(),
});
export type ForwardResultLeaf = z.infer<typeof forwardResultLeafSchema>;

interface ForwardResultInput {
  time: Date;
  transactionId: string;
  accessLogIndex: number;
  outcome: ForwardOutcome;
  status?: number | undefined;
  durationMs: number;
  masked: number;
  error?: string | undefined;
}

export function forwardResultLeaf(i: ForwardResultInput): ForwardResultLeaf {
  return {
    v: LEAF_FORMAT_V3,
    type: 'forward_result',
    time: msOf(i.time),
    transactionId: i.transactionId,
    access: i.accessLogIndex,
    outcome: i.outcome,
    ...(i.status !== undefined ? { status: i.status } : {}),
    ms: Math.max(0, Math.round(i.durationMs)),
    masked: i.masked,
    ...(i.error ? { error: i.error } : {}),
  };
}
