/**
 * Local dev KMS endpoint — key deletion (DEV-ONLY).
 *
 * Key deletion as in KMS: ScheduleKeyDeletion (7–30 days) makes the key unusable at once
 * (KMSInvalidStateException) and CancelKeyDeletion leaves it Disabled; when the waiting period
 * ends, the key, its material and its aliases are deleted (NotFoundException from then on).
 *
 * Contract: a key pending deletion MUST NOT be usable (every cryptographic operation refuses it,
 * ./keys.ts requireUsable); once its date has passed, the first request deletes it for good.
 */
import type { KeyStore } from './keystore.js';
import { keyArn, resolveKey } from './keys.js';
import { KmsWireError, optInt, reqString, validation, type Operation } from './wire.js';

const DEFAULT_PENDING_WINDOW_DAYS = 30;

/**
 * As KMS does when a key's waiting period ends: the key, its material and every alias that
 * names it are deleted (then any use of it is NotFoundException, and the alias name is free).
 * Run before every operation, so a deletion is complete by the first request after its date.
 */
export async function completeDueDeletions(store: KeyStore, now: number): Promise<void> {
  const due = [...store.keys.values()].filter((k) => k.state === 'PendingDeletion' && k.deletionDate !== undefined && k.deletionDate <= now);
  if (due.length === 0) return;
  for (const k of due) {
    store.keys.delete(k.keyId);
    for (let i = store.aliases.length - 1; i >= 0; i--) if (store.aliases[i]!.targetKeyId === k.keyId) store.aliases.splice(i, 1);
  }
  await store.persist();
}

/** ScheduleKeyDeletion and CancelKeyDeletion over `store`. */
export function deletionOperations(store: KeyStore, nowSeconds: () => number): Array<[string, Operation]> {
  return [
    [
      'ScheduleKeyDeletion',
      async (input, { region }) => {
        const key = resolveKey(store, region, reqString(input, 'KeyId'));
        const days = optInt(input, 'PendingWindowInDays') ?? DEFAULT_PENDING_WINDOW_DAYS;
        if (days < 7 || days > 30) throw validation('pendingWindowInDays', 'Member must be between 7 and 30');
        if (key.state === 'PendingDeletion') throw new KmsWireError('KMSInvalidStateException', `${keyArn(key)} is pending deletion.`);
        key.state = 'PendingDeletion';
        key.deletionDate = nowSeconds() + days * 86_400;
        await store.persist();
        return { KeyId: keyArn(key), DeletionDate: key.deletionDate, KeyState: key.state, PendingWindowInDays: days };
      },
    ],
    [
      'CancelKeyDeletion',
      async (input, { region }) => {
        const key = resolveKey(store, region, reqString(input, 'KeyId'));
        if (key.state !== 'PendingDeletion') throw new KmsWireError('KMSInvalidStateException', `${keyArn(key)} is not pending deletion.`);
        key.state = 'Disabled';
        delete key.deletionDate;
        await store.persist();
        return { KeyId: keyArn(key) };
      },
    ],
  ];
}
