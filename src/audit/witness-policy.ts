/**
 * Auditor-side witness policy (`verify-log --witness VKEY ... --witness-quorum K --max-age D`):
 * the checkpoint being verified must carry valid tlog-cosignatures from at least K of the
 * trusted witnesses, each no older than the maximum age, so a log can neither show this auditor
 * a view no witness has checked nor freeze it on an old one. Pure.
 */
import type { Failure } from './failures.js';
import { parseCosignerVkey, verifyCosignatures, type Cosigner } from '../log/witness/cosignature.js';

/** Default `--max-age`: 24 hours. */
export const DEFAULT_MAX_AGE_SECONDS = 24 * 60 * 60;

export interface WitnessPolicy {
  witnesses: Cosigner[];
  quorum: number;
  maxAgeSeconds: number;
}

/** Builds a policy from vkey strings (BAD_REQUEST on a malformed key or an impossible quorum). */
export function witnessPolicy(vkeys: readonly string[], quorum?: number, maxAgeSeconds = DEFAULT_MAX_AGE_SECONDS): WitnessPolicy {
  const witnesses = vkeys.map(parseCosignerVkey);
  const k = quorum ?? witnesses.length;
  if (!Number.isInteger(k) || k < 1 || k > witnesses.length) {
    throw new Error(`witness quorum must be between 1 and the number of witnesses (${witnesses.length})`);
  }
  return { witnesses, quorum: k, maxAgeSeconds };
}

/** Parses `--max-age`: `<n>s|m|h|d` or plain seconds. */
export function parseDuration(s: string): number {
  const m = /^([1-9][0-9]*)([smhd]?)$/.exec(s);
  if (m === null) throw new Error('duration must look like 3600, 90s, 30m, 24h or 7d');
  const mult = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * mult;
}

/** The failures (none when satisfied) of the checkpoint `note` under `policy` at `nowSeconds`. */
export function checkWitnessPolicy(note: string, policy: WitnessPolicy, nowSeconds: number): { failures: Failure[]; cosignedBy: string[] } {
  let result;
  try {
    result = verifyCosignatures(note, policy.witnesses, nowSeconds);
  } catch (e) {
    return { failures: [{ code: 'WITNESS_QUORUM', message: `cannot read cosignatures: ${(e as Error).message}` }], cosignedBy: [] };
  }
  const fresh = result.valid.filter((c) => nowSeconds - c.timestamp <= policy.maxAgeSeconds);
  const stale = result.valid.filter((c) => nowSeconds - c.timestamp > policy.maxAgeSeconds);
  const failures: Failure[] = [];
  if (fresh.length < policy.quorum) {
    const parts = [`${fresh.length} valid fresh cosignature(s) of ${policy.quorum} required`];
    if (stale.length > 0) parts.push(`${stale.length} older than ${policy.maxAgeSeconds} s`);
    if (result.invalid.length > 0) parts.push(`${result.invalid.length} that do not verify`);
    failures.push({ code: 'WITNESS_QUORUM', message: `checkpoint is not witnessed: ${parts.join(', ')}` });
  }
  return { failures, cosignedBy: fresh.map((c) => c.key) };
}
