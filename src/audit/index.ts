/**
 * The auditor side of paylog, as one package: what `scripts/verify-log.ts`, `verify-proof.ts`,
 * `export-log.ts`, `export-tiles.ts` and the standalone verifier (dist/paylog-verify.mjs) use.
 * One small file per audit step, each citing the spec it implements:
 *   keys.ts            trusted checkpoint keys (c2sp.org/signed-note §Verifier keys)
 *   leaf-check.ts      leaf format and the no-card-data rule
 *   served-check.ts    served lookup rows, columns and stored Merkle nodes vs the leaves
 *   epoch-key-check.ts v3 transactions sealed to the key their epoch's creation entry names
 *   shred-report.ts    which indices hold shredded transactions (reported, never failed)
 *   witness-policy.ts  tlog-cosignature quorum and freshness
 *   locate-bad-entry.ts the first entry differing from the signed tree (RFC 9162 §2.1.1, §2.1.3)
 *   state.ts           the `--state` file; run.ts the run; report.ts the report
 *   log-client.ts, verify-sources.ts, export-log.ts   entries API and NDJSON export sources
 *   tile-source.ts, tile-verify.ts, tile-export.ts    c2sp.org/tlog-tiles sources
 *
 * Contract: the auditor side MUST import only itself, the shared log format code (src/log/:
 * Merkle math, notes, checkpoints, leaf codec, tiles path/encoding, export format), the PAN
 * detector (src/validation/identifiers.ts), src/errors.ts, src/crypto/canonical-json.ts and the
 * outbound HTTP module (src/net/). The service side (src/api, src/services, src/app.ts, src/db,
 * src/kms, the log writer) MUST NOT import src/audit/; test/standalone-verifier.test.ts checks
 * the bundle's inputs. Modules inside src/audit/ import each other directly, never this index.
 */
export { loadVerifierKeys, toNoteVerifiers } from './keys.js';
export { checkLeaf, containsPanLikeIdentifier, containsPanLikeNumber, luhnValid, PAN_MAX_DIGITS, PAN_MIN_DIGITS } from './leaf-check.js';
export { checkServed, checkStoredNodes } from './served-check.js';
export { errorMessage, failureCodeOf, TRANSPORT_FAILURE_CODES, type Failure, type FailureCode } from './failures.js';
export type { ConsistencyProofFetcher, InclusionProofFetcher, LeafRangeReader, LogEntryInput } from './inputs.js';
export { locateFirstBadIndex } from './locate-bad-entry.js';
export { failureReport, formatReport, type VerifyReport } from './report.js';
export { verifyLog, type VerifyLogInput } from './run.js';
export { formatState, parseState, STATE_VERSION, type VerifierState } from './state.js';
export { witnessPolicy, checkWitnessPolicy, parseDuration, DEFAULT_MAX_AGE_SECONDS, type WitnessPolicy } from './witness-policy.js';
export { LogClient, LogClientError, isAnsweredFailure, ENTRIES_PAGE_SIZE, REQUEST_TIMEOUT_MS, type ClientOptions, type LogClientErrorKind, type ServerKeys } from './log-client.js';
export { checkpointSize, exportKeys, verifyExportFile, verifyRemoteLog, type FileVerifyOptions, type RemoteVerifyOptions } from './verify-sources.js';
export { exportLog } from './export-log.js';
export { directoryTileSource, httpsTileSource, decodeContentEncoding, MAX_TILE_RESOURCE_BYTES, TILES_ACCEPT_ENCODING, TILES_PREFIX, type TileSource } from './tile-source.js';
export { verifyTiledLog } from './tile-verify.js';
export { exportTiles } from './tile-export.js';
export { formatProofBundle, parseProofBundle, verifyProofBundle, TLOG_PROOF_EXTENSION, TLOG_PROOF_HEADER, type ProofBundle, type ProofVerification } from './proof-bundle.js';
