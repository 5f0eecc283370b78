/**
 * Local dev KMS endpoint — every operation it implements, by wire name (DEV-ONLY).
 *
 * Operations: CreateKey, DescribeKey, CreateAlias, ListAliases, EnableKey, DisableKey,
 * ScheduleKeyDeletion, CancelKeyDeletion, GenerateDataKey, GenerateDataKeyWithoutPlaintext,
 * GenerateRandom, Encrypt, Decrypt, ReEncrypt, Sign, Verify, GetPublicKey. Other real KMS
 * operations answer `UnsupportedOperationException`; unknown targets `UnknownOperationException`.
 * Key specs: SYMMETRIC_DEFAULT/ENCRYPT_DECRYPT and ECC_NIST_EDWARDS25519/SIGN_VERIFY
 * (signing algorithm ED25519_SHA_512 with MessageType RAW = plain Ed25519 over the message;
 * ED25519_PH_SHA_512 is not offered).
 *
 * Contract: an operation MUST be listed here to be served; ../wire.ts answers every other name.
 */
import type { KeyStore } from '../keystore.js';
import { deletionOperations } from '../deletion.js';
import type { Operation } from '../wire.js';
import { cryptoOperations } from './crypto.js';
import { keyOperations } from './keys.js';

/** The 17 operations over `store`; `nowSeconds` is the endpoint's clock. */
export function buildOperations(store: KeyStore, nowSeconds: () => number): Map<string, Operation> {
  return new Map<string, Operation>([...keyOperations(store, nowSeconds), ...deletionOperations(store, nowSeconds), ...cryptoOperations(store)]);
}
