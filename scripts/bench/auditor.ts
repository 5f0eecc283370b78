/**
 * Auditor benchmarks (section objects registered in `SECTIONS`, scripts/bench.ts):
 *
 * - `auditor_rebuild` (scripts/bench/auditor-rebuild.ts): in-memory full verification of N
 *   canonical leaves — raw SHA-256 vs tree rebuild vs `verifyLog` — in entries/s, with a
 *   per-step breakdown of the leaf checks. Target: full verification ≥ 50% of raw SHA-256.
 * - `auditor_inclusion_1m` (scripts/bench/auditor-inclusion.ts): inclusion-proof latency
 *   (p50/p99) on a 1M-entry log seeded server-side in a scratch database, every proof verified
 *   against a root computed in Node; populate time reported separately.
 */
export { auditorRebuildSection } from './auditor-rebuild.js';
export { auditorInclusionSection } from './auditor-inclusion.js';
