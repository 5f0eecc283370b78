/**
 * Client-side encryption key names: which key id (kid) a time falls in, which period a kid
 * names, when a kid may decrypt, and the KMS alias and encryption context of its seed.
 *
 * Contracts:
 * - One key per calendar period (UTC; `PAYLOG_CSE_KEY_PERIOD` = month, day, hour). Its kid names
 *   the period: `paylog-cse-2026-12`, `paylog-cse-2026-12-01`, `paylog-cse-2026-12-01T10`. Kids,
 *   aliases and context keys are STABLE (they name KMS keys and appear in key events).
 * - The period arithmetic is src/keys/periods.ts (shared with the epoch keys); nothing here
 *   re-derives it. A kid that does not name a well-formed period is no kid (null, never rolled over).
 * - A kid decrypts from its period's start less `CSE_KEY_CLOCK_SKEW_MS` until its period's end
 *   plus the overlap; outside that window it MUST be refused.
 * - Only {@link resolveCseKmsKey} does I/O (KMS DescribeKey, or CreateKey on first use): the ARN
 *   it returns — never a database column — is what a `cse_keys` row must name to be used.
 */
import type { KmsBackend } from '../kms/backend.js';
import { KMS_CONTEXT_KEY_PURPOSE } from '../kms/epoch-names.js';
import { periodOf, periodOfLabel, type PeriodGranularity } from '../keys/periods.js';
import { isPaylogError } from '../errors.js';

export type CseKeyPeriod = PeriodGranularity;
/** KMS alias prefix of the per-key KMS keys: `alias/<kid>`. */
const CSE_KMS_ALIAS_PREFIX = 'alias/';
/** KMS encryption-context keys of a wrapped CSE seed (stable). */
const KMS_CONTEXT_CSE_KEY = 'paylog:cse-key';
const CSE_SEED_PURPOSE = 'cse-seed/p256';
/** How early a key may be used before its period starts (instances' clocks disagree a little). */
const CSE_KEY_CLOCK_SKEW_MS = 5 * 60 * 1000;

const KID_PREFIX = 'paylog-cse-';

/** The key id of the period containing `at` (UTC): `paylog-cse-<period label>`. */
export function kidForTime(at: Date, period: CseKeyPeriod): string {
  return `${KID_PREFIX}${periodOf(at, period).label}`;
}

/** The period a key id names, or null when it is not a well-formed paylog CSE key id. */
export function periodOfKid(kid: string): { start: number; end: number; period: CseKeyPeriod } | null {
  const p = kid.startsWith(KID_PREFIX) ? periodOfLabel(kid.slice(KID_PREFIX.length)) : null;
  return p === null ? null : { start: p.start.getTime(), end: p.end.getTime(), period: p.granularity };
}

/** The KMS alias of the kid's own KMS key. */
function cseKeyAlias(kid: string): string {
  return `${CSE_KMS_ALIAS_PREFIX}${kid}`;
}

/** KMS encryption context binding a wrapped seed to its kid. */
export function cseSeedContext(kid: string): Record<string, string> {
  return { [KMS_CONTEXT_CSE_KEY]: kid, [KMS_CONTEXT_KEY_PURPOSE]: CSE_SEED_PURPOSE };
}

/**
 * The ARN of the kid's KMS key as paylog's own KMS resolves `alias/<kid>`: created on first use
 * when `create`, else null when the alias does not exist (never created, or deleted by KMS).
 * This — not any database column — is what a `cse_keys` row must name to be used.
 */
export async function resolveCseKmsKey(kms: KmsBackend, kid: string, create: boolean): Promise<string | null> {
  if (create) return await kms.ensureKey(cseKeyAlias(kid), 'SYMMETRIC_DEFAULT');
  try {
    return await kms.keyArn(cseKeyAlias(kid));
  } catch (e) {
    if (isPaylogError(e) && e.details?.kmsError === 'NotFoundException') return null;
    throw e;
  }
}

/** True while `kid` may decrypt at `now` (module doc: period start − skew .. end + overlap). */
export function kidAcceptedAt(kid: string, now: Date, overlapS: number): boolean {
  const p = periodOfKid(kid);
  if (p === null) return false;
  const t = now.getTime();
  return t >= p.start - CSE_KEY_CLOCK_SKEW_MS && t < p.end + overlapS * 1000;
}
