/**
 * Registration of the record keyrings (src/keys/record-keys.ts): which keyring seals, and that
 * every deployment opens both envelope versions.
 *
 * Contract: the returned keyring seals with the keyring of `sealWith` and opens any record
 * whose key reference one of them owns: a per-transaction deployment still opens epoch records
 * written before it switched, and a hierarchical one its v1 records.
 */
import type { DataKeySource } from '../crypto/envelope.js';
import type { EpochKeyring } from '../kms/epoch-keys.js';
import { EpochRecordKeys } from './epoch-record-keys.js';
import { PerTransactionRecordKeys } from './per-transaction-keys.js';
import { MultiRecordKeyring, type RecordKeyring } from './record-keys.js';

type SealingMode = 'per-transaction' | 'epoch';

export function recordKeyringFor(o: { sealWith: SealingMode; dataKeys: DataKeySource; epochs: EpochKeyring }): RecordKeyring {
  const perTransaction = new PerTransactionRecordKeys(o.dataKeys);
  const epoch = new EpochRecordKeys(o.epochs);
  return o.sealWith === 'epoch' ? new MultiRecordKeyring(epoch, [perTransaction]) : new MultiRecordKeyring(perTransaction, [epoch]);
}
