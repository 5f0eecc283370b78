/**
 * Tree heads the service can trust (issue 8 item 1). The runtime role may INSERT into
 * `tree_heads`, so a row's presence proves nothing: each row the appender writes carries
 * `mac = HMAC-SHA256(K_head, "paylog/tree-head/v1" ‖ u64be(size) ‖ root)` (its first 16 bytes on
 * rows since issue 20's storage change, all 32 before), with
 * `K_head = HMAC-SHA256(service key, "paylog/tree-head-key/v1")` held only in the service's
 * memory (the service key is KMS-wrapped at rest). The head is the largest row whose MAC
 * verifies — checked row by row before any limit — or, for rows written before the column
 * existed (NULL mac), the largest such row not above the mark the migration recorded
 * (`paylog_marks.legacy_tree_head_max`, read-only for the runtime role).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

const TREE_HEAD_MAC_LABEL = 'paylog/tree-head/v1';
const KEY_LABEL = 'paylog/tree-head-key/v1';
/** Rows read per query while looking for a trusted head. */
export const TREE_HEAD_PAGE = 64;

/** Derives the head MAC key from the service's HMAC key (never the key itself). */
export function treeHeadKey(serviceKey: Buffer): Buffer {
  return createHmac('sha256', serviceKey).update(KEY_LABEL).digest();
}

/**
 * Bytes of the MAC a new `tree_heads` row stores (issue 20, storage): HMAC-SHA-256 truncated to
 * 128 bits (RFC 2104 §5: at least half the output), 16 bytes fewer per tree head. Rows written
 * before keep the full 32 bytes and verify as before.
 */
export const STORED_TREE_HEAD_MAC_BYTES = 16;
const FULL_MAC_BYTES = 32;

function fullTreeHeadMac(key: Buffer, size: number, root: Buffer): Buffer {
  const n = Buffer.alloc(8);
  n.writeBigUInt64BE(BigInt(size));
  return createHmac('sha256', key).update(TREE_HEAD_MAC_LABEL).update(n).update(root).digest();
}

/** The MAC a new row stores: the first STORED_TREE_HEAD_MAC_BYTES of the HMAC. */
export function treeHeadMac(key: Buffer, size: number, root: Buffer): Buffer {
  return fullTreeHeadMac(key, size, root).subarray(0, STORED_TREE_HEAD_MAC_BYTES);
}

/** Whether `mac` is the row's MAC: the stored (truncated) form, or the full one of rows from before; any other length is not. */
export function treeHeadMacValid(key: Buffer, size: number, root: Buffer, mac: Buffer | null): boolean {
  if (mac === null || (mac.length !== STORED_TREE_HEAD_MAC_BYTES && mac.length !== FULL_MAC_BYTES)) return false;
  return timingSafeEqual(fullTreeHeadMac(key, size, root).subarray(0, mac.length), mac);
}
