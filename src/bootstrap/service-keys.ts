/**
 * Start-up step "service keys": the service's own secrets (MAC key; fingerprint/probe key v2),
 * stored wrapped under the KMS data key (src/keyring.ts), and the keys derived from the MAC key
 * (tree-head MAC, epoch-row MAC).
 *
 * Contract: every key returned is zeroed by the cleanups when paylog stops. It MUST NOT log or
 * return a key outside the process.
 */
import type { AppDatabase } from '../db/connection.js';
import { FINGERPRINT_KEY_V2_NAME, loadOrCreateServiceKey, MAC_KEY_NAME } from '../keyring.js';
import { kmsStartupStep } from '../kms/startup.js';
import { treeHeadKey } from '../log/tree-head.js';
import { epochRowKey } from '../kms/epoch-rows.js';
import type { Cleanups } from './cleanups.js';
import type { KmsStep } from './kms.js';

interface ServiceKeys {
  macKey: Buffer;
  /** Fingerprints v2 and probe MACs (issue 17): a key of its own, never the v1 fingerprint key. */
  fingerprintKey: Buffer;
}

interface DerivedKeys {
  /** MAC of the stored tree head. */
  headKey: Buffer;
  /** MAC of key-epoch rows (a planted row does not verify). */
  epochKey: Buffer;
}

/** Loads (or creates on first start) the MAC key and the fingerprint key v2. */
export async function loadServiceKeys(database: AppDatabase, kms: KmsStep, dataKeyId: string, cleanups: Cleanups): Promise<ServiceKeys> {
  const load = (name: string) => kmsStartupStep(kms.dataKeyRef, 'GenerateDataKey', kms.where, () => loadOrCreateServiceKey(database, kms.kms, dataKeyId, name));
  const macKey = await load(MAC_KEY_NAME);
  cleanups.push(async () => void macKey.fill(0));
  const fingerprintKey = await load(FINGERPRINT_KEY_V2_NAME);
  cleanups.push(async () => void fingerprintKey.fill(0));
  return { macKey, fingerprintKey };
}

/** The keys derived from the MAC key. */
export function deriveKeys(macKey: Buffer, cleanups: Cleanups): DerivedKeys {
  const headKey = treeHeadKey(macKey);
  cleanups.push(async () => void headKey.fill(0));
  const epochKey = epochRowKey(macKey);
  cleanups.push(async () => void epochKey.fill(0));
  return { headKey, epochKey };
}
